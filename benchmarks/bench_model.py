"""Benchmark training throughput of our language models against Hugging Face ``transformers``.

Everything runs in one invocation, same batch, context length and dtype for every model::

    python benchmarks/bench_model.py [--vocab-size N] [--context-length T] [--d-model D] [--num-layers L]
        [--num-heads H] [--d-ff F] [--batch-size B] [--steps N] [--warmup W] [--device cpu|cuda]
        [--models NAME ...] [--json PATH]

What is measured: the wall-clock time (``time.perf_counter``, with ``torch.cuda.synchronize``
around each step on a GPU) of one **training step** -- ``zero_grad``, forward pass, next-token
cross-entropy (``torch.nn.functional.cross_entropy`` on the logits, for every model), backward
pass and a ``torch.optim.AdamW`` step -- on a fixed batch of random token ids. After ``--warmup``
untimed steps, ``--steps`` steps are timed and the median is kept; throughput is
``batch_size * context_length / median step time`` tokens per second. The models:

* ``ours-llama-reference``: :class:`cs288_lm.model.TransformerLM` (RMSNorm, RoPE, SwiGLU, untied
  output), built by ``build_model(ModelConfig(architecture="llama", kernels="reference"))``:
  attention is our own ``softmax(Q K^T / sqrt(d_k)) V`` with an explicit causal mask;
* ``ours-llama-torch``: the same model with ``kernels="torch"``
  (``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``, and torch's fused SiLU in
  the MLP: ``FusedSwiGLU``, the same weights);
* ``hf-llama``: Hugging Face ``LlamaForCausalLM`` from a ``LlamaConfig`` of the same size
  (``num_key_value_heads = num_heads``, untied embeddings, ``attn_implementation="sdpa"``);
* ``ours-gpt2``: :class:`cs288_lm.models.gpt2_model.GPT2LM` (``architecture="gpt2"``, backend ``"torch"``,
  dropout 0, MLP width 4 x d_model, tied embeddings);
* ``hf-gpt2``: Hugging Face ``GPT2LMHeadModel`` from a ``GPT2Config`` of the same size (dropouts 0,
  ``attn_implementation="sdpa"``).

The Hugging Face models get random weights (no download), ``use_cache=False`` (no key/value
cache is built during training) and only ``input_ids``; their ``.logits`` go through the same loss.
The parameter counts of our models are checked against their Hugging Face equivalents (they are
equal by construction).

How it runs: each model lives in its own child process of this script (``--worker NAME``), which
builds it after ``torch.manual_seed(0)``, runs the warm-up steps, then waits for commands on stdin.
The parent then interleaves the timed steps: round ``i`` runs one step of every model, one process
at a time, starting with a different model each round, so a change in the machine's background
load affects every model alike, and no model's allocations slow down another's. Peak memory is
therefore each model's own: on a CPU, the peak resident set size (``ru_maxrss``) of its process,
and how much that exceeds the resident set size (``psutil``) just before the model was built
(parameters, gradients, AdamW state, activations and allocator slack); on a GPU,
``torch.cuda.max_memory_allocated``. Precision: float32 on a CPU; on a GPU the weights stay float32
and every model runs under bf16 autocast. ``torch``'s thread count is left at its default and
printed. Besides the ratio of median step times, the ratio of the fastest steps is printed: on a
busy machine a step whose threads get descheduled can take several times longer, and the two
ratios then disagree.

Targets: tokens/s ours (torch backend) / Hugging Face >= 1.0x, for Llama and for GPT-2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import psutil
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cs288_lm.models.architectures import ModelConfig, build_model, default_d_ff
from cs288_lm.models.hf_interop import hf_model

WORKER_FLAG = "--worker"  # internal: serve one model in this process (see serve)
SEED = 0

Result = dict[str, Any]
Forward = Callable[[Tensor], Tensor]  # token ids (batch, seq) -> logits (batch, seq, vocab)


@dataclass(frozen=True)
class Sizes:
    """The shape of the models and of the batch, shared by every model."""

    vocab_size: int
    context_length: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int  # the Llama models' SwiGLU width; GPT-2's MLP is always 4 x d_model
    batch_size: int

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.context_length


@dataclass(frozen=True)
class ModelSpec:
    name: str
    label: str  # for the printed tables


MODELS = (
    ModelSpec("ours-llama-reference", "ours Llama, reference attention"),
    ModelSpec("ours-llama-torch", "ours Llama, torch SDPA"),
    ModelSpec("hf-llama", "HF LlamaForCausalLM, sdpa"),
    ModelSpec("ours-gpt2", "ours GPT-2, torch SDPA"),
    ModelSpec("hf-gpt2", "HF GPT2LMHeadModel, sdpa"),
)
MODEL_NAMES = tuple(spec.name for spec in MODELS)

# (numerator, denominator, what, target throughput ratio or None)
RATIOS = (
    ("ours-llama-torch", "hf-llama", "ours Llama (torch) / HF Llama", 1.0),
    ("ours-gpt2", "hf-gpt2", "ours GPT-2 / HF GPT-2", 1.0),
    ("ours-llama-reference", "ours-llama-torch", "ours Llama reference / torch attention", None),
)
PARAMETER_CHECKS = (("ours-llama-torch", "hf-llama"), ("ours-gpt2", "hf-gpt2"))


# ====================================================================== worker (one child process)
# transformers is imported only in the children that build a Hugging Face model.


def model_config(sizes: Sizes, architecture: str, backend: str = "torch") -> ModelConfig:
    """Our configuration of ``architecture`` at ``sizes`` (GPT-2's MLP is always 4 x d_model)."""
    return ModelConfig(
        architecture=architecture,
        vocab_size=sizes.vocab_size,
        context_length=sizes.context_length,
        d_model=sizes.d_model,
        num_layers=sizes.num_layers,
        num_heads=sizes.num_heads,
        d_ff=sizes.d_ff if architecture == "llama" else None,
        kernels=backend,
    )


def build_ours(sizes: Sizes, architecture: str, backend: str) -> tuple[nn.Module, Forward]:
    model = build_model(model_config(sizes, architecture, backend))
    return model, model


def build_hugging_face(sizes: Sizes, architecture: str) -> tuple[nn.Module, Forward]:
    """The Hugging Face model of the same configuration (:func:`~cs288_lm.models.hf_interop.hf_model`),
    returning ``.logits``."""
    model = hf_model(model_config(sizes, architecture))
    return model, lambda ids: model(input_ids=ids).logits


BUILDERS: dict[str, Callable[[Sizes], tuple[nn.Module, Forward]]] = {
    "ours-llama-reference": lambda sizes: build_ours(sizes, "llama", "reference"),
    "ours-llama-torch": lambda sizes: build_ours(sizes, "llama", "torch"),
    "hf-llama": lambda sizes: build_hugging_face(sizes, "llama"),
    "ours-gpt2": lambda sizes: build_ours(sizes, "gpt2", "torch"),
    "hf-gpt2": lambda sizes: build_hugging_face(sizes, "gpt2"),
}


def import_model_library(name: str) -> None:
    """Import ``transformers`` for a Hugging Face model, before the memory baseline is taken."""
    if name.startswith("hf-"):
        from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # noqa: F401


def random_batch(sizes: Sizes, device: torch.device) -> tuple[Tensor, Tensor]:
    """Random token ids: inputs and next-token targets, both (batch, context_length)."""
    generator = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, sizes.vocab_size, (sizes.batch_size, sizes.context_length + 1), generator=generator)
    ids = ids.to(device)
    return ids[:, :-1], ids[:, 1:]


