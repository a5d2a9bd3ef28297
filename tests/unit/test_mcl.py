"""Markov clustering against hand-computed flows, separable blobs and collapsed embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import aegir.eval.mcl as mcl_module
from aegir.eval.mcl import cosine_similarity_matrix, knn_cosine_graph, markov_cluster, mcl, modularity


def blobs(num: int, per: int, dim: int = 64, noise: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes around random directions of norm 10: separable by angle, isotropic inside."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num, dim))
    centres *= 10.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(num), per)
    return centres[truth] + noise * rng.normal(size=(num * per, dim)), truth


def assert_same_partition(labels: np.ndarray, truth: np.ndarray) -> None:
    """Equal up to renaming: every cluster is one class and every class is one cluster."""
    pairs = set(zip(labels.tolist(), truth.tolist()))
    assert len(pairs) == len(set(labels.tolist())) == len(set(truth.tolist()))


PATH3 = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def test_one_iteration_on_a_path_matches_hand_computation() -> None:
    # Loops of 1 -> M = [[1/2,1/3,0],[1/2,1/3,1/2],[0,1/3,1/2]]. M^2 col 0 = [5/12,5/12,1/6] -> squared and
    # renormalised [25,25,4]/54; col 1 = [5,8,5]/18 -> [25,64,25]/114; col 2 mirrors col 0.
    result = mcl(PATH3, expansion=2, inflation=2.0, loop_value=1.0, prune_threshold=0.0, max_iter=1)
    expected = np.array([[25 / 54, 25 / 114, 4 / 54], [25 / 54, 64 / 114, 25 / 54], [4 / 54, 25 / 114, 25 / 54]])
    np.testing.assert_allclose(result.flow.toarray(), expected, rtol=1e-12)
    assert result.iterations == 1 and not result.converged


def test_path_converges_to_one_cluster_around_its_centre() -> None:
    result = mcl(PATH3, expansion=2)
    assert result.converged and result.num_clusters == 1
    assert result.attractors.tolist() == [1]
    np.testing.assert_allclose(result.flow.toarray(), [[0, 0, 0], [1, 1, 1], [0, 0, 0]], atol=1e-9)


def test_two_triangles_joined_by_a_bridge_split_at_the_bridge() -> None:
    a = np.zeros((6, 6))
    for i, j in [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5), (2, 3)]:
        a[i, j] = a[j, i] = 1.0
    for expansion in (2, 3):
        result = mcl(a, expansion=expansion)
        assert result.labels.tolist() == [0, 0, 0, 1, 1, 1]
        assert result.sizes.tolist() == [3, 3]


def test_components_and_isolated_nodes_are_separate_clusters() -> None:
    a = np.zeros((5, 5))
    a[0, 1] = a[1, 0] = 0.7
    a[2, 3] = a[3, 2] = 0.2
    result = mcl(a)  # node 4 has no edge at all
    assert result.labels.tolist() == [0, 0, 1, 1, 2]
    assert result.num_clusters == 3


def test_complete_graph_is_one_attractor_system() -> None:
    result = mcl(np.ones((4, 4)))
    assert result.num_clusters == 1 and result.converged
    assert result.labels.tolist() == [0, 0, 0, 0]


def test_sparse_and_dense_inputs_agree() -> None:
    import scipy.sparse as sp

    a = np.zeros((6, 6))
    for i, j in [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5), (2, 3)]:
        a[i, j] = a[j, i] = 1.0
    assert mcl(sp.csr_matrix(a)).labels.tolist() == mcl(torch.tensor(a)).labels.tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("num,per", [(3, 150), (5, 120)])
def test_separable_blobs_are_found_exactly(num: int, per: int) -> None:
    x, truth = blobs(num, per)
    result = markov_cluster(torch.tensor(x, dtype=torch.float32))
    assert result.num_clusters == num
    assert_same_partition(result.labels, truth)


def test_many_small_classes_are_found_exactly() -> None:
    x, truth = blobs(40, 15, dim=128)
    result = markov_cluster(x)
    assert result.num_clusters == 40
    assert_same_partition(result.labels, truth)


def test_block_machinery_matches_one_dense_iteration(monkeypatch: pytest.MonkeyPatch) -> None:
    # Per-component sparse/dense blocks are an optimisation: the plain dense iteration must give the same clusters.
    x, _ = blobs(3, 150)
    graph = knn_cosine_graph(x)
    fast = mcl(graph)
    monkeypatch.setattr(mcl_module, "_DENSE_BELOW", 10**9)
    monkeypatch.setattr(mcl_module, "_RANK_ONE_TV", -1.0)
    plain = mcl(graph)
    assert fast.labels.tolist() == plain.labels.tolist()
    np.testing.assert_allclose(fast.flow.toarray(), plain.flow.toarray(), atol=1e-6)


@pytest.mark.parametrize(("noise", "n"), [(0.0, 400), (1e-6, 400), (1e-3, 400), (1e-2, 400), (1e-3, 1100)])
def test_collapsed_embeddings_are_one_cluster(noise: float, n: int) -> None:
    # n = 1100 > 1 / prune_threshold: an absolute pruning threshold would cut the near-uniform flow to pointers.
    rng = np.random.default_rng(1)
    x = 7.0 * rng.normal(size=64) + noise * rng.normal(size=(n, 64))
    result = markov_cluster(x)
    assert result.num_clusters == 1
    assert result.sizes.tolist() == [n]


def test_bf16_rounding_noise_does_not_invent_clusters() -> None:
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.normal(size=128) + 1e-4 * rng.normal(size=(300, 128))).to(torch.bfloat16)
    assert markov_cluster(x).num_clusters == 1


def test_zero_vectors_are_one_cluster_and_apart_from_the_rest() -> None:
    assert markov_cluster(np.zeros((30, 8))).num_clusters == 1
    x, _ = blobs(3, 40, dim=16)
    mixed = np.concatenate([x, np.zeros((5, 16))])
    result = markov_cluster(mixed)
    assert result.num_clusters == 4
    assert len(set(result.labels[-5:].tolist())) == 1
    assert result.labels[-1] not in set(result.labels[:-5].tolist())


def test_degenerate_sizes() -> None:
    assert markov_cluster(np.zeros((0, 4))).num_clusters == 0
    one = markov_cluster(np.ones((1, 4)))
    assert one.num_clusters == 1 and one.labels.tolist() == [0]
    # n <= k: every pair is a neighbour
    few = markov_cluster(np.eye(4) + 5.0, k=10)
    assert few.num_clusters == 1


def test_labels_are_numbered_by_lowest_member() -> None:
    x, _ = blobs(4, 30, dim=16)
    order = np.random.default_rng(3).permutation(len(x))
    labels = markov_cluster(x[order]).labels
    _, first = np.unique(labels, return_index=True)
    assert labels[0] == 0 and np.all(np.diff(first) > 0)


def test_knn_graph_shape_symmetry_and_degree() -> None:
    x, _ = blobs(3, 50, dim=16)
    g = knn_cosine_graph(x, k=7)
    assert g.shape == (150, 150)
    np.testing.assert_array_equal(g, g.T)
    assert np.all(np.diag(g) == 0) and np.all(g >= 0)
    assert np.all((g > 0).sum(axis=1) >= 7)  # within-class cosines are positive, so all 7 choices survive


def test_knn_graph_keeps_ties_within_tolerance() -> None:
    # Node 0 is equally similar to 1, 2 and 3; k=1 must not pick one of them by index.
    x = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    g = knn_cosine_graph(x, k=1)
    assert (g[0, 1:] > 0).all()
    np.testing.assert_allclose(g[0, 1:], 1 / math.sqrt(2))


def test_cosine_similarity_oracle() -> None:
    s = cosine_similarity_matrix(np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))
    assert s[0, 1] == pytest.approx(0.0) and s[0, 2] == pytest.approx(1 / math.sqrt(2))
    assert s[3, 4] == 1.0 and s[0, 3] == 0.0


def test_modularity_oracle() -> None:
    a = np.zeros((6, 6))
    for i, j in [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)]:
        a[i, j] = a[j, i] = 1.0
    # within-weight 12/12, each side holds half the strength: Q = 1 - 2 * 0.5^2
    assert modularity(a, np.array([0, 0, 0, 1, 1, 1])) == pytest.approx(0.5)
    assert modularity(a, np.zeros(6, dtype=int)) == pytest.approx(0.0)
    assert math.isnan(modularity(np.zeros((3, 3)), np.zeros(3, dtype=int)))


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        markov_cluster(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="non-negative"):
        mcl(np.array([[0.0, -1.0], [-1.0, 0.0]]))
    with pytest.raises(ValueError, match="square"):
        mcl(np.ones((2, 3)))
    with pytest.raises(ValueError, match="inflation"):
        mcl(PATH3, inflation=1.0)
    with pytest.raises(ValueError, match="expansion"):
        mcl(PATH3, expansion=1)
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        markov_cluster(np.ones(5))
