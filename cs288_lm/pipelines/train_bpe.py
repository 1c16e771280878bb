"""Train a byte-level BPE tokenizer and save it in GPT-2 format.

    python train_bpe.py                      # the bundled TinyStories sample, vocab 10,000
    python train_bpe.py --input data/TinyStoriesV2-GPT4-train.txt --vocab-size 10000 \\
        --special-token "<|endoftext|>" --out out/tokenizer-10k --workers 8
    python -m cs288_lm.pipelines.train_bpe ...   # the same program

Writes vocab.json, merges.txt and special_tokens.txt to --out, then prints the time taken, the
peak memory, the vocabulary size reached and the longest token.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

from cs288_lm.bpe import train_bpe
from cs288_lm.tokenizer import Tokenizer
from cs288_lm.training.settings import REPO_ROOT, HelpFormatter

DEFAULT_INPUT = REPO_ROOT / "data" / "tinystories" / "train.txt"
DEFAULT_OUT = Path("out") / "tokenizer"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="UTF-8 training text")
    parser.add_argument("--vocab-size", type=int, default=10_000, help="final vocabulary size, special tokens included")
    parser.add_argument(
        "--special-token",
        action="append",
        dest="special_tokens",
        help='a special token; repeat for several (default: "<|endoftext|>")',
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--workers", type=int, default=None, help="pre-tokenization processes (default: automatic)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.special_tokens is None:
        args.special_tokens = ["<|endoftext|>"]
    return args


def peak_memory_mb(children_before: int) -> str:
    """Peak resident memory of this process and of its largest worker (ru_maxrss: KiB on Linux).

    The children's figure can be inherited from whatever started us, so it only counts if it grew.
    """
    scale = 1 / 1024 if sys.platform.startswith("linux") else 1 / 2**20
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if children > children_before:
        return f"{own:.0f} MB (largest worker: {children * scale:.0f} MB)"
    return f"{own:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vocab, merges = train_bpe(args.input, args.vocab_size, args.special_tokens, args.workers, not args.quiet)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    Tokenizer(vocab, merges, args.special_tokens).save(args.out)
    longest = max(vocab.values(), key=len)
    print(f"trained on {args.input} ({args.input.stat().st_size / 1e6:.2f} MB) in {elapsed:.2f}s")
    print(f"peak memory: {peak_memory_mb(children_before)}")
    print(f"vocabulary: {len(vocab)} tokens ({len(merges)} merges), asked for {args.vocab_size}")
    print(f"longest token: {longest!r} ({len(longest)} bytes)")
    print(f"saved to {args.out}/ (vocab.json, merges.txt, special_tokens.txt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