def precision(device: torch.device) -> AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def training_step(
    forward: Forward, optimizer: torch.optim.Optimizer, inputs: Tensor, targets: Tensor, device: torch.device
) -> Tensor:
    """One forward + backward + AdamW step; returns the (detached) loss."""
    optimizer.zero_grad(set_to_none=True)
    with precision(device):
        logits = forward(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    loss.backward()
    optimizer.step()
    return loss.detach()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(step: Callable[[], Tensor], device: torch.device) -> tuple[float, float]:
    """Seconds and loss of one step."""
    synchronize(device)
    start = time.perf_counter()
    loss = step()
    synchronize(device)
    return time.perf_counter() - start, loss.item()


def current_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return psutil.Process().memory_info().rss


def peak_memory(device: torch.device) -> int:
    """Peak GPU allocation, or this process's peak resident set size (ru_maxrss) on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        import resource
    except ImportError:  # Windows: no ru_maxrss; the current RSS is a lower bound
        return current_memory(device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * 1024 if sys.platform.startswith("linux") else peak  # KiB on Linux, bytes on macOS


PROTOCOL = sys.stdout  # a worker's replies; anything else it prints goes to stderr (see serve)


def send(message: Result) -> None:
    PROTOCOL.write(json.dumps(message) + "\n")
    PROTOCOL.flush()


def serve(name: str, sizes: Sizes, warmup: int, device: torch.device) -> None:
    """Worker: build ``name`` (fixed seed), run the warm-up steps, then answer the parent's commands.

    Every reply is one JSON line on stdout: first the model's description once it is warm, then one
    per ``step`` command (seconds and loss of one timed step), and the memory figures on ``finish``.
    """
    sys.stdout = sys.stderr  # keep stray prints (libraries, warnings) out of the replies
    import_model_library(name)
    inputs, targets = random_batch(sizes, device)
    baseline = current_memory(device)
    torch.manual_seed(SEED)
    model, forward = BUILDERS[name](sizes)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> Tensor:
        return training_step(forward, optimizer, inputs, targets, device)

    warmup_losses = [timed_step(step, device)[1] for _ in range(warmup)]
    send(
        {
            "parameters": sum(parameter.numel() for parameter in model.parameters()),
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "warmup_losses": warmup_losses,
            "torch_num_threads": torch.get_num_threads(),
            "torch_num_interop_threads": torch.get_num_interop_threads(),
        }
    )
    for command in sys.stdin:
        if command.strip() == "step":
            seconds, loss = timed_step(step, device)
            send({"seconds": seconds, "loss": loss})
        elif command.strip() == "finish":
            send({"memory_baseline_bytes": baseline, "peak_memory_bytes": peak_memory(device)})
            return
        else:
            raise ValueError(f"unknown command {command!r}")


# ======================================================================================= parent


class Worker:
    """A child process of this script serving one model (see :func:`serve`)."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.name = name
        command = [sys.executable, str(Path(__file__).resolve()), WORKER_FLAG, name]
        for flag in (
            "vocab_size",
            "context_length",
            "d_model",
            "num_layers",
            "num_heads",
            "d_ff",
            "batch_size",
            "warmup",
            "device",
        ):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file, so a chatty child cannot block on a full pipe
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1
        )
        self.info = self.receive()  # blocks until the model is built and warm

    def receive(self) -> Result:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.stderr.seek(0)
            sys.stderr.write(self.stderr.read())
            raise RuntimeError(f"the worker for {self.name} failed (exit status {self.process.returncode})")
        return json.loads(line)

    def request(self, command: str) -> Result:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.receive()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.stderr.close()


