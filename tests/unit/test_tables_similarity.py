"""Column similarity vectors: hashed byte n-grams, L2-normalised, cosine (aegir/tasks/tables/similarity.py)."""

from __future__ import annotations

import numpy as np
import pytest

from aegir.tasks.tables.similarity import (
    column_text,
    column_vectors,
    cosine,
    cosine_matrix,
    hashed_ngram_vectors,
)


def test_vectors_are_unit_length_and_empty_text_is_the_zero_vector() -> None:
    vectors = hashed_ngram_vectors([b"2021-06-05\n2020-01-31", b"", b"ab"], (3, 4, 5), 256)
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-6)
    assert not vectors[1].any()
    assert not vectors[2].any()  # shorter than every n-gram size


def test_one_repeated_ngram_gives_a_single_signed_unit_entry() -> None:
    # "aaaa" has three 2-grams, all "aa": one bucket holds a count of +-3, which normalises to +-1.
    vector = hashed_ngram_vectors([b"aaaa"], (2,), 64, shapes=False)[0]
    nonzero = np.flatnonzero(vector)
    assert len(nonzero) == 1 and abs(vector[nonzero[0]]) == pytest.approx(1.0)
    # With the shape channel, "aaaa" also counts three "aa" shape 2-grams (another salt): two +-1/sqrt(2) entries
    # (or one entry of 2/sqrt(2) if both land in one bucket with one sign -- not the case for this hash).
    both = hashed_ngram_vectors([b"aaaa"], (2,), 64)[0]
    assert np.abs(both[np.flatnonzero(both)]).tolist() == pytest.approx([2 ** -0.5] * 2)


def test_the_shape_channel_makes_same_format_columns_similar() -> None:
    years = hashed_ngram_vectors([b"2021", b"1987"], (3,), 1024)
    raw_only = hashed_ngram_vectors([b"2021", b"1987"], (3,), 1024, shapes=False)
    # raw 3-grams {202, 021} vs {198, 987} are disjoint (two +-1 entries each); both shapes are "0000", two "000"
    # shape 3-grams in one bucket (+-2). cos = 2*2 / (1 + 1 + 4) = 2/3.
    assert cosine(years[0], years[1]) == pytest.approx(2 / 3, abs=1e-6)
    assert cosine(raw_only[0], raw_only[1]) == pytest.approx(0.0, abs=1e-6)


def test_ngrams_never_span_two_texts_and_a_text_does_not_depend_on_its_batch() -> None:
    alone = hashed_ngram_vectors([b"ab", b"cd"], (3,), 64)
    assert not alone.any()  # "abcd" would have 3-grams, but only across the boundary
    texts = [b"info@example.com", b"+49 30 1234567", b"https://www.example.org/p/1"]
    batch = hashed_ngram_vectors(texts, (3, 4), 512)
    for i, text in enumerate(texts):
        np.testing.assert_array_equal(batch[i], hashed_ngram_vectors([text], (3, 4), 512)[0])
    np.testing.assert_array_equal(batch, hashed_ngram_vectors(texts, (3, 4), 512))  # deterministic


def test_columns_of_one_format_are_closer_than_columns_of_another() -> None:
    dates_a = ["2021-06-05", "2019-11-30", "2020-02-14", "2023-07-01"]
    dates_b = ["2018-03-22", "2022-12-09", "2017-05-17", "2024-01-08"]
    emails = ["anna.smith@example.com", "info@harbor.de", "tom@mail.example.org", "sales@acme.io"]
    vectors = column_vectors([dates_a, dates_b, emails], dim=1024)
    sims = cosine_matrix(vectors)
    assert sims[0, 1] > 0.6
    assert sims[0, 1] > sims[0, 2] + 0.5 and sims[0, 1] > sims[1, 2] + 0.5
    assert cosine(vectors[0], vectors[1]) == pytest.approx(sims[0, 1], abs=1e-6)


def test_cosine_matrix_and_cosine_on_hand_values() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    sims = cosine_matrix(vectors)
    np.testing.assert_allclose(sims, [[1.0, 2 ** -0.5, 0.0], [2 ** -0.5, 1.0, 0.0], [0.0, 0.0, 0.0]], atol=1e-12)
    assert cosine(np.array([3.0, 4.0]), np.array([4.0, 3.0])) == pytest.approx(24 / 25)
    assert cosine(np.zeros(2), np.array([1.0, 0.0])) == 0.0


def test_column_text_skips_missing_cells_and_respects_its_caps() -> None:
    assert column_text(["a", None, "b"]) == b"a\nb"
    assert column_text(["x" * 100], value_bytes=8) == b"x" * 8
    assert column_text([str(i) for i in range(100)], max_values=3) == b"0\n1\n2"
    assert len(column_text(["y" * 60] * 50, max_bytes=100)) == 100


def test_bad_dimension_or_ngram_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="power of two"):
        hashed_ngram_vectors([b"abc"], (3,), 1000)
    with pytest.raises(ValueError, match="ngram_sizes"):
        hashed_ngram_vectors([b"abc"], (), 64)
