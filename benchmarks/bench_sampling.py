"""Decoding speed: our KV cache against recomputing the prefix, and against Hugging Face ``generate``.

    python benchmarks/bench_sampling.py [--new-tokens 256] [--prompt-length 32] [--batch-sizes 1 8]
        [--sizes small big] [--repeats 3] [--threads N] [--json PATH]

What is measured: the wall-clock time (``time.perf_counter``) of generating exactly
``--new-tokens`` tokens greedily (temperature 0, no end-of-sequence token, so every row runs to the
end) after a batch of random prompts of ``--prompt-length`` tokens, on the CPU, float32. Tokens/s
= ``batch * new_tokens / time``; each measurement is repeated ``--repeats`` times, interleaved over
the methods so that background load hits them alike, and the median is kept (a method whose first
run takes longer than ``--long-run`` seconds, 20 by default, runs once). The methods:

* ``ours cache``: :func:`cs288_lm.sampling.generate` with ``use_cache=True``: the prompt is encoded
  once, then each new token runs through the layers alone against preallocated keys and values;
* ``ours recompute``: the same call with ``use_cache=False``: every step re-encodes the whole
  prefix through the same layers (only the last position goes through the output layer);
* ``forward recompute``: the loop one writes without a cache, ``model(prefix)[:, -1].argmax()``
  per step (the whole prefix through ``TransformerLM.forward``, output layer included);
* ``HF cache``: ``LlamaForCausalLM.generate(do_sample=False, use_cache=True)`` (its dynamic
  cache, SDPA attention), the library one would otherwise use.

The models (random weights, nothing downloaded): our :class:`TransformerLM` and a Hugging Face
``LlamaForCausalLM`` of the same sizes (``cs288_lm.models.hf_interop.hf_llama``); ours is loaded with the
Hugging Face weights, so the two compute the same function and the greedy tokens are compared
(rows that agree are printed; float rounding can flip a near-tie after many steps). Context length
512 >= prompt + new tokens, so nothing slides out of the window. Sizes: ``small`` is the default
pretraining model (d_model 128, 4 layers, 4 heads), ``big`` d_model 512, 8 layers, 8 heads; both
with the bundled tokenizer's 4,096 tokens. Targets: ours cache >= 5x recomputation (both
recomputations are reported; ``ours recompute`` is the stricter one); ours cache / HF cache
reported (informational).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch
from bench_model import machine_info

from cs288_lm.models.architectures import ModelConfig, build_model
from cs288_lm.models.hf_interop import hf_llama, llama_to_ours
from cs288_lm.sampling import generate

VOCAB_SIZE = 4096  # the bundled tokenizer
CONTEXT_LENGTH = 512
SIZES = {"small": (128, 4, 4), "big": (512, 8, 8)}  # d_model, num_layers, num_heads
TARGET_SPEEDUP = 5.0
Generate = Callable[[torch.Tensor, int], torch.Tensor]  # (prompts, new tokens) -> new tokens


def build_models(size: str) -> tuple[Generate, Generate, Generate, Generate, int]:
    """Our model with the cache and without, and Hugging Face's, sharing one set of weights."""
    d_model, num_layers, num_heads = SIZES[size]
    config = ModelConfig(
        architecture="llama",
        vocab_size=VOCAB_SIZE,
        context_length=CONTEXT_LENGTH,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
    )
    torch.manual_seed(0)
    theirs = hf_llama(config)
    theirs.eval()
    theirs.generation_config.eos_token_id = None  # run every row to the end, as ours does
    ours = build_model(config).eval()
    ours.load_weights(llama_to_ours(theirs.state_dict()))

    def hugging_face(prompts: torch.Tensor, new_tokens: int) -> torch.Tensor:
        with torch.inference_mode():
            out = theirs.generate(
                prompts,
                attention_mask=torch.ones_like(prompts),
                max_new_tokens=new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
            )
        return out[:, prompts.shape[1] :]

    def forward_recompute(prompts: torch.Tensor, new_tokens: int) -> torch.Tensor:
        sequence = prompts
        with torch.inference_mode():
            for _ in range(new_tokens):
                next_token = ours(sequence[:, -CONTEXT_LENGTH:])[:, -1].argmax(dim=-1)
                sequence = torch.cat([sequence, next_token[:, None]], dim=1)
        return sequence[:, prompts.shape[1] :]

    def ours_with(use_cache: bool) -> Generate:
        return lambda prompts, new_tokens: generate(ours, prompts, new_tokens, temperature=0.0, use_cache=use_cache)

    parameters = sum(parameter.numel() for parameter in ours.parameters())
    return ours_with(True), ours_with(False), forward_recompute, hugging_face, parameters


def timed(method: Generate, prompts: torch.Tensor, new_tokens: int) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = method(prompts, new_tokens)
    return time.perf_counter() - start, out