def summarize(info: Result, steps: list[Result], memory: Result, tokens_per_step: int) -> Result:
    """One model's numbers: the median of its timed steps, with the extremes and the losses."""
    seconds = [step["seconds"] for step in steps]
    losses = info["warmup_losses"] + [step["loss"] for step in steps]
    median = statistics.median(seconds)
    return {
        "parameters": info["parameters"],
        "dtype": info["dtype"],
        "median_step_seconds": median,
        "min_step_seconds": min(seconds),
        "max_step_seconds": max(seconds),
        "step_seconds": seconds,
        "tokens_per_second": tokens_per_step / median,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        **memory,
        "torch_num_threads": info["torch_num_threads"],
        "torch_num_interop_threads": info["torch_num_interop_threads"],
    }


def bench_interleaved(names: list[str], args: argparse.Namespace, tokens_per_step: int) -> dict[str, Result]:
    """Start one worker per model (each warms up alone), then time their steps in turn.

    Round ``i`` runs one step of every model, starting with a different model each round, so a
    change in the machine's background load during the run affects every model alike. Only one
    worker computes at a time; the others wait for their next command.
    """
    workers: list[Worker] = []
    try:
        for name in names:
            print(f"  starting {name} (build + {args.warmup} warm-up steps)", flush=True)
            workers.append(Worker(name, args))
        steps: dict[str, list[Result]] = {worker.name: [] for worker in workers}
        for round_index in range(args.steps):
            for offset in range(len(workers)):
                worker = workers[(round_index + offset) % len(workers)]
                steps[worker.name].append(worker.request("step"))
        return {
            worker.name: summarize(worker.info, steps[worker.name], worker.request("finish"), tokens_per_step)
            for worker in workers
        }
    finally:
        for worker in workers:
            worker.close()


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def machine_info() -> Result:
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "transformers": version("transformers"),
    }


