"""Train a byte-level BPE tokenizer and save it in GPT-2 format.

    python train_bpe.py --help

The program is :mod:`cs288_lm.pipelines.train_bpe`; this script runs it from the repository's root.
"""

from __future__ import annotations

import sys

from cs288_lm.pipelines.train_bpe import build_parser, main, parse_args

__all__ = ["build_parser", "main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
