"""Print samples from a pretrained checkpoint (given).

    python -m cs288_lm.generate --checkpoint out/pretrain/checkpoints/best.pt --prompt "Once upon a time"
    python -m cs288_lm.generate --checkpoint out/pretrain --strategy top_k --k 20 --temperature 0.8
    python -m cs288_lm.generate --checkpoint PATH --strategy greedy --max-new-tokens 100

``--checkpoint`` is a file written by :mod:`cs288_lm.pretrain` (``latest.pt`` or ``best.pt``) or
its run directory (``checkpoints/best.pt`` is then used). The samples of one call are drawn as one
batch from ``--seed``; each stops at ``<|endoftext|>``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch import nn

from cs288_lm.architectures import ModelConfig, build_model
from cs288_lm.data import tokenizer_fingerprint
from cs288_lm.model import load_state_dict_strictly
from cs288_lm.pretokenization import EOT
from cs288_lm.pretrain import REPO_ROOT, resolve_device
from cs288_lm.sampling import generate
from cs288_lm.tokenizer import Tokenizer

STRATEGIES = ("greedy", "top_k", "top_p")


def load_pretrained_model(
    checkpoint_path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, ModelConfig]:
    """The model of a :mod:`cs288_lm.pretrain` checkpoint, in eval mode on ``device`` ("auto" allowed).

    ``checkpoint_path`` is a checkpoint file or a run directory (its ``checkpoints/best.pt``).
    A missing file raises FileNotFoundError; a file that is not such a checkpoint, ValueError.
    """
    return model_from_checkpoint(read_checkpoint(checkpoint_path), device)


def read_checkpoint(checkpoint_path: str | os.PathLike) -> dict:
    """The dictionary saved by the trainer (tensors on the CPU); see :func:`load_pretrained_model`."""
    path = Path(checkpoint_path)
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    except Exception as error:  # torch raises many kinds for a corrupt or foreign file
        raise ValueError(
            f"cannot read checkpoint {path} ({type(error).__name__}): not a file written by cs288_lm.pretrain?"
        ) from error
    if not isinstance(checkpoint, dict) or not {"model", "model_config"} <= checkpoint.keys():
        raise ValueError(f"{path} is not a checkpoint written by cs288_lm.pretrain (no 'model' and 'model_config')")
    return checkpoint


def model_from_checkpoint(checkpoint: dict, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelConfig]:
    config = ModelConfig(**checkpoint["model_config"])
    model = build_model(config)
    load_state_dict_strictly(model, checkpoint["model"])
    return model.to(resolve_device(str(device))).eval(), config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint file, or a pretrain run directory")
    parser.add_argument("--prompt", default="Once upon a time")
    parser.add_argument("--strategy", choices=STRATEGIES, default="top_p")
    parser.add_argument("--k", type=int, default=50, help="top_k: sample among the k most likely tokens")
    parser.add_argument("--p", type=float, default=0.9, help="top_p: sample within the nucleus of mass p")
    parser.add_argument("--temperature", type=float, default=1.0, help="top_k and top_p only")
    parser.add_argument("--num-samples", type=int, default=3, help="greedy always gives one")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", default=str(REPO_ROOT / "data" / "tokenizer"), help="saved tokenizer directory")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps, ...")
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
        print(f"warning: the model was trained with the tokenizer in {trained_with.get('path')}, not {args.tokenizer}",
              file=sys.stderr)
    eos = tokenizer.special_token_ids.get(EOT)
    prompt_ids = tokenizer.encode(args.prompt) or ([eos] if eos is not None else [])
    if not prompt_ids or max(prompt_ids) >= config.vocab_size:
        print(f"error: the prompt encodes to {prompt_ids}, which the model (vocab {config.vocab_size}) cannot read",
              file=sys.stderr)
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