def compare(results: dict[str, Result]) -> tuple[list[Result], list[Result]]:
    """Throughput ratios and parameter-count checks between the models that were run."""
    ratios = [
        {
            "numerator": top,
            "denominator": bottom,
            "what": what,
            "target": target,
            "ratio": results[top]["tokens_per_second"] / results[bottom]["tokens_per_second"],
            "ratio_of_fastest_steps": results[bottom]["min_step_seconds"] / results[top]["min_step_seconds"],
        }
        for top, bottom, what, target in RATIOS
        if top in results and bottom in results
    ]
    checks = [
        {
            "ours": ours,
            "hf": hf,
            "ours_parameters": results[ours]["parameters"],
            "hf_parameters": results[hf]["parameters"],
            "equal": results[ours]["parameters"] == results[hf]["parameters"],
        }
        for ours, hf in PARAMETER_CHECKS
        if ours in results and hf in results
    ]
    return ratios, checks


def megabytes(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:.0f} MiB"


def memory_text(row: Result, device: str) -> str:
    """Peak memory, and on a CPU the part added by the model (above the pre-build baseline)."""
    if device == "cuda":
        return megabytes(row["peak_memory_bytes"])
    added = row["peak_memory_bytes"] - row["memory_baseline_bytes"]
    return f"{megabytes(row['peak_memory_bytes'])} (+{megabytes(added)})"


def target_text(ratio: Result) -> str:
    if ratio["target"] is None:
        return ""
    verdict = "met" if ratio["ratio"] >= ratio["target"] else "NOT met"
    return f">= {ratio['target']:.1f}x ({verdict})"


def print_header(args: argparse.Namespace, sizes: Sizes, info: Result) -> None:
    precision = "bf16 autocast (float32 weights)" if args.device == "cuda" else "float32"
    print(
        f"Machine: {info['cpu_count']} CPUs ({info['processor']}), Python {info['python']}, "
        f"torch {info['torch']}, transformers {info['transformers']}"
    )
    print(
        f"Device {args.device}, {precision}; batch {args.batch_size} x context {args.context_length} = "
        f"{sizes.tokens_per_step} tokens/step; {args.warmup} warm-up + {args.steps} timed steps "
        "per model, interleaved (median)"
    )
    print(
        f"Models: vocab {args.vocab_size}, d_model {args.d_model}, {args.num_layers} layers, "
        f"{args.num_heads} heads, d_ff {args.d_ff} (Llama) / {4 * args.d_model} (GPT-2)\n"
    )


def print_row(spec: ModelSpec, row: Result, device: str) -> None:
    print(
        f"  {spec.label:<34} {row['parameters']:>11,} params  "
        f"step {row['median_step_seconds'] * 1e3:8.1f} ms (min {row['min_step_seconds'] * 1e3:.1f}, "
        f"max {row['max_step_seconds'] * 1e3:.1f})  {row['tokens_per_second']:>9,.0f} tok/s  "
        f"peak mem {memory_text(row, device)}  loss {row['first_loss']:.2f} -> {row['last_loss']:.2f}",
        flush=True,
    )


def print_comparisons(ratios: list[Result], checks: list[Result]) -> None:
    if checks:
        print("\n== Parameter counts ==")
    for check in checks:
        print(
            f"  {check['ours']}: {check['ours_parameters']:,}  {check['hf']}: {check['hf_parameters']:,}  "
            f"equal: {check['equal']}"
        )
    if ratios:
        print("\n== Throughput ratios (tokens/s) ==")
    for ratio in ratios:
        target = f"   [target {target_text(ratio)}]" if ratio["target"] is not None else ""
        print(
            f"  {ratio['what']:<42} {ratio['ratio']:.2f}x (fastest steps: {ratio['ratio_of_fastest_steps']:.2f}x)"
            f"{target}"
        )


