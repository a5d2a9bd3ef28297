"""The classification loop (aegir/loops/classify.py): freeze logic, seeded dropout, checkpoint layout, and every
outcome of the three liveness gates through a real validation (Lightning's validate loop, the module's own
validation_step / on_validation_epoch_end, aegir.eval.gates)."""

from __future__ import annotations

from dataclasses import replace

import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
from torch import Tensor, nn

from aegir.config import load_group
from aegir.eval.collapse import default_liveness_gates
from aegir.loops.classify import (ColumnClassifierModule, backbone_frozen, backbone_lr_factor, encode_examples,
                                  seeded_dropout)
from aegir.models.build import build_model
from aegir.tokenizer import CLS_ID, SEP_ID

RWKV = load_group("model", "rwkv7_nano", vocab_size=512, d_model=32, n_layers=1, head_size=32, tie_embeddings=True,
                  pretrained=None)
ALGO = load_group("algo", "classify", lr=1e-2, min_lr_ratio=0.1, warmup_steps=1, weight_decay=0.01, beta1=0.9,
                  beta2=0.99, eps=1e-8, grad_clip=1.0, w0_lr_mult=2.0, batch_size=4, val_batch_size=16,
                  freeze_backbone_steps=0, backbone_lr_mult=1.0, head_dropout=0.0, pooling="mean",
                  class_weighting="none", backbone_init="auto",
                  liveness={"knn_k": 10, "inflation": 2.0, "expansion": 3, "max_points": 1024})
N_LABELS = 12
GATES = default_liveness_gates()


@pytest.fixture(autouse=True)
def _quiet_one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_num_threads(threads)


def examples(n_per_label: int = 10, n_labels: int = N_LABELS) -> list[SimpleNamespace]:
    """Column-like examples whose second id spells the label (65 + label), so tests can build oracle features."""
    out = []
    for label in range(n_labels):
        for i in range(n_per_label):
            out.append(SimpleNamespace(ids=[CLS_ID, 65 + label, 48 + i % 10, 32, 48 + label % 10, SEP_ID], label=label))
    return out


def trainer(**kwargs: Any) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, **kwargs)


def test_freeze_schedule_is_pure() -> None:
    assert [backbone_frozen(s, 3) for s in range(5)] == [True, True, True, False, False]
    assert not backbone_frozen(0, 0)
    factors = [backbone_lr_factor(s, 3, 2, 13, 0.1) for s in range(14)]
    assert factors[:3] == [0.0, 0.0, 0.0]
    assert factors[3:5] == pytest.approx([0.5, 1.0])  # its own warm-up once unfrozen
    assert factors[-1] == pytest.approx(0.1)  # cosine down to min_lr_ratio at the last step


