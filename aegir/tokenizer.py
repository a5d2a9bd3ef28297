"""Byte-level tokenizer: every UTF-8 byte is a token, plus a few special ids above the byte range.

Why bytes: no vocabulary to train, no unknown tokens, and any text (or binary garbage) round-trips.

Id layout (``VOCAB_SIZE == 264``):

* ``0..255``  -- the raw UTF-8 bytes of the text.
* ``256 PAD``  -- fills batches to a common length; never carries meaning (mask it in the loss).
* ``257 BOS``  -- beginning of a sequence.
* ``258 EOS``  -- end of a sequence / document; generation stops here.
* ``259 CLS``  -- summary position for classification heads.
* ``260 SEP``  -- separates two segments inside one sequence (e.g. prompt | answer).
* ``261 SYSTEM``, ``262 USER``, ``263 ASSISTANT`` -- chat role markers that open a turn.

Special ids are only ever produced by code (``add_bos=True``, chat templates, ...). Text is always encoded as
bytes, so a user string containing ``"<|eos|>"`` stays those seven bytes and can never inject a control token.

Decoding never raises: invalid UTF-8 becomes U+FFFD (``errors="replace"``) and ids outside ``0..VOCAB_SIZE-1``
(negative or too large) are rendered as the visible replacement character U+FFFD, whatever ``skip_special`` says,
so a model emitting garbage ids is noticed rather than silently hidden.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

N_BYTES = 256

PAD_ID = 256
BOS_ID = 257
EOS_ID = 258
CLS_ID = 259
SEP_ID = 260
SYSTEM_ID = 261
USER_ID = 262
ASSISTANT_ID = 263

SPECIAL_TOKENS: dict[str, int] = {
    "pad": PAD_ID,
    "bos": BOS_ID,
    "eos": EOS_ID,
    "cls": CLS_ID,
    "sep": SEP_ID,
    "system": SYSTEM_ID,
    "user": USER_ID,
    "assistant": ASSISTANT_ID,
}

VOCAB_SIZE = N_BYTES + len(SPECIAL_TOKENS)

# How a special id is shown by ``decode(..., skip_special=False)``: ``<|bos|>``, ``<|user|>``, ...
SPECIAL_MARKERS: dict[int, str] = {token_id: f"<|{name}|>" for name, token_id in SPECIAL_TOKENS.items()}

# Shown for ids that are not in the vocabulary at all.
INVALID_ID_MARKER = "\ufffd"


def bytes_to_tensor(data: bytes | bytearray | memoryview) -> torch.LongTensor:
    """Turn raw bytes into a 1-D int64 tensor of token ids without a Python loop (corpora are megabytes)."""
    array = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    return torch.from_numpy(array)


class ByteTokenizer:
    """Stateless byte tokenizer; an object (rather than functions) so models and loops can take "a tokenizer"."""

    vocab_size: int = VOCAB_SIZE
    pad_id: int = PAD_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID

    def encode(self, text: str | bytes, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Encode text as its UTF-8 bytes (bytes are taken as-is), optionally wrapped in BOS/EOS.

        A ``str`` must be encodable as UTF-8 (lone surrogates raise ``UnicodeEncodeError``).
        """
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        ids = list(data)
        if add_bos:
            ids.insert(0, BOS_ID)
        if add_eos:
            ids.append(EOS_ID)
        return ids

    def encode_batch(
        self,
        texts: Sequence[str | bytes],
        max_len: int,
        pad: bool = True,
        add_bos: bool = False,
        add_eos: bool = False,
    ) -> torch.LongTensor:
        """Encode several texts into a ``(len(texts), L)`` tensor, right-padded with PAD, truncated to ``max_len``.

        With ``pad=True`` every row has length ``L == max_len`` (fixed shapes for compiled models); with
        ``pad=False`` ``L`` is the longest encoded text (capped at ``max_len``), so padding is only what the batch
        needs. Truncation keeps the first ``max_len`` ids (so an EOS added to a long text is cut off).
        """
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        encoded = [self.encode(t, add_bos=add_bos, add_eos=add_eos)[:max_len] for t in texts]
        width = max_len if pad else max((len(ids) for ids in encoded), default=0)
        batch = torch.full((len(encoded), width), PAD_ID, dtype=torch.long)
        for row, ids in enumerate(encoded):
            if ids:
                batch[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return batch

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Decode ids back to text; never raises (see the module docstring for how bad input is rendered).

        Runs of byte ids are decoded together so multi-byte UTF-8 characters survive; a special id ends the run.
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        parts: list[str] = []
        run = bytearray()
        for raw in ids:
            token = int(raw)
            if 0 <= token < N_BYTES:
                run.append(token)
                continue
            if run:
                parts.append(run.decode("utf-8", errors="replace"))
                run.clear()
            if token in SPECIAL_MARKERS:
                if not skip_special:
                    parts.append(SPECIAL_MARKERS[token])
            else:
                parts.append(INVALID_ID_MARKER)
        if run:
            parts.append(run.decode("utf-8", errors="replace"))
        return "".join(parts)
