"""Chat-style records as token ids: each message is its role marker followed by its UTF-8 bytes, and a prompt ends
with the ASSISTANT marker, after which the model writes its completion and EOS. Role markers are special ids that
text can never produce (aegir.tokenizer), so a user message cannot forge a turn."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from aegir.tokenizer import ASSISTANT_ID, EOS_ID, SYSTEM_ID, USER_ID, ByteTokenizer

ROLE_IDS = {"system": SYSTEM_ID, "user": USER_ID, "assistant": ASSISTANT_ID}
_tokenizer = ByteTokenizer()


def encode_prompt(prompt: str | Sequence[Mapping[str, Any]]) -> list[int]:
    """A plain string prompt is its bytes; a chat prompt is role-marked messages plus the ASSISTANT marker."""
    if isinstance(prompt, str):
        return _tokenizer.encode(prompt)
    ids: list[int] = []
    for message in prompt:
        ids.append(ROLE_IDS[str(message["role"])])
        ids.extend(_tokenizer.encode(str(message["content"])))
    ids.append(ASSISTANT_ID)
    return ids


def encode_completion(text: str) -> list[int]:
    """The bytes of a reference completion followed by EOS (what SFT teaches the model to write)."""
    return _tokenizer.encode(text) + [EOS_ID]
