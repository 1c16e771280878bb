"""Print samples from a pretrained checkpoint (given).

    python -m cs288_lm.pipelines.generate --checkpoint out/pretrain/checkpoints/best.pt --prompt "Once upon a time"
    python -m cs288_lm.pipelines.generate --checkpoint out/pretrain --strategy top_k --k 20 --temperature 0.8
    python -m cs288_lm.pipelines.generate --checkpoint PATH --strategy greedy --max-new-tokens 100

``--checkpoint`` is a file written by :mod:`cs288_lm.pipelines.pretrain` (``latest.pt`` or ``best.pt``) or
its run directory (its model: ``best.pt``, else ``latest.pt``; cs288_lm/training/run_dir.py). The
samples of one call are drawn as one batch from ``--seed``; each stops at ``<|endoftext|>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from cs288_lm.common.pretokenization import EOT
from cs288_lm.sampling import generate
from cs288_lm.tokenizer import Tokenizer
from cs288_lm.training.loading import model_from_checkpoint, read_checkpoint
from cs288_lm.training.settings import DEVICE_HELP, REPO_ROOT, HelpFormatter
from cs288_lm.training.token_files import tokenizer_fingerprint

STRATEGIES = ("greedy", "top_k", "top_p")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="checkpoint file, or a pretrain run directory")
    parser.add_argument("--prompt", default="Once upon a time", help="text the samples continue")
    parser.add_argument("--strategy", choices=STRATEGIES, default="top_p", help="decoding strategy")
    parser.add_argument("--k", type=int, default=50, help="top_k: sample among the k most likely tokens")
    parser.add_argument("--p", type=float, default=0.9, help="top_p: sample within the nucleus of mass p")
    parser.add_argument("--temperature", type=float, default=1.0, help="divides the logits (top_k and top_p only)")
    parser.add_argument("--num-samples", type=int, default=3, help="samples drawn (greedy always gives one)")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="longest continuation, in tokens")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    parser.add_argument("--tokenizer", default=str(REPO_ROOT / "data" / "tokenizer"), help="saved tokenizer directory")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_samples < 1:
        parser.error(f"--num-samples must be at least 1, got {args.num_samples}")
    if not Path(args.tokenizer, "vocab.json").is_file():
        parser.error(f"no tokenizer in {args.tokenizer} (expected vocab.json and merges.txt)")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        return sample(parse_args(argv))
    except NotImplementedError as error:  # the handout before Parts 2 and 4 are written
        print(f"error: not implemented yet: {error}", file=sys.stderr)
        return 2


def sample(args: argparse.Namespace) -> int:
    """Print samples as ``args`` ask (see :func:`parse_args`); returns the exit code."""
    try:
        checkpoint = read_checkpoint(args.checkpoint)
        model, config = model_from_checkpoint(checkpoint, args.device)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tokenizer = Tokenizer.from_directory(args.tokenizer)
    trained_with = checkpoint.get("tokenizer", {})
    if trained_with.get("fingerprint") not in (None, tokenizer_fingerprint(args.tokenizer)):
        print(
            f"warning: the model was trained with the tokenizer in {trained_with.get('path')}, not {args.tokenizer}",
            file=sys.stderr,
        )
    eos = tokenizer.special_token_ids.get(EOT)
    prompt_ids = tokenizer.encode(args.prompt) or ([eos] if eos is not None else [])
    if not prompt_ids or max(prompt_ids) >= config.vocab_size:
        print(
            f"error: the prompt encodes to {prompt_ids}, which the model (vocab {config.vocab_size}) cannot read",
            file=sys.stderr,
        )
        return 2
    greedy = args.strategy == "greedy"
    settings = {
        "greedy": {"temperature": 0.0},
        "top_k": {"temperature": args.temperature, "top_k": args.k},
        "top_p": {"temperature": args.temperature, "top_p": args.p},
    }[args.strategy]
    device = next(model.parameters()).device
    batch = torch.tensor([prompt_ids] * (1 if greedy else args.num_samples), device=device)
    try:
        new_tokens = generate(model, batch, args.max_new_tokens, eos_token_id=eos, seed=args.seed, **settings)
    except ValueError as error:  # bad --k, --p, --temperature or --max-new-tokens
        print(f"error: {error}", file=sys.stderr)
        return 2
    described = ", ".join(f"{name}={value}" for name, value in settings.items())
    for index, row in enumerate(new_tokens.tolist(), start=1):
        text = tokenizer.decode([token for token in row if token != eos])
        print(f"--- sample {index} ({args.strategy}: {described}) ---\n{args.prompt}{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
