"""The observatory's pure mathematics against hand-computed values (aegir/observe/dynamics_math.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aegir.observe import dynamics_math as dm


def test_layer_of_groups_blocks_decoder_layers_and_top_level_modules() -> None:
    assert dm.layer_of("body.blocks.2.att.key.weight") == "body.blocks.2"
    assert dm.layer_of("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight") == "model.layers.0"
    assert dm.layer_of("hnet.inner.encoder.stack.blocks.0.ln1.weight") == "hnet.inner.encoder.stack.blocks.0"
    assert dm.layer_of("hnet.routing.q_proj.weight") == "hnet.routing"
    assert dm.layer_of("emb.weight") == "emb"
    assert dm.layer_of("head") == "head"
    groups = dm.group_by_layer(["emb.weight", "body.blocks.0.a", "body.blocks.0.b", "ln_out.weight"])
    assert groups == {"emb": ["emb.weight"], "body.blocks.0": ["body.blocks.0.a", "body.blocks.0.b"],
                      "ln_out": ["ln_out.weight"]}


def test_relative_drift_norms_and_zero_reference() -> None:
    groups = {"a": ["a.w", "a.b"], "z": ["z.w"]}
    reference = {"a.w": torch.tensor([3.0, 0.0]), "a.b": torch.tensor([4.0]), "z.w": torch.zeros(2)}
    current = {"a.w": torch.tensor([6.0, 0.0]), "a.b": torch.tensor([8.0]), "z.w": torch.tensor([1.0, 0.0])}
    drift = dm.relative_drift(current, reference, groups)
    assert drift["a"] == pytest.approx(1.0)  # ||(3, 0, 4)|| / ||(3, 0, 4)||
    assert math.isnan(drift["z"])  # zero reference: undefined
    assert dm.layer_norms(current, groups) == pytest.approx({"a": 10.0, "z": 1.0})
    assert dm.total_norm({"a": 3.0, "b": 4.0}) == pytest.approx(5.0)


def test_rsa_drift_is_zero_for_the_same_geometry_and_two_for_an_inverted_one() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4))
    rotation, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    assert dm.rsa_drift(x, 3.0 * x @ rotation) == pytest.approx(0.0, abs=1e-12)
    # a: e1, e2, (e1+e2)/sqrt2 -> cosines (0, .707, .707); b: e1, e1, e2 -> (1, 0, 0): Pearson r = -1 by hand.
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert dm.rsa_drift(a, b) == pytest.approx(2.0)
    assert math.isnan(dm.rsa_drift(a[:2], b[:2]))
    with pytest.raises(ValueError):
        dm.rsa_drift(a, b[:2])


def test_cosine_similarity_matrix_zero_rows() -> None:
    sims = dm.cosine_similarity_matrix(np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]))
    assert sims[0, 2] == pytest.approx(1 / math.sqrt(2))
    assert sims[1].tolist() == [0.0, 0.0, 0.0]


def test_pca_2d_on_a_line_and_sign_convention() -> None:
    x = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    points = dm.pca_2d(x)
    assert points[:, 0].tolist() == pytest.approx([-1.5, -0.5, 0.5, 1.5])
    assert points[:, 1] == pytest.approx(np.zeros(4))
    assert dm.pca_2d(-x)[:, 0].tolist() == pytest.approx([1.5, 0.5, -0.5, -1.5])  # loading sign fixed, not data


def test_ece_and_mce_by_hand() -> None:
    # 5 bins (lo, hi]: 0.9, 0.9 -> bin 4 (acc .5, gap .4); 0.1 -> bin 0 (acc 0, gap .1); 0.5 -> bin 2 (acc 1, gap .5)
    ece, mce, bins = dm.expected_calibration_error([0.9, 0.9, 0.1, 0.5], [1, 0, 0, 1], n_bins=5)
    assert ece == pytest.approx((2 * 0.4 + 0.1 + 0.5) / 4)
    assert mce == pytest.approx(0.5)
    assert [b["count"] for b in bins] == [1, 0, 1, 0, 2]
    # adaptive, 2 bins of 2 sorted by confidence: {.1, .5} conf .3 acc .5; {.9, .9} conf .9 acc .5
    assert dm.adaptive_calibration_error([0.9, 0.9, 0.1, 0.5], [1, 0, 0, 1], n_bins=2) == pytest.approx(0.3)
    _, _, fifteen = dm.expected_calibration_error([0.0, 1.0], [0, 1])
    assert fifteen[0]["count"] == 1 and fifteen[14]["count"] == 1 and len(fifteen) == 15
    perfect, worst, _ = dm.expected_calibration_error([1.0, 1.0], [1, 1])
    assert perfect == 0.0 and worst == 0.0
    assert math.isnan(dm.expected_calibration_error([], [])[0])


def test_entropy_uniform_masked_and_peaked() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -math.inf, -math.inf], [100.0, 0.0, 0.0, 0.0]])
    entropy = dm.entropy_from_logits(logits)
    assert entropy[0].item() == pytest.approx(math.log(4))
    assert entropy[1].item() == pytest.approx(math.log(2))
    assert entropy[2].item() == pytest.approx(0.0, abs=1e-6)


def test_learned_order_first_crossing_of_log_half() -> None:
    steps = [0, 10, 20]
    logprobs = [[-2.0, -2.0, -3.0], [-0.5, -1.0, -3.0], [-0.1, -0.6, -3.0]]
    assert dm.learned_order(steps, logprobs) == [10, 20, None]
    assert dm.learned_order([5], [[math.log(0.5)]]) == [None]  # must exceed log 0.5, not equal it


def test_first_divergence() -> None:
    assert dm.first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert dm.first_divergence([1, 5, 3], [1, 2, 3]) == 1
    assert dm.first_divergence([1, 2], [1, 2, 3]) == 2
    assert dm.first_divergence([1, 2, 3, 4], [1, 2, 3]) == 3
    assert dm.histogram([0, 2, 2, 9], 3) == [1, 0, 3]


def test_mean_pool_and_position_profile() -> None:
    hidden = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    assert dm.mean_pool(hidden, torch.tensor([2, 3])).squeeze(1).tolist() == [2.0, 4.0]
    assert dm.position_profile([1.0, 3.0, 5.0], [0, 0, 2], 4) == [2.0, None, 5.0, None]


def _row(weights: dict, grads: dict | None = None, drift: dict | None = None) -> dict:
    return {"weight_norm": weights, "grad_norm": grads, "drift_prev": drift}


def test_stability_alarms() -> None:
    kw = dict(weight_explode=10.0, grad_explode=100.0, grad_vanish=1e-9, dead_after=2, dead_tol=1e-7)
    init = _row({"a": 1e-4, "b": 1.0})
    first = _row({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1e-3})
    assert dm.stability_alarms([init], **kw) == {}  # nothing to compare yet
    assert dm.stability_alarms([init, first], **kw) == {}  # a's 10^4 growth from a tiny init is not an alarm
    rows = [init, first, _row({"a": 11.0, "b": 0.05}, {"a": 101.0, "b": 0.0}, {"a": 1e-8, "b": 1e-3}),
            _row({"a": 11.0, "b": 0.05}, {"a": 101.0, "b": 0.0}, {"a": 1e-8, "b": 1e-3})]
    alarms = dm.stability_alarms(rows, **kw)
    assert alarms == {"exploding_weights": ["a"], "vanishing_weights": ["b"], "exploding_gradients": ["a"],
                      "vanishing_gradients": ["b"], "dead_layers": ["a"]}
    assert dm.stability_alarms([init, first, _row({"a": math.nan, "b": 1.0}, {"a": math.inf})], **kw) == {
        "nonfinite": ["a"]}


def test_most_moved_keeps_the_axes_that_changed_most_in_their_order() -> None:
    names = ["a", "b", "c", "d"]
    base = {"a": 0.5, "b": 0.1, "c": 0.2, "d": 0.9}
    current = {"a": 0.5, "b": 0.6, "c": None, "d": 0.4}  # moved: a 0, b 0.5, c 0.2 (None read as 0), d 0.5
    assert dm.most_moved(names, current, base, 2) == ["b", "d"]
    assert dm.most_moved(names, current, base, 3) == ["b", "c", "d"]
    assert dm.most_moved(names, current, base, 4) == names and dm.most_moved(names, current, None, 2) == ["a", "b"]
    assert dm.most_moved(names, {"a": 0.6, "b": 0.6}, {}, 1) == ["a"]  # a tie keeps the earlier name
