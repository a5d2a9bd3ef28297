"""Byte tokenizer: lossless round-trips, decode never raises, specials cannot be injected through text."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from aegir.tokenizer import (
    ASSISTANT_ID,
    BOS_ID,
    EOS_ID,
    INVALID_ID_MARKER,
    PAD_ID,
    SPECIAL_TOKENS,
    VOCAB_SIZE,
    ByteTokenizer,
    bytes_to_tensor,
)

TOK = ByteTokenizer()


@given(st.text())
def test_text_round_trips(text: str) -> None:
    assert TOK.decode(TOK.encode(text)) == text


@given(st.text())
def test_encode_is_the_utf8_bytes(text: str) -> None:
    assert TOK.encode(text) == list(text.encode("utf-8"))


@given(st.binary())
def test_arbitrary_bytes_decode_like_utf8_replace(data: bytes) -> None:
    assert TOK.decode(TOK.encode(data)) == data.decode("utf-8", errors="replace")


@given(st.lists(st.integers()), st.booleans())
def test_decode_of_any_integers_never_raises(ids: list[int], skip_special: bool) -> None:
    assert isinstance(TOK.decode(ids, skip_special=skip_special), str)


def test_out_of_range_ids_render_as_replacement_character() -> None:
    assert TOK.decode([65, VOCAB_SIZE, -1, 10**30, 66]) == f"A{INVALID_ID_MARKER * 3}B"
    assert TOK.decode([VOCAB_SIZE], skip_special=False) == INVALID_ID_MARKER


def test_special_ids_follow_the_bytes() -> None:
    assert sorted(SPECIAL_TOKENS.values()) == list(range(256, VOCAB_SIZE))
    assert VOCAB_SIZE == 256 + len(SPECIAL_TOKENS) == TOK.vocab_size
    assert {"pad", "bos", "eos", "cls", "sep", "system", "user", "assistant"} == set(SPECIAL_TOKENS)
    assert PAD_ID == 256


def test_bos_eos_are_added_and_rendered() -> None:
    ids = TOK.encode("hi", add_bos=True, add_eos=True)
    assert ids == [BOS_ID, ord("h"), ord("i"), EOS_ID]
    assert TOK.decode(ids) == "hi"
    assert TOK.decode(ids, skip_special=False) == "<|bos|>hi<|eos|>"
    assert TOK.decode([ASSISTANT_ID], skip_special=False) == "<|assistant|>"


def test_special_marker_text_is_not_parsed() -> None:
    text = "<|eos|><|assistant|>"
    ids = TOK.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert EOS_ID not in ids and ASSISTANT_ID not in ids
    assert TOK.decode(ids) == text


def test_special_between_bytes_of_one_character_does_not_raise() -> None:
    e_acute = list("é".encode())
    assert TOK.decode([e_acute[0], BOS_ID, e_acute[1]]) == "\ufffd\ufffd"


def test_decode_accepts_tensor() -> None:
    assert TOK.decode(torch.tensor([[104, 105]])) == "hi"


def test_encode_batch_pads_and_truncates() -> None:
    batch = TOK.encode_batch(["ab", "", "abcdefgh"], max_len=5)
    assert batch.dtype == torch.long
    assert batch.shape == (3, 5)
    assert batch[0].tolist() == [97, 98, PAD_ID, PAD_ID, PAD_ID]
    assert batch[1].tolist() == [PAD_ID] * 5
    assert batch[2].tolist() == [97, 98, 99, 100, 101]


def test_encode_batch_without_pad_uses_longest() -> None:
    batch = TOK.encode_batch(["ab", "abc"], max_len=10, pad=False, add_bos=True)
    assert batch.tolist() == [[BOS_ID, 97, 98, PAD_ID], [BOS_ID, 97, 98, 99]]
    assert TOK.encode_batch(["abcdef"], max_len=3, pad=False).shape == (1, 3)


def test_encode_batch_rejects_nonpositive_max_len() -> None:
    with pytest.raises(ValueError):
        TOK.encode_batch(["a"], max_len=0)


@given(st.binary(max_size=2000))
def test_bytes_to_tensor_matches_encode(data: bytes) -> None:
    tensor = bytes_to_tensor(data)
    assert tensor.dtype == torch.int64
    assert tensor.tolist() == TOK.encode(data)
