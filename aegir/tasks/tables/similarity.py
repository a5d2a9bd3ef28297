"""Offline column similarity: signed, hashed byte n-gram count vectors, L2-normalised; cosine = dot product.

Why this encoder: MMR needs a notion of "these two columns look alike" and we may not download a sentence
encoder. Byte 3- and 4-grams (the default sizes) capture exactly what separates web-table columns -- formats
(``@``, ``://``, ``+49``, ``-05-``), units (``kg``, ``min``), vocabularies (``InStock``) -- with no training and
no vocabulary, and the hashing trick keeps the dimension fixed.

Column text: the first ``max_values`` non-missing cells, each cut to ``value_bytes`` bytes, joined with
newlines, capped at ``max_bytes`` (headers are not used: they are absent in SOTAB and site-specific elsewhere).

Two channels are counted into the same vector: the raw bytes (vocabulary: ``InStock``, ``kg``, ``@gmail``) and
their *shape* -- every digit written ``0``, every ASCII letter ``a``/``A``, every non-ASCII byte ``u`` -- so two
date columns look alike (``0000-00-00``) although they share few digits.

Each n-gram is hashed (a polynomial hash, xor-salted by the n-gram size and the channel, finished by a 64-bit
mixer) to a bucket and a sign; a column's vector is the signed count per bucket, L2-normalised (a column with no
n-grams gets the zero vector, whose cosine with anything is 0). Signed hashing keeps inner products unbiased under
collisions. Everything is numpy over the concatenated bytes of all columns -- no Python loop over bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aegir.tasks.tables.table import Cell

DEFAULT_NGRAM_SIZES: tuple[int, ...] = (3, 4)
DEFAULT_DIM = 1024

_PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_GOLDEN = 0x9E3779B97F4A7C15
_CHUNK_COLUMNS = 2048  # columns per bincount call, bounds memory at chunk * dim floats


def _shape_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint8)
    table[ord("0"):ord("9") + 1] = ord("0")
    table[ord("a"):ord("z") + 1] = ord("a")
    table[ord("A"):ord("Z") + 1] = ord("A")
    table[0x80:] = ord("u")
    return table


_SHAPE = _shape_table()
"""Byte -> its character class, for the shape channel."""


def column_text(cells: Sequence[Cell], max_values: int = 20, value_bytes: int = 64, max_bytes: int = 512) -> bytes:
    """The bytes a column is embedded from (see the module docstring)."""
    parts: list[bytes] = []
    size = 0
    for cell in cells:
        if cell is None:
            continue
        data = cell.encode("utf-8")[:value_bytes]
        parts.append(data)
        size += len(data) + 1
        if len(parts) >= max_values or size >= max_bytes:
            break
    return b"\n".join(parts)[:max_bytes]


def _mix(h: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (xor-shift, multiply, xor-shift) so buckets (low bits) and signs (top bit) both depend on
    every byte of the n-gram; one multiply is enough for bucketing and keeps this pass cheap."""
    h = (h ^ (h >> np.uint64(31))) * _MIX1
    return h ^ (h >> np.uint64(29))


def hashed_ngram_vectors(texts: Sequence[bytes], ngram_sizes: Sequence[int] = DEFAULT_NGRAM_SIZES,
                         dim: int = DEFAULT_DIM, shapes: bool = True) -> np.ndarray:
    """``(len(texts), dim)`` float32 matrix of L2-normalised signed hashed n-gram counts, one row per text.

    ``dim`` must be a power of two (buckets are the low bits of the hash). N-grams never span two texts. With
    ``shapes`` the n-grams of each text's shape are counted too (see the module docstring).
    """
    if dim <= 0 or dim & (dim - 1):
        raise ValueError(f"dim must be a power of two, got {dim}")
    if not ngram_sizes or any(int(n) < 1 for n in ngram_sizes):
        raise ValueError(f"ngram_sizes must be positive integers, got {list(ngram_sizes)}")
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for start in range(0, len(texts), _CHUNK_COLUMNS):
        chunk = texts[start:start + _CHUNK_COLUMNS]
        out[start:start + len(chunk)] = _chunk_counts(chunk, ngram_sizes, dim, shapes)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _chunk_counts(texts: Sequence[bytes], ngram_sizes: Sequence[int], dim: int, shapes: bool) -> np.ndarray:
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    total = int(lengths.sum())
    counts = np.zeros(len(texts) * dim, dtype=np.float64)
    if total == 0:
        return counts.reshape(len(texts), dim)
    raw = np.frombuffer(b"".join(texts), dtype=np.uint8)
    channels = [raw] + ([_SHAPE[raw]] if shapes else [])
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    mask = np.uint64(dim - 1)
    sizes = sorted({int(n) for n in ngram_sizes})
    for channel, data8 in enumerate(channels):
        data = data8.astype(np.uint64) + np.uint64(1)
        # Rolling polynomial hash of the n-gram starting at each position, grown one byte at a time, so the
        # 4-grams reuse the 3-grams' work; h[i] covers data[i:i+n] and is valid for i < total - n + 1.
        h = data.copy()
        n = 1
        for size in sizes:
            if total < size:
                break
            while n < size:
                h = h[:-1] * _PRIME + data[n:]
                n += 1
            salt = np.uint64((_GOLDEN * (size + 64 * channel)) % (1 << 64))  # the n-gram size and the channel
            starts = total - size + 1
            valid = owner[:starts] == owner[size - 1:]  # the n-gram lies inside one text
            mixed = _mix(h[valid] ^ salt)
            buckets = (mixed & mask).astype(np.int64)
            signs = 1.0 - 2.0 * (mixed >> np.uint64(63)).astype(np.float64)
            counts += np.bincount(owner[:starts][valid] * dim + buckets, weights=signs, minlength=counts.size)
    return counts.reshape(len(texts), dim)


def column_vectors(columns: Sequence[Sequence[Cell]], ngram_sizes: Sequence[int] = DEFAULT_NGRAM_SIZES,
                   dim: int = DEFAULT_DIM, max_values: int = 20, value_bytes: int = 64,
                   max_bytes: int = 512, shapes: bool = True) -> np.ndarray:
    """Similarity vectors of several columns (e.g. all columns of a table): ``(len(columns), dim)``."""
    texts = [column_text(cells, max_values, value_bytes, max_bytes) for cells in columns]
    return hashed_ngram_vectors(texts, ngram_sizes, dim, shapes)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0 when either is the zero vector)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarities of the rows of ``vectors`` (zero rows give 0 everywhere, 0 on the diagonal)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return unit @ unit.T
