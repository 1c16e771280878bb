"""A tokenizer we train and save loads in Hugging Face ``tokenizers`` and encodes identically.

Instructor-only: ``tokenizers`` is in requirements-dev.txt, not in what students may import.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from cs288_lm.bpe import train_bpe
from cs288_lm.tokenizer import Tokenizer

DATA = Path(__file__).resolve().parent.parent / "data" / "tinystories"
EOT = "<|endoftext|>"


def load_in_hugging_face(directory: Path) -> HFTokenizer:
    model = models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt"))
    hf = HFTokenizer(model)
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([EOT])
    return hf


def test_trained_tokenizer_encodes_the_same_in_hugging_face(tmp_path):
    vocab, merges = train_bpe(DATA / "train.txt", 2000, [EOT])
    ours = Tokenizer(vocab, merges, [EOT])
    ours.save(tmp_path)
    hf = load_in_hugging_face(tmp_path)
    assert hf.get_vocab_size() == len(vocab)
    text = (DATA / "valid.txt").read_text(encoding="utf-8")
    # Add the kinds of text TinyStories lacks: non-ASCII letters, digits, odd whitespace.
    text += "\nGrüße, 你好 🙂 — 1234 they'll  \t x\n\n\n"
    ids = ours.encode(text)
    assert hf.encode(text).ids == ids
    assert hf.decode(ids, skip_special_tokens=False) == ours.decode(ids) == text
