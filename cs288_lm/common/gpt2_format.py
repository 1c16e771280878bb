"""Reading and writing tokenizers in GPT-2's file format (given to students).

GPT-2 stores a byte-level BPE tokenizer as two text files:

* ``vocab.json`` maps each token to its id. Token bytes are written as printable characters
  through :func:`bytes_to_unicode` (a space becomes ``"Ġ"``, a newline ``"Ċ"``). Special tokens
  are written as their own text.
* ``merges.txt`` lists the merges in the order they were learned, one ``"left right"`` per line,
  in the same printable form, after a ``#version: 0.2`` header line.

The same files load in Hugging Face ``tokenizers`` and, through :func:`tiktoken_encoding`, in
tiktoken.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cs288_lm.common.pretokenization import GPT2_SPLIT_PATTERN

if TYPE_CHECKING:
    import tiktoken

MERGES_HEADER = "#version: 0.2"


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters.

    Printable Latin-1 bytes map to themselves; the 68 others (control characters, space, ...)
    map to the characters 256, 257, ... in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


@functools.lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {character: byte for byte, character in bytes_to_unicode().items()}


def token_to_string(token: bytes) -> str:
    mapping = bytes_to_unicode()
    return "".join(mapping[byte] for byte in token)


def string_to_token(text: str, where: str) -> bytes:
    mapping = unicode_to_bytes()
    try:
        return bytes(mapping[character] for character in text)
    except KeyError as error:
        raise ValueError(
            f"{where}: {text!r} is not a byte-level token (character {error.args[0]!r} is not in "
            "GPT-2's byte-to-unicode map); if it is a special token, pass it in special_tokens"
        ) from None


def save_vocab_and_merges(
    vocab: dict[int, bytes],
    merges: Sequence[tuple[bytes, bytes]],
    special_tokens: Sequence[str],
    vocab_path: str | os.PathLike,
    merges_path: str | os.PathLike,
) -> None:
    """Write ``vocab.json`` and ``merges.txt``. Each file is written whole, then renamed."""
    specials = {token.encode("utf-8"): token for token in special_tokens}
    encoder: dict[str, int] = {}
    for token_id, token in sorted(vocab.items()):
        text = specials.pop(token) if token in specials else token_to_string(token)
        if text in encoder:
            raise ValueError(
                f"cannot save the vocabulary: ids {encoder[text]} and {token_id} are the same token {token!r}; "
                "vocab.json can hold each token once"
            )
        encoder[text] = token_id
    lines = [MERGES_HEADER] + [f"{token_to_string(left)} {token_to_string(right)}" for left, right in merges]
    _write_atomically(Path(vocab_path), json.dumps(encoder, ensure_ascii=False, indent=0) + "\n")
    _write_atomically(Path(merges_path), "\n".join(lines) + "\n")


def load_vocab_and_merges(
    vocab_path: str | os.PathLike,
    merges_path: str | os.PathLike,
    special_tokens: Sequence[str] = (),
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Read GPT-2-format files back into ``(vocab, merges)`` of bytes.

    Entries of ``vocab.json`` equal to a special token are read as that token's UTF-8 bytes; all
    others go through the byte-to-unicode map. A missing ``#version`` header is accepted.
    """
    vocab_path, merges_path = Path(vocab_path), Path(merges_path)
    for path in (vocab_path, merges_path):
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
    try:
        encoder = json.loads(vocab_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{vocab_path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    if not isinstance(encoder, dict) or not all(isinstance(v, int) for v in encoder.values()):
        raise ValueError(f"{vocab_path}: expected a JSON object mapping token strings to integer ids")
    specials = set(special_tokens)
    vocab: dict[int, bytes] = {}
    for text, token_id in encoder.items():
        if token_id in vocab:
            raise ValueError(f"{vocab_path}: id {token_id} is used twice")
        vocab[token_id] = text.encode("utf-8") if text in specials else string_to_token(text, str(vocab_path))
    merges: list[tuple[bytes, bytes]] = []
    for line_number, line in enumerate(merges_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (line_number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{merges_path}:{line_number}: expected 'left right', got {line!r}")
        where = f"{merges_path}:{line_number}"
        merges.append((string_to_token(parts[0], where), string_to_token(parts[1], where)))
    return vocab, merges


def tiktoken_mergeable_ranks(vocab: dict[int, bytes], special_tokens: Sequence[str] = ()) -> dict[bytes, int]:
    """The ``mergeable_ranks`` argument of ``tiktoken.Encoding``: every non-special token's id."""
    special_bytes = {token.encode("utf-8") for token in special_tokens}
    return {token: token_id for token_id, token in vocab.items() if token not in special_bytes}


def tiktoken_encoding(
    vocab: dict[int, bytes], special_tokens: Sequence[str] = (), name: str = "byte_level_bpe"
) -> tiktoken.Encoding:
    """tiktoken's ``Encoding`` of a byte-level BPE vocabulary with GPT-2's pre-tokenizer: the same
    ids as our :class:`~cs288_lm.tokenizer.Tokenizer` of that vocabulary (with the GPT-2 files,
    tiktoken's ``gpt2``, built offline). Each special token keeps its id in ``vocab``."""
    import tiktoken  # requirements.txt; here so that reading and writing the files do not need it

    ids = {token: token_id for token_id, token in vocab.items()}
    missing = [token for token in special_tokens if token.encode("utf-8") not in ids]
    if missing:
        raise ValueError(f"special tokens {missing} are not in the vocabulary; add them to it first")
    return tiktoken.Encoding(
        name=name,
        pat_str=GPT2_SPLIT_PATTERN,
        mergeable_ranks=tiktoken_mergeable_ranks(vocab, special_tokens),
        special_tokens={token: ids[token.encode("utf-8")] for token in special_tokens},
    )


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