def markdown_summary(results: Result) -> str:
    info, sizes, device = results["machine"], results["sizes"], results["device"]
    precision = "bf16 autocast" if device == "cuda" else "float32"
    threads = next(iter(results["models"].values()))["torch_num_threads"]
    memory_header = "Peak GPU memory" if device == "cuda" else "Peak RSS (+ over baseline)"
    lines = [
        f"Device `{device}` ({info['cpu_count']} CPUs, {info['processor']}, torch threads {threads}), {precision}, "
        f"torch {info['torch']}, transformers {info['transformers']}. Batch {sizes['batch_size']} x context "
        f"{sizes['context_length']}; vocab {sizes['vocab_size']}, d_model {sizes['d_model']}, "
        f"{sizes['num_layers']} layers, {sizes['num_heads']} heads, d_ff {sizes['d_ff']} (Llama) / "
        f"{4 * sizes['d_model']} (GPT-2); median of {results['steps']} interleaved steps after "
        f"{results['warmup']} warm-up.",
        "",
        f"| Model | Parameters | Step time | Tokens/s | {memory_header} |",
        "|---|---|---|---|---|",
    ]
    for spec in MODELS:
        if spec.name in results["models"]:
            row = results["models"][spec.name]
            lines.append(
                f"| {spec.label} | {row['parameters']:,} | {row['median_step_seconds'] * 1e3:.1f} ms | "
                f"{row['tokens_per_second']:,.0f} | {memory_text(row, device)} |"
            )
    if results["ratios"]:
        lines += [
            "",
            "| Comparison (tokens/s) | Ratio (median steps) | Ratio (fastest steps) | Target |",
            "|---|---|---|---|",
        ]
    for ratio in results["ratios"]:
        lines.append(
            f"| {ratio['what']} | {ratio['ratio']:.2f}x | {ratio['ratio_of_fastest_steps']:.2f}x | "
            f"{target_text(ratio)} |"
        )
    return "\n".join(lines)


# ========================================================================================= main


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes = parser.add_argument_group("model and batch sizes (shared by every model)")
    sizes.add_argument("--vocab-size", type=positive_int, default=10_000, help="(default: %(default)s)")
    sizes.add_argument(
        "--context-length", type=positive_int, default=256, help="sequence length (default: %(default)s)"
    )
    sizes.add_argument("--d-model", type=positive_int, default=256, help="(default: %(default)s)")
    sizes.add_argument("--num-layers", type=positive_int, default=4, help="(default: %(default)s)")
    sizes.add_argument("--num-heads", type=positive_int, default=8, help="(default: %(default)s)")
    sizes.add_argument(
        "--d-ff",
        type=positive_int,
        help="SwiGLU width of the Llama models (default: the trainer's, cs288_lm.models.architectures.default_d_ff: "
        "8/3 d_model rounded to a multiple of 64, 704 for d_model 256); GPT-2's MLP is always 4 x d_model",
    )
    sizes.add_argument("--batch-size", type=positive_int, default=8, help="(default: %(default)s)")
    parser.add_argument("--steps", type=positive_int, default=10, help="timed steps per model (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: %(default)s)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available, else cpu")
    parser.add_argument(
        "--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES), help="which models to run (default: all)"
    )
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    parser.add_argument(WORKER_FLAG, choices=MODEL_NAMES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    if args.d_model % args.num_heads:
        parser.error(f"--d-model {args.d_model} is not divisible by --num-heads {args.num_heads}")
    if args.device is None:
        args.device = default_device()
    elif args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU is available to torch")
    if args.d_ff is None:
        args.d_ff = default_d_ff(args.d_model)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sizes = Sizes(
        args.vocab_size, args.context_length, args.d_model, args.num_layers, args.num_heads, args.d_ff, args.batch_size
    )
    if args.worker:
        serve(args.worker, sizes, args.warmup, torch.device(args.device))
        return

    info = machine_info()
    print_header(args, sizes, info)
    print("== Training step: forward + cross-entropy + backward + AdamW ==")
    names = [spec.name for spec in MODELS if spec.name in args.models]
    models = bench_interleaved(names, args, sizes.tokens_per_step)
    print()
    for spec in MODELS:
        if spec.name in models:
            print_row(spec, models[spec.name], args.device)
    print(f"  (torch threads: {next(iter(models.values()))['torch_num_threads']}, default)")
    ratios, checks = compare(models)
    print_comparisons(ratios, checks)
    results: Result = {
        "machine": info,
        "device": args.device,
        "sizes": asdict(sizes),
        "steps": args.steps,
        "warmup": args.warmup,
        "models": models,
        "ratios": ratios,
        "parameter_checks": checks,
    }
    print("\n== Summary (markdown) ==\n")
    print(markdown_summary(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"\nWrote {args.json}")


if __name__ == "__main__":
    main()
