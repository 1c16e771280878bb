"""Encode a whole text file into a ``.npy`` array of token ids, using every core (see
:func:`cs288_lm.training.encoding.encode_file`).

    python -m cs288_lm.pipelines.encode_file --tokenizer out/tokenizer \\
        --input data/tinystories/train.txt --out train.npy
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from cs288_lm.tokenizer import Tokenizer
from cs288_lm.training.encoding import encode_file
from cs288_lm.training.settings import HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Encode a text file into a .npy array of token ids.", formatter_class=HelpFormatter
    )
    parser.add_argument("--tokenizer", required=True, help="folder written by Tokenizer.save (vocab.json, merges.txt)")
    parser.add_argument("--input", required=True, help="UTF-8 text file")
    parser.add_argument("--out", required=True, help="output .npy file")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores for big files)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    tokenizer = Tokenizer.from_directory(args.tokenizer)
    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        elapsed = time.perf_counter() - start
        print(
            f"[encode] {done / 1e6:.1f}/{total / 1e6:.1f} MB ({done / 1e6 / max(elapsed, 1e-9):.1f} MB/s)",
            file=sys.stderr,
        )

    path = encode_file(tokenizer, args.input, args.out, args.workers, report)
    ids = np.load(path, mmap_mode="r")
    print(f"wrote {len(ids)} tokens ({ids.dtype}) to {path} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
