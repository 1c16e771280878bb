"""Pretraining side by side: our trainer and model against Hugging Face Llama in a plain PyTorch loop.

    python benchmarks/bench_pretrain.py [--max-steps 150] [--d-model 128] [--num-layers 4] ...

Both runs get the same token budget, data (the bundled TinyStories train split, encoded with the
bundled tokenizer), model size, batches (the same random windows, in the same order), learning
rate schedule (warmup + cosine), gradient clipping and AdamW settings (weight decay on matrices
only). Ours is :class:`cs288_lm.training.trainer.Trainer` stepping our :class:`TransformerLM` with our
AdamW; theirs is ``transformers.LlamaForCausalLM`` (same shapes, untied embeddings, SDPA
attention) with ``torch.optim.AdamW`` in a minimal loop. Reported: training tokens/s (optimizer
steps only, evaluation excluded), the final validation loss on the same fixed batches, and ratios.
Targets: our tokens/s at least theirs, our validation loss no worse.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np
import torch
import torch.nn.functional as F

from cs288_lm.data import get_batch
from cs288_lm.model import count_parameters
from cs288_lm.models.hf_interop import hf_llama
from cs288_lm.nn_utils import get_lr_cosine_schedule
from cs288_lm.optimizer import parameter_groups
from cs288_lm.training.train_config import DEFAULT_MODEL, TrainConfig
from cs288_lm.training.trainer import Trainer, autocast_context


def train_ours(config: TrainConfig) -> dict:
    trainer = Trainer(config)
    start = time.perf_counter()
    while trainer.step < config.total_steps:
        trainer.train_step()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "tokens_per_second": trainer.tokens_seen / seconds,
        "val_loss": trainer.evaluate()["val_loss"],
        "parameters": count_parameters(trainer.model),
    }


def train_hugging_face(config: TrainConfig) -> dict:
    """A plain loop over Hugging Face Llama with the batches, schedule and settings ours uses."""
    reference = Trainer(config)  # for the data, the fixed validation batches and the device only
    torch.manual_seed(config.seed)
    model = hf_llama(reference.model_config).to(reference.device)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, config.weight_decay),
        lr=config.learning_rate,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
    )
    rng = np.random.default_rng(config.seed)
    model.train()
    start = time.perf_counter()
    for step in range(config.total_steps):
        for group in optimizer.param_groups:
            group["lr"] = get_lr_cosine_schedule(  # optimizer step k uses iteration k, as the Trainer does
                step + 1, config.learning_rate, config.min_learning_rate, config.warmup_steps, config.total_steps
            )
        inputs, targets = get_batch(
            reference.train_tokens, config.batch_size, config.model.context_length, reference.device, rng
        )
        with autocast_context(reference.device, config.precision):
            logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        losses = [
            float(F.cross_entropy(model(input_ids=x).logits.flatten(0, 1).float(), y.flatten()))
            for x, y in reference.val_batches
        ]
    return {
        "seconds": seconds,
        "tokens_per_second": config.total_steps * config.batch_size * config.model.context_length / seconds,
        "val_loss": sum(losses) / len(losses),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--context-length", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        model = DEFAULT_MODEL.replace(
            context_length=args.context_length,
            d_model=args.d_model,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
        )
        config = TrainConfig(
            model=model,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            device=args.device,
            out_dir=str(Path(scratch) / "run"),
            cache_dir=str(Path(scratch) / "cache"),
            warmup_steps=max(1, args.max_steps // 20),
        )
        ours = train_ours(config)
        theirs = train_hugging_face(config)
    tokens = config.total_steps * config.batch_size * config.model.context_length
    steps = f"{config.total_steps} steps of {config.batch_size} x {config.model.context_length}"
    print(
        f"budget: {tokens:,} tokens ({steps}); "
        f"d_model {config.model.d_model}, {config.model.num_layers} layers, {config.model.num_heads} heads; "
        f"{torch.get_num_threads()} torch threads, device {args.device}"
    )
    print(f"{'':22} {'parameters':>12} {'tokens/s':>10} {'seconds':>8} {'val loss':>9}")
    for name, result in (("ours (Trainer)", ours), ("HF LlamaForCausalLM", theirs)):
        print(
            f"{name:22} {result['parameters']:12,} {result['tokens_per_second']:10,.0f} {result['seconds']:8.1f} "
            f"{result['val_loss']:9.4f}"
        )
    speed_ratio = ours["tokens_per_second"] / theirs["tokens_per_second"]
    print(
        f"ratio ours/HF tokens/s: {speed_ratio:.2f}x [target >= 1.0]; "
        f"val loss ours - HF: {ours['val_loss'] - theirs['val_loss']:+.4f} [target <= 0]; "
        f"val perplexity ours {math.exp(ours['val_loss']):.2f}, HF {math.exp(theirs['val_loss']):.2f}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"ours": ours, "hugging_face": theirs, "config": vars(args)}, indent=2, default=str)
        )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