def bench(size: str, batch: int, args: argparse.Namespace) -> dict:
    cached, recomputed, forward_recomputed, hugging_face, parameters = build_models(size)
    methods = {
        "ours cache": cached,
        "ours recompute": recomputed,
        "forward recompute": forward_recomputed,
        "HF cache": hugging_face,
    }
    prompts = torch.randint(1, VOCAB_SIZE, (batch, args.prompt_length), generator=torch.Generator().manual_seed(batch))
    for method in methods.values():
        method(prompts, 4)  # warm-up: first-call allocations and kernel selection
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    outputs = {}
    for repeat in range(args.repeats):
        names = list(methods)
        names = names[repeat % len(names) :] + names[: repeat % len(names)]  # rotate the order
        for name in names:
            if repeat and seconds[name][0] > args.long_run:
                continue  # long runs average out background load by themselves
            elapsed, outputs[name] = timed(methods[name], prompts, args.new_tokens)
            seconds[name].append(elapsed)
            assert outputs[name].shape == (batch, args.new_tokens), (name, outputs[name].shape)
    result = {
        "size": size,
        "d_model_layers_heads": SIZES[size],
        "parameters": parameters,
        "batch": batch,
        "methods": {},
    }
    for name, times in seconds.items():
        median = statistics.median(times)
        result["methods"][name] = {
            "seconds": times,
            "median_seconds": median,
            "tokens_per_second": batch * args.new_tokens / median,
        }
    speed = {name: row["tokens_per_second"] for name, row in result["methods"].items()}
    result["cache_speedup"] = speed["ours cache"] / speed["ours recompute"]
    result["cache_speedup_over_forward"] = speed["ours cache"] / speed["forward recompute"]
    result["ours_over_hf"] = speed["ours cache"] / speed["HF cache"]
    result["rows_equal_to_recompute"] = int((outputs["ours cache"] == outputs["ours recompute"]).all(1).sum())
    result["rows_equal_to_hf"] = int((outputs["ours cache"] == outputs["HF cache"]).all(1).sum())
    return result


def print_result(result: dict, new_tokens: int) -> None:
    d_model, layers, heads = result["d_model_layers_heads"]
    print(
        f"\n{result['size']} (d_model {d_model}, {layers} layers, {heads} heads, {result['parameters'] / 1e6:.1f}M "
        f"parameters), batch {result['batch']}, {new_tokens} new tokens:"
    )
    for name, row in result["methods"].items():
        times = ", ".join(f"{t:.2f}" for t in row["seconds"])
        speed, median = row["tokens_per_second"], row["median_seconds"]
        print(f"  {name:<15} {speed:>9.1f} tokens/s   (median {median:.2f} s of {times})")
    verdict = "meets" if result["cache_speedup"] >= TARGET_SPEEDUP else "MISSES"
    print(
        f"  cache / forward recompute: {result['cache_speedup_over_forward']:.1f}x; "
        f"cache / recompute: {result['cache_speedup']:.1f}x ({verdict} the {TARGET_SPEEDUP:.0f}x target); "
        f"ours cache / HF cache: {result['ours_over_hf']:.2f}x"
    )
    print(
        f"  identical greedy rows: cache vs recompute {result['rows_equal_to_recompute']}/{result['batch']}, "
        f"ours vs HF {result['rows_equal_to_hf']}/{result['batch']}"
    )


def markdown(results: list[dict]) -> str:
    lines = [
        "| model | batch | ours cache tok/s | ours recompute tok/s | forward recompute tok/s | HF cache tok/s "
        "| cache / recompute | cache / forward recompute | ours / HF |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        speed = {name: row["tokens_per_second"] for name, row in r["methods"].items()}
        lines.append(
            f"| {r['size']} {r['d_model_layers_heads']} | {r['batch']} | {speed['ours cache']:.0f} | "
            f"{speed['ours recompute']:.0f} | {speed['forward recompute']:.0f} | {speed['HF cache']:.0f} | "
            f"{r['cache_speedup']:.1f}x | {r['cache_speedup_over_forward']:.1f}x | {r['ours_over_hf']:.2f}x |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-length", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["small", "big"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-run", type=float, default=20.0, help="seconds: a method this slow runs once")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = parser.parse_args(argv)
    if min(args.new_tokens, args.prompt_length, args.repeats, *args.batch_sizes) < 1:
        parser.error("--new-tokens, --prompt-length, --repeats and --batch-sizes must be positive")
    if args.prompt_length + args.new_tokens > CONTEXT_LENGTH:
        parser.error(f"prompt + new tokens must fit the context of {CONTEXT_LENGTH}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    info = machine_info() | {"torch_threads": torch.get_num_threads()}
    print(
        f"decoding on the CPU, float32, {info['torch_threads']} torch threads; "
        f"torch {info['torch']}, transformers {info['transformers']}; prompt {args.prompt_length} tokens, "
        f"median of {args.repeats}"
    )
    results = []
    for size in args.sizes:
        for batch in args.batch_sizes:
            results.append(bench(size, batch, args))
            print_result(results[-1], args.new_tokens)
    print("\n" + markdown(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"machine": info, "args": vars(args) | {"json": str(args.json)}, "results": results}
        args.json.write_text(json.dumps(record, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
