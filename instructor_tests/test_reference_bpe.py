"""The reference BPE trainer against the obviously correct one on many small random corpora.

The reference updates pair counts only around each merged occurrence and keeps stale word indexes
for pairs a word lost; runs of one letter (``aaaa``), adjacent occurrences and pairs that come back
after vanishing are where such bookkeeping goes wrong, so the corpora are made of few letters.
"""

from __future__ import annotations

import random
import warnings

from cs288_lm.bpe import train_bpe
from tests.common import naive_train_bpe

ALPHABETS = ["ab", "abc ", "aab b", "xyz xy\n", "aaaa ab", "ab'd .\n"]


def test_reference_trainer_equals_the_naive_one_on_random_corpora(tmp_path):
    rng = random.Random(5)
    path = tmp_path / "corpus.txt"
    for trial in range(120):
        alphabet = rng.choice(ALPHABETS)
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300)))
        path.write_text(text, encoding="utf-8")
        vocab_size = 256 + rng.randint(1, 60)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small corpora run out of pairs
            assert train_bpe(path, vocab_size, []) == naive_train_bpe(text, vocab_size, []), (trial, text)
