"""Pooling with padding masks and backbone feature extraction (aegir/models/features.py) for both model types."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aegir.config import load_group
from aegir.models.build import build_model
from aegir.models.features import (backbone_hidden, hidden_width, move_cls_to_end, pad_batch, pool, pooled_width,
                                   valid_mask)
from aegir.tokenizer import CLS_ID, PAD_ID, SEP_ID

RWKV = load_group("model", "rwkv7_nano", vocab_size=512, d_model=64, n_layers=2, head_size=32, tie_embeddings=True,
                  pretrained=None)
HNET = load_group("model", "hnet_nano", vocab_size=512, d_model=[32, 64], arch_layout=["w1", ["w1"], "w1"],
                  head_size=32, target_compression=[2.0], ratio_loss_weight=0.03, tie_embeddings=True, pretrained=None)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_pad_batch_right_pads_with_the_pad_id() -> None:
    ids, lengths = pad_batch([[1, 2, 3], [4], [5, 6]])
    assert ids.tolist() == [[1, 2, 3], [4, PAD_ID, PAD_ID], [5, 6, PAD_ID]]
    assert lengths.tolist() == [3, 1, 2]
    assert valid_mask(lengths, 3).tolist() == [[True, True, True], [True, False, False], [True, True, False]]
    with pytest.raises(ValueError):
        pad_batch([[1], []])


def test_pooling_ignores_padded_positions() -> None:
    # row 0: valid positions 0..2, row 1: only position 0; the padded positions hold huge values that must not leak
    hidden = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [5.0, 0.0], [1e6, 1e6]],
                           [[-2.0, 8.0], [1e6, -1e6], [1e6, 1e6], [1e6, 1e6]]])
    lengths = torch.tensor([3, 1])
    def check(mode: str, expected: list[list[float]]) -> None:
        torch.testing.assert_close(pool(hidden, lengths, mode), torch.tensor(expected))

    check("mean", [[3.0, -2.0 / 3.0], [-2.0, 8.0]])
    check("max", [[5.0, 2.0], [-2.0, 8.0]])
    check("last", [[5.0, 0.0], [-2.0, 8.0]])
    check("cls_last", [[5.0, 0.0], [-2.0, 8.0]])
    check("mean_last", [[3.0, -2.0 / 3.0, 5.0, 0.0], [-2.0, 8.0, -2.0, 8.0]])
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, lengths, "cls_first")
    with pytest.raises(ValueError, match="lengths"):
        pool(hidden, torch.tensor([0, 1]), "mean")


def test_move_cls_to_end() -> None:
    ids, lengths = pad_batch([[CLS_ID, 10, 11, SEP_ID], [CLS_ID, 12], [13, 14, 15, 16]])
    moved, new_lengths = move_cls_to_end(ids, lengths)
    assert new_lengths.tolist() == [4, 2, 5]
    assert moved.tolist() == [[10, 11, SEP_ID, CLS_ID, PAD_ID], [12, CLS_ID, PAD_ID, PAD_ID, PAD_ID],
                              [13, 14, 15, 16, CLS_ID]]
    short, short_lengths = move_cls_to_end(*pad_batch([[CLS_ID, 1, 2], [CLS_ID, 3]]))
    assert short.tolist() == [[1, 2, CLS_ID], [3, CLS_ID, PAD_ID]] and short_lengths.tolist() == [3, 2]


@pytest.mark.parametrize("spec", [RWKV, HNET], ids=["rwkv7", "hnet"])
def test_backbone_hidden_is_the_final_normed_state_and_padding_safe(spec: Any) -> None:
    torch.manual_seed(0)
    model = build_model(spec).eval()
    rows = [[CLS_ID, *range(40, 75), SEP_ID], [CLS_ID, *range(90, 100), SEP_ID], [CLS_ID, 7, SEP_ID]]
    ids, lengths = pad_batch(rows)
    with torch.no_grad():
        hidden = backbone_hidden(model, ids, lengths)
        assert hidden.shape == (3, ids.shape[1], hidden_width(model))
        for i, row in enumerate(rows):  # each row alone gives the states it gets in the padded batch
            alone = backbone_hidden(model, torch.tensor([row]))
            torch.testing.assert_close(hidden[i, : len(row)], alone[0], rtol=1e-4, atol=1e-5)
            for mode in ("mean", "last", "max", "mean_last"):
                torch.testing.assert_close(pool(hidden[i: i + 1], lengths[i: i + 1], mode),
                                           pool(alone, torch.tensor([len(row)]), mode), rtol=1e-4, atol=1e-5)
        # the LM head reads exactly these states: logits = hidden @ E^T (tied embeddings)
        logits, _ = model(ids)
        torch.testing.assert_close(logits, hidden @ model.emb.weight.T, rtol=1e-4, atol=1e-4)
    assert pooled_width(model, "mean_last") == 2 * hidden_width(model) == 2 * (64 if spec is RWKV else 32)


def test_hnet_router_statistics_count_valid_positions_only() -> None:
    torch.manual_seed(0)
    model = build_model(HNET).eval()
    long_row, short_row = [CLS_ID, *range(40, 60), SEP_ID], [CLS_ID, 33, SEP_ID]
    with torch.no_grad():
        backbone_hidden(model, *pad_batch([long_row, short_row]))
        padded = model.last_aux
        backbone_hidden(model, torch.tensor([long_row]))
        alone_long = model.last_aux
        backbone_hidden(model, torch.tensor([short_row]))
        alone_short = model.last_aux
    assert padded is not None and alone_long is not None and alone_short is not None
    assert len(padded.stages) == 1 and torch.isfinite(padded.loss)
    # boundaries are counted over the 22 + 3 valid positions only, never over the padded 2 x 22 grid
    boundaries = alone_long.stages[0].boundary_frac * 22 + alone_short.stages[0].boundary_frac * 3
    assert padded.stages[0].boundary_frac == pytest.approx(boundaries / 25, abs=1e-6)


def test_backbone_hidden_refuses_other_modules() -> None:
    with pytest.raises(TypeError, match="ByteLM and HNetLM"):
        backbone_hidden(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long))