def test_seeded_dropout_is_a_function_of_the_seed() -> None:
    x = torch.ones(64, 8)
    a, b, c = seeded_dropout(x, 0.5, 7), seeded_dropout(x, 0.5, 7), seeded_dropout(x, 0.5, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {0.0, 2.0}  # inverted dropout keeps the expectation
    assert torch.equal(seeded_dropout(x, 0.0, 1), x) and not seeded_dropout(x, 1.0, 1).any()


def test_encode_examples_pads_and_moves_cls() -> None:
    batch = [SimpleNamespace(ids=[CLS_ID, 1, 2, SEP_ID], label=3), SimpleNamespace(ids=[CLS_ID, 5, SEP_ID], label=1)]
    ids, lengths, labels = encode_examples(batch, "mean")
    assert ids.shape == (2, 4) and lengths.tolist() == [4, 3] and labels.tolist() == [3, 1]
    moved, moved_lengths, _ = encode_examples(batch, "cls_last")
    assert moved[0].tolist() == [1, 2, SEP_ID, CLS_ID] and moved_lengths.tolist() == [4, 3]


def test_backbone_frozen_for_the_first_steps_then_trained(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = examples(4)
    module = ColumnClassifierModule(build_model(RWKV), [f"l{i}" for i in range(N_LABELS)], data, data[:8],
                                    algo=replace(ALGO, freeze_backbone_steps=2), seed=0, total_steps=4)
    snapshots: list[tuple[Tensor, Tensor, bool]] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            snapshots.append((pl_module.model.emb.weight.detach().clone(), pl_module.head.weight.detach().clone(),
                              pl_module.model.emb.weight.requires_grad))

    start_backbone, start_head = module.model.emb.weight.detach().clone(), module.head.weight.detach().clone()
    trainer(max_steps=4, limit_val_batches=0, callbacks=[Record()], default_root_dir=tmp_path).fit(module)
    assert len(snapshots) == 4
    backbones, heads, grads = zip(*snapshots)
    assert torch.equal(backbones[0], start_backbone) and torch.equal(backbones[1], start_backbone)  # frozen
    assert not torch.equal(backbones[2], start_backbone)  # step 2: unfrozen and updated
    assert not torch.equal(heads[0], start_head)  # the head trains from the first step
    assert grads == (False, False, True, True)


def test_classifier_checkpoint_holds_the_backbone_as_model(tmp_path: Path) -> None:
    """A classifier's state dict is `model.*` + `head.*`: model.pretrained loads its backbone into a new model."""
    torch.manual_seed(0)
    data = examples(2)
    module = ColumnClassifierModule(build_model(RWKV), [f"l{i}" for i in range(N_LABELS)], data, data, algo=ALGO,
                                    seed=0, total_steps=1)
    state = module.state_dict()
    assert {k.split(".")[0] for k in state} == {"model", "head"}
    path = tmp_path / "cta.ckpt"
    torch.save({"state_dict": state}, path)
    loaded = build_model(replace(RWKV, pretrained=str(path)))
    torch.testing.assert_close(loaded.emb.weight, module.model.emb.weight)


# ------------------------------------------------------------------ gate outcomes through a real validation
class DesignedFeatures(ColumnClassifierModule):
    """The real module with its feature extractor replaced by a designed embedding of each example's label (read
    back from its second id) and a fixed head, so a validation produces known predictions and embeddings."""

    def __init__(self, features: str, predict: str) -> None:
        data = examples()
        super().__init__(build_model(RWKV), [f"l{i}" for i in range(N_LABELS)], data, data, algo=ALGO, gates=GATES,
                         seed=0, total_steps=1)
        self.design = features
        eye = torch.eye(N_LABELS)
        if predict == "oracle":  # logit of the true label highest
            weight = eye
        elif predict == "permuted":  # every label predicted as the next one: 12 distinct labels, F1 = 0
            weight = eye.roll(1, dims=0)
        elif predict == "five":  # labels 0..4 right, all others predicted as 0: 5 distinct labels, macro F1 ~0.37
            weight = eye.clone()
            weight[0, 5:] = 1.0
            weight[5:] = 0.0
        else:  # a collapsed head: label 0 whatever the input
            weight = torch.zeros(N_LABELS, N_LABELS)
            weight[0] = 1.0
        width = N_LABELS + 1
        self.head = nn.Linear(width, N_LABELS)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()
            self.head.weight[:, 1:] = weight * 1e4
            if predict == "collapsed":
                self.head.bias[0] = 1.0

    def features(self, ids: Tensor, lengths: Tensor) -> Tensor:
        labels = ids[:, 1] - 65
        onehot = torch.nn.functional.one_hot(labels, N_LABELS).float()
        jitter = torch.sin(ids[:, 2:3].float() + torch.arange(N_LABELS + 1).float())  # small per-example spread
        if self.design == "separated":  # one tight blob per label: 12 Markov clusters
            return torch.cat([torch.zeros(len(ids), 1), onehot], 1) + 0.01 * jitter
        if self.design == "one_direction":  # every vector nearly parallel: one cosine cluster, labels still readable
            return torch.cat([torch.full((len(ids), 1), 1e3), 1e-3 * onehot], 1)
        return torch.ones(len(ids), N_LABELS + 1)  # collapsed: one point


@pytest.mark.parametrize("features,predict,expected", [
    ("separated", "oracle", {"live_mcl_clusters": 1.0, "live_macro_f1": 1.0, "live_distinct_preds": 1.0}),
    ("one_direction", "oracle", {"live_mcl_clusters": 0.0, "live_macro_f1": 1.0, "live_distinct_preds": 1.0}),
    ("separated", "permuted", {"live_mcl_clusters": 1.0, "live_macro_f1": 0.0, "live_distinct_preds": 1.0}),
    ("separated", "five", {"live_mcl_clusters": 1.0, "live_macro_f1": 1.0, "live_distinct_preds": 0.0}),
    ("collapsed", "collapsed", {"live_mcl_clusters": 0.0, "live_macro_f1": 0.0, "live_distinct_preds": 0.0}),
], ids=["all_pass", "clusters_fail", "macro_f1_fail", "distinct_fail", "all_fail"])
def test_every_liveness_gate_outcome_at_validation(features: str, predict: str, expected: dict[str, float],
                                                   tmp_path: Path) -> None:
    module = DesignedFeatures(features, predict)
    trainer(default_root_dir=tmp_path).validate(module, verbose=False)
    logged = {k: float(v) for k, v in trainer_metrics(module).items()}
    assert {name: logged[f"gate/{name}"] for name in expected} == expected, logged
    if expected["live_mcl_clusters"] == 0.0:
        assert logged["live/mcl_clusters"] < 3
    if expected["live_distinct_preds"] == 0.0:
        assert logged["live/distinct_preds"] < 10 and logged["val/distinct_preds"] == logged["live/distinct_preds"]


def trainer_metrics(module: ColumnClassifierModule) -> dict[str, Tensor]:
    return dict(module.trainer.callback_metrics)


def test_a_real_collapsed_backbone_fails_all_three_gates(tmp_path: Path) -> None:
    """No designed features: a ByteLM whose final norm outputs a constant (weight 0) pools every column to one
    vector, so the real backbone_hidden -> pool -> head path predicts one label and the gate says so."""
    torch.manual_seed(0)
    data = examples()
    module = ColumnClassifierModule(build_model(RWKV), [f"l{i}" for i in range(N_LABELS)], data, data, algo=ALGO,
                                    gates=GATES, seed=0, total_steps=1)
    with torch.no_grad():
        module.model.ln_out.weight.zero_()
        module.model.ln_out.bias.fill_(0.5)
    trainer(default_root_dir=tmp_path).validate(module, verbose=False)
    logged = {k: float(v) for k, v in trainer_metrics(module).items()}
    assert logged["live/mcl_clusters"] == 1.0 and logged["live/distinct_preds"] == 1.0
    assert logged["live/top1_share"] == 1.0 and logged["live/spread_ratio"] == 0.0
    assert [logged[f"gate/{g}"] for g in ("live_mcl_clusters", "live_macro_f1", "live_distinct_preds")] == [0, 0, 0]
