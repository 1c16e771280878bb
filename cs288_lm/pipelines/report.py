"""Turn a pretraining checkpoint into a report: ``OUT/report.md``, its PNGs and CSV tables (given).

    python -m cs288_lm.pipelines.report --checkpoint out/pretrain --out out/report
    python -m cs288_lm.pipelines.report --checkpoint out/pretrain --out out/report --sweep out/sweep --gpt2 ~/models/gpt2

``--checkpoint`` is a run directory of :mod:`cs288_lm.pipelines.pretrain` (its ``checkpoints/best.pt`` and
``metrics.jsonl``) or a checkpoint file, of either architecture (Llama-style or GPT-2). The report
has six sections (``--sections`` picks some):

1. ``card``: the model card: architecture, parameters, FLOPs per token, training memory, data and
   tokenizer, loss and perplexity curves, validation perplexity, bits per byte on ``--text``,
   tokens/s, the greedy sample;
2. ``sweep``: with ``--sweep DIR`` (a :mod:`cs288_lm.pipelines.sweep` output), its table and overlaid curves;
3. ``sampling``: greedy, temperature 0.7 / 1.0 / 1.3, top-k 50 and top-p 0.9 on fixed prompts,
   with distinct-n, Self-BLEU, repetition rate, log-likelihood and length per strategy;
4. ``attention``: heatmaps per layer and head, head scores (previous token, first token, self,
   induction), the labels they give, and the loss change when each head is ablated;
5. ``embeddings``: 2-D maps of frequent tokens (PCA; t-SNE with scikit-learn), nearest
   neighbours, and a noun/verb linear probe per layer against a majority baseline;
6. ``compare``: with ``--gpt2 DIR`` (a Hugging Face GPT-2 saved locally), bits per byte and
   per-token perplexity of both models on the same text, their sampling metrics and samples.

Images and CSV files are written beside ``report.md`` and linked relatively. The optional
libraries (matplotlib, scikit-learn, sacrebleu, safetensors: ``requirements-tools.txt``) are used
when installed; a part that needs a missing one says which, and the rest of the report is written.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cs288_lm.analysis import MissingDependency, pyplot
from cs288_lm.analysis import attention as attention_analysis
from cs288_lm.analysis import embeddings as embedding_analysis
from cs288_lm.analysis.compare import Contestant, score_models
from cs288_lm.analysis.metrics import cut_text, score_text, scoring_ids
from cs288_lm.analysis.sampling_study import METRIC_COLUMNS, PROMPTS, Sample, reading, run_study, summarise
from cs288_lm.common.plots import plot_runs, read_metrics
from cs288_lm.common.pretokenization import EOT
from cs288_lm.common.qa_data import build_lexicon, split_stories
from cs288_lm.model import count_parameters, estimate_training_memory_bytes
from cs288_lm.models.architectures import ModelConfig
from cs288_lm.models.hf_interop import PretrainedGPT2, load_hf_gpt2
from cs288_lm.sampling import generate
from cs288_lm.tokenizer import Tokenizer
from cs288_lm.training.flops import training_flops_per_token
from cs288_lm.training.loading import model_from_checkpoint, read_checkpoint
from cs288_lm.training.settings import DEVICE_HELP, REPO_ROOT, HelpFormatter
from cs288_lm.training.token_files import tokenizer_fingerprint

SECTIONS = ("card", "sweep", "sampling", "attention", "embeddings", "compare")
TITLES = {
    "card": "Model card",
    "sweep": "Hyperparameter study",
    "sampling": "Sampling study",
    "attention": "Attention",
    "embeddings": "Embeddings",
    "compare": "Comparison with a pretrained GPT-2",
}
DEFAULT_TEXT = REPO_ROOT / "data" / "tinystories" / "valid.txt"
DEFAULT_TOKENIZER = REPO_ROOT / "data" / "tokenizer"
NEIGHBOUR_WORDS = ("girl", "dog", "happy", "ran", "ball", "mom", "red", "tree", "sad", "big")
DEFAULT_SWEEP = (
    "python -m cs288_lm.pipelines.sweep --grid learning_rate=1e-3,3e-3,1e-2 --grid num_layers=2,4 --out-dir out/sweep "
    "-- --max-steps 100 --eval-interval 25 --final-eval-tokens 20000 --num-samples 0"
)
GET_GPT2 = (
    'python -c "from transformers import GPT2LMHeadModel, GPT2Tokenizer; '
    "GPT2LMHeadModel.from_pretrained('gpt2').save_pretrained('gpt2-local'); "
    "GPT2Tokenizer.from_pretrained('gpt2').save_pretrained('gpt2-local')\""
)


BIG_MODEL = 20_000_000  # parameters: above this, torch's default number of CPU threads
TORCH_THREADS = torch.get_num_threads()


class ReportError(Exception):
    """Bad input to the report: the message says what and where."""


# ------------------------------------------------------------------------------------------------
# Writing Markdown, CSV and figures
# ------------------------------------------------------------------------------------------------


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\r", "").replace("\n", " ¶ ")


class ReportWriter:
    """Collects the report's Markdown; writes tables as CSV and figures as PNG beside it."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.lines: list[str] = []
        self.files: list[Path] = []

    def add(self, text: str = "") -> None:
        self.lines.append(text)

    def note(self, text: str) -> None:
        self.add(f"> **Note:** {text}")
        self.add()

    def table(
        self,
        rows: Sequence[dict],
        columns: Sequence[str],
        csv_name: str | None = None,
        headers: Sequence[str] | None = None,
    ) -> None:
        """A Markdown table of ``columns`` (keys of ``rows``) and, with ``csv_name``, the same as CSV."""
        headers = list(headers or columns)
        self.add("| " + " | ".join(headers) + " |")
        self.add("|" + " --- |" * len(headers))
        for row in rows:
            self.add("| " + " | ".join(_cell(row.get(column, "")) for column in columns) + " |")
        if csv_name:
            self._write_csv(rows, columns, csv_name)
            self.add()
            self.add(f"Table as CSV: [{csv_name}]({csv_name})")
        self.add()

    def _write_csv(self, rows: Sequence[dict], columns: Sequence[str], csv_name: str) -> None:
        path = self.out_dir / csv_name
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            writer.writerows([row.get(column, "") for column in columns] for row in rows)
        self.files.append(path)

    def csv_only(self, rows: Sequence[dict], columns: Sequence[str], csv_name: str, what: str) -> None:
        """Write ``rows`` as CSV beside the report and link it (for tables too long to show)."""
        self._write_csv(rows, columns, csv_name)
        self.add(f"{what}: [{csv_name}]({csv_name})")
        self.add()

    def figure(self, draw: Callable[[Path], object], name: str, alt: str) -> bool:
        """Draw a PNG with ``draw(path)`` and link it; a missing plotting library becomes a note."""
        path = self.out_dir / name
        try:
            draw(path)
        except MissingDependency as error:
            self.note(f"no figure {name}: {error}")
            return False
        self.files.append(path)
        self.add(f"![{alt}]({name})")
        self.add()
        return True

    def link_existing(self, name: str, alt: str) -> None:
        self.files.append(self.out_dir / name)
        self.add(f"![{alt}]({name})")
        self.add()

    def write(self) -> Path:
        path = self.out_dir / "report.md"
        path.write_text("\n".join(self.lines).rstrip() + "\n", encoding="utf-8")
        return path


# ------------------------------------------------------------------------------------------------
# What every section shares
# ------------------------------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    checkpoint: dict
    checkpoint_path: Path
    run_dir: Path
    model: nn.Module
    config: ModelConfig
    tokenizer: Tokenizer
    tokenizer_dir: Path
    eos: int | None
    text: str
    text_path: Path
    ids: list[int]  # the text to score: end-of-text, then the text's ids
    num_bytes: int
    gpt2: PretrainedGPT2 | None = None
    gpt2_problem: str | None = None
    warnings: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)  # part -> (wall, CPU) seconds

    def progress(self, message: str) -> None:
        if not self.args.quiet:
            print(f"[report] {message}", file=sys.stderr, flush=True)


def resolve_checkpoint(path: Path) -> tuple[Path, Path]:
    """(checkpoint file, run directory) for a run directory or a checkpoint file."""
    checkpoint_path = path / "checkpoints" / "best.pt" if path.is_dir() else path
    if path.is_dir() and not checkpoint_path.is_file() and (path / "checkpoints" / "latest.pt").is_file():
        checkpoint_path = path / "checkpoints" / "latest.pt"
    run_dir = path if path.is_dir() else (path.parent.parent if path.parent.name == "checkpoints" else path.parent)
    return checkpoint_path, run_dir


def read_text_file(path: Path, what: str) -> str:
    if not path.is_file():
        raise ReportError(f"{what} {path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ReportError(f"{what} {path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not text.strip():
        raise ReportError(f"{what} {path} is empty: there is no text to evaluate the model on")
    return text


def choose_tokenizer(checkpoint: dict, requested: str | None) -> tuple[Path, str | None]:
    """The tokenizer directory (``--tokenizer``, else the one the checkpoint was trained with, else
    the bundled one) and a warning when its fingerprint differs from the training tokenizer's."""
    trained_with = checkpoint.get("tokenizer") or {}
    candidates = [requested] if requested else [trained_with.get("path"), str(DEFAULT_TOKENIZER)]
    directory = next((Path(c) for c in candidates if c and (Path(c) / "vocab.json").is_file()), None)
    if directory is None:
        raise ReportError(
            f"no tokenizer found (tried {', '.join(str(c) for c in candidates if c)}): pass --tokenizer DIR"
        )
    expected = trained_with.get("fingerprint")
    warning = None
    if expected is not None and tokenizer_fingerprint(directory) != expected:
        trained_path = trained_with.get("path")
        warning = (
            f"the tokenizer files in {directory} changed since the model was trained with them"
            if trained_path and Path(trained_path).resolve() == directory.resolve()
            else f"the model was trained with the tokenizer in {trained_path}, not {directory}"
        )
    return directory, warning


def build_context(args: argparse.Namespace) -> Context:
    """Read and check every input; bad input raises ReportError before any section runs."""
    checkpoint_path, run_dir = resolve_checkpoint(Path(args.checkpoint))
    try:
        checkpoint = read_checkpoint(checkpoint_path)
    except (FileNotFoundError, ValueError) as error:
        raise ReportError(
            f"--checkpoint {args.checkpoint}: {error}. Expected a run directory of cs288_lm.pipelines.pretrain "
            "(holding checkpoints/best.pt) or a checkpoint file"
        ) from None
    try:
        model, config = model_from_checkpoint(checkpoint, args.device)
    except (TypeError, ValueError) as error:
        raise ReportError(f"--checkpoint {checkpoint_path}: cannot build its model: {error}") from None
    tokenizer_dir, warning = choose_tokenizer(checkpoint, args.tokenizer)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    tokenizer = Tokenizer.from_directory(tokenizer_dir)
    if max(tokenizer.vocab) >= config.vocab_size:
        raise ReportError(
            f"the tokenizer in {tokenizer_dir} has ids up to {max(tokenizer.vocab)} but the model's vocabulary "
            f"size is {config.vocab_size}: pass the tokenizer the model was trained with (--tokenizer)"
        )
    text_path = Path(args.text)
    text = cut_text(read_text_file(text_path, "--text"), args.max_text_bytes)
    eos = tokenizer.special_token_ids.get(EOT)
    ids, num_bytes = scoring_ids(tokenizer, text, eos)
    if len(ids) < 2:
        raise ReportError(f"--text {text_path} is too short: it encodes to {len(ids)} token(s)")
    if args.sweep is not None and not (Path(args.sweep) / "results.csv").is_file():
        raise ReportError(f"--sweep {args.sweep}: not a sweep directory (no results.csv); run python -m cs288_lm.pipelines.sweep")
    context = Context(
        args,
        checkpoint,
        checkpoint_path,
        run_dir,
        model,
        config,
        tokenizer,
        tokenizer_dir,
        eos,
        text,
        text_path,
        ids,
        num_bytes,
    )
    if warning:
        context.warnings.append(
            f"{warning}: its token ids mean other strings, so every number below is wrong. "
            "Retrain, or pass the training tokenizer with --tokenizer."
        )
    if args.gpt2 is not None and "compare" in args.sections:
        try:
            context.gpt2 = load_hf_gpt2(args.gpt2, next(model.parameters()).device)
        except (FileNotFoundError, ValueError) as error:
            raise ReportError(f"--gpt2 {args.gpt2}: {error}") from None
        except MissingDependency as error:  # the section says so; the rest of the report goes on
            context.gpt2_problem = str(error)
    return context


# ------------------------------------------------------------------------------------------------
# 1. Model card
# ------------------------------------------------------------------------------------------------


def training_memory(config: ModelConfig, model: nn.Module, batch_size: int) -> dict[str, int]:
    """Bytes to train with AdamW in float32: the textbook account of
    :func:`~cs288_lm.model.estimate_training_memory_bytes`; parameters counted on the module itself
    (exact for both architectures; the activations follow the Llama-style account)."""
    memory = estimate_training_memory_bytes(
        config.vocab_size,
        config.context_length,
        config.d_model,
        config.num_layers,
        config.num_heads,
        config.resolved_d_ff,
        batch_size,
    )
    parameters = count_parameters(model) * 4
    memory.update(parameters=parameters, gradients=parameters, optimizer_state=2 * parameters)
    memory["total"] = sum(value for key, value in memory.items() if key != "total")
    return memory


def threads_for(model: nn.Module, requested: int | None) -> int:
    """``requested``, else 1 thread for a model under :data:`BIG_MODEL` parameters, else torch's default."""
    if requested is not None:
        return requested
    return 1 if count_parameters(model) < BIG_MODEL else TORCH_THREADS


@contextlib.contextmanager
def threads_while(model: nn.Module, requested: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads_for(model, requested))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _megabytes(count: int) -> str:
    return f"{count / 2**20:,.1f} MiB"


def count_file_tokens(
    path: Path, tokenizer: Tokenizer, bytes_per_token: float, max_bytes: int
) -> tuple[int, int, bool]:
    """(bytes, tokens, exact) of a text file: encoded when at most ``max_bytes``, else estimated."""
    size = path.stat().st_size
    if size <= max_bytes:
        return size, len(tokenizer.encode(path.read_text(encoding="utf-8"))), True
    return size, round(size / bytes_per_token), False


def section_card(context: Context, report: ReportWriter) -> None:
    config, checkpoint, model = context.config, context.checkpoint, context.model
    train_config = checkpoint.get("config") or {}
    batch_size = int(train_config.get("batch_size", 32))
    training_flops = training_flops_per_token(config)  # None before Part 2's count_flops_per_token is written
    forward_flops = "not available" if training_flops is None else training_flops // 3
    memory = training_memory(config, model, batch_size)
    report.add("### Architecture")
    report.add()
    rows = [
        ("architecture", config.architecture),
        ("parameters", count_parameters(model)),
        ("vocabulary size", config.vocab_size),
        ("context length", config.context_length),
        ("d_model", config.d_model),
        ("layers", config.num_layers),
        ("heads", config.num_heads),
        ("feed-forward width", config.resolved_d_ff),
        ("forward FLOPs per token (full context)", forward_flops),
        ("training FLOPs per token (forward + backward, 3x)", training_flops or "not available"),
        (f"training memory, AdamW float32, batch {batch_size}: parameters", _megabytes(memory["parameters"])),
        ("training memory: gradients", _megabytes(memory["gradients"])),
        ("training memory: optimizer state", _megabytes(memory["optimizer_state"])),
        ("training memory: activations", _megabytes(memory["activations"])),
        ("training memory: total", _megabytes(memory["total"])),
    ]
    report.table([{"item": k, "value": v} for k, v in rows], ["item", "value"], "model_card.csv")

    score = score_text(model, context.ids, context.num_bytes)
    report.add("### Data and tokenizer")
    report.add()
    data_rows = [("tokenizer", f"{context.tokenizer_dir} ({len(context.tokenizer.vocab):,} tokens)")]
    train_path = Path(train_config.get("train_data", ""))
    train_tokens = None
    if train_config.get("train_data") and train_path.is_file():
        size, train_tokens, exact = count_file_tokens(
            train_path, context.tokenizer, score.bytes_per_token, context.args.max_count_bytes
        )
        data_rows += [
            ("training text", f"{train_path} ({size:,} bytes)"),
            ("training tokens" + ("" if exact else " (estimated from --text's bytes per token)"), train_tokens),
            ("training bytes per token", size / train_tokens),
        ]
    elif train_config.get("train_data"):
        data_rows.append(("training text", f"{train_path} (not found here)"))
    tokens_seen = checkpoint.get("tokens_seen")
    if tokens_seen is not None:
        data_rows.append(("tokens seen in training", tokens_seen))
        if train_tokens:
            data_rows.append(("epochs over the training text", tokens_seen / train_tokens))
    data_rows += [
        ("evaluation text (--text)", f"{context.text_path} ({context.num_bytes:,} bytes scored)"),
        ("evaluation tokens", score.tokens),
        ("evaluation bytes per token", score.bytes_per_token),
    ]
    report.table([{"item": k, "value": v} for k, v in data_rows], ["item", "value"], "data.csv")

    report.add("### Training curves and results")
    report.add()
    metrics_path = context.run_dir / "metrics.jsonl"
    metrics = read_metrics(metrics_path) if metrics_path.is_file() else []
    evaluations = [r for r in metrics if "val_loss" in r]
    if metrics:
        try:
            pyplot()
            for path in plot_runs({"train": metrics}, context.args.out):
                report.link_existing(path.name, f"{path.stem} against tokens seen")
        except MissingDependency as error:
            report.note(f"no training curves: {error}")
    else:
        report.note(f"no {metrics_path}: no training curves (the checkpoint's run directory has no metrics)")
    results = []
    if evaluations:
        best = min(evaluations, key=lambda r: r["val_loss"])
        final = evaluations[-1]
        results += [
            {"measure": f"best validation loss (step {best['step']}, fixed batches)", "value": best["val_loss"]},
            {"measure": "best validation perplexity", "value": best["val_perplexity"]},
            {"measure": f"final validation perplexity (step {final['step']})", "value": final["val_perplexity"]},
        ]
    results += [
        {"measure": "loss per token on --text (nats)", "value": score.mean_loss},
        {"measure": "perplexity per token on --text", "value": score.perplexity},
        {"measure": "bits per byte on --text", "value": score.bits_per_byte},
    ]
    speeds = [r["tokens_per_second"] for r in metrics if "tokens_per_second" in r]
    if speeds:
        device = train_config.get("device", "?")
        results.append(
            {
                "measure": f"training tokens/s (mean of logged steps; device setting {device})",
                "value": sum(speeds) / len(speeds),
            }
        )
    report.table(results, ["measure", "value"], "results.csv")

    prompt = PROMPTS[0]
    prompt_ids = torch.tensor([context.tokenizer.encode(prompt)], device=next(model.parameters()).device)
    new = generate(model, prompt_ids, context.args.max_new_tokens, temperature=0.0, eos_token_id=context.eos)
    sample = context.tokenizer.decode([t for t in new[0].tolist() if t != context.eos])
    report.add("### Greedy sample")
    report.add()
    report.add(f"> {_cell(prompt + sample)}")
    report.add()


# ------------------------------------------------------------------------------------------------
# 2. Hyperparameter study
# ------------------------------------------------------------------------------------------------


def section_sweep(context: Context, report: ReportWriter) -> None:
    if context.args.sweep is None:
        report.add(
            "No sweep given (`--sweep DIR`). The default small sweep (learning rate x layers, six short "
            "runs, a few minutes on a CPU) is"
        )
        report.add()
        report.add(f"    {DEFAULT_SWEEP}")
        report.add()
        report.add("then add `--sweep out/sweep` to this command.")
        report.add()
        return
    sweep_dir = Path(context.args.sweep)
    with open(sweep_dir / "results.csv", newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        columns, rows = list(reader.fieldnames or []), list(reader)
    shutil.copyfile(sweep_dir / "results.csv", context.args.out / "sweep_results.csv")
    report.add(f"From `{sweep_dir}`, best validation loss first:")
    report.add()
    report.table(rows, columns)
    report.add("Table as CSV: [sweep_results.csv](sweep_results.csv)")
    report.add()
    runs = {}
    for row in rows:
        metrics_path = sweep_dir / row.get("run", "") / "metrics.jsonl"
        if row.get("run") and metrics_path.is_file():
            runs[row["run"]] = read_metrics(metrics_path)
    if not runs:
        report.note(f"no run of {sweep_dir} has a metrics.jsonl: no curves")
        return
    try:
        pyplot()
        for path in plot_runs(runs, context.args.out, prefix="sweep_"):
            report.link_existing(path.name, f"every run's {path.stem.removeprefix('sweep_')} overlaid")
    except MissingDependency as error:
        report.note(f"no sweep curves: {error}")


# ------------------------------------------------------------------------------------------------
# 3. Sampling study
# ------------------------------------------------------------------------------------------------


def _study(
    context: Context, model: nn.Module, tokenizer: Tokenizer, eos: int | None, samples_per_prompt: int | None = None
) -> list[Sample]:
    args = context.args
    return run_study(
        model,
        tokenizer,
        eos,
        PROMPTS,
        samples_per_prompt=samples_per_prompt or args.samples_per_prompt,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )


def _metric_table(report: ReportWriter, rows: list[dict], csv_name: str, first: Sequence[str] = ("strategy",)) -> None:
    report.table(
        rows,
        [*first, *METRIC_COLUMNS],
        csv_name,
        headers=[
            *first,
            "samples",
            "mean tokens",
            "mean words",
            "distinct-1",
            "distinct-2",
            "distinct-3",
            "Self-BLEU",
            "repetition rate",
            "mean log-likelihood (nats/token)",
        ],
    )


def section_sampling(context: Context, report: ReportWriter) -> None:
    args = context.args
    context.samples = _study(context, context.model, context.tokenizer, context.eos)
    rows, notes = summarise(context.samples)
    report.add(
        f"{len(PROMPTS)} prompts, {args.samples_per_prompt} samples per prompt and strategy (greedy: one), "
        f"up to {args.max_new_tokens} new tokens, seed {args.seed}. Metrics are over the continuations: "
        "distinct-n = distinct n-grams / all n-grams of words; Self-BLEU = mean BLEU of each sample "
        "against the others (sacrebleu); repetition rate = share of a sample's 4-grams that already "
        "occurred in it; log-likelihood under the model itself (no temperature, no filter)."
    )
    report.add()
    for note in notes:
        report.note(note)
    _metric_table(report, rows, "sampling_metrics.csv")
    for sentence in reading(rows):
        report.add(f"- {sentence}")
    report.add()
    report.add("#### Samples side by side")
    report.add()
    for prompt in PROMPTS:
        report.add(f"Prompt: *{prompt}*")
        report.add()
        table = []
        for strategy in dict.fromkeys(s.strategy for s in context.samples):
            texts = [s.text for s in context.samples if s.strategy == strategy and s.prompt == prompt]
            table.append({"strategy": strategy, "sample 1": texts[0], "sample 2": texts[1] if len(texts) > 1 else ""})
        report.table(table, ["strategy", "sample 1", "sample 2"])
    report.csv_only(
        [vars(s) for s in context.samples],
        ["strategy", "prompt", "index", "text", "tokens", "log_likelihood"],
        "samples.csv",
        f"All {len(context.samples)} samples, with their length in tokens and log-likelihood (nats)",
    )


# ------------------------------------------------------------------------------------------------
# 4. Attention
# ------------------------------------------------------------------------------------------------


def story_windows(context: Context, length: int, count: int) -> torch.Tensor:
    """Up to ``count`` windows of ``length`` scoring ids, each starting at an end-of-text token (a
    story start); consecutive windows of the text when there are too few story starts."""
    ids = context.ids
    starts = [i for i, token in enumerate(ids) if token == context.eos and i + length <= len(ids)][:count]
    if len(starts) < count:
        starts += [s for s in range(0, len(ids) - length + 1, length) if s not in starts][: count - len(starts)]
    if not starts:
        length = len(ids)
        starts = [0]
    return torch.tensor([ids[s : s + length] for s in starts])


def section_attention(context: Context, report: ReportWriter) -> None:
    model, tokenizer, args = context.model, context.tokenizer, context.args
    layers, heads = attention_analysis.num_layers_and_heads(model)
    length = min(context.config.context_length, 128)
    windows = story_windows(context, length, args.attention_windows)
    text_internals = attention_analysis.run_with_internals(model, windows, keep_hidden=False)
    period = min((context.config.context_length - 1) // 2, 50)
    special = list(tokenizer.special_token_ids.values())
    first = context.eos if context.eos is not None else 0
    repeated = attention_analysis.repeated_random_tokens(
        context.config.vocab_size, period, args.attention_windows, first, args.seed, special
    )
    repeat_internals = attention_analysis.run_with_internals(model, repeated[:, :-1], keep_hidden=False)
    scores = attention_analysis.head_scores(text_internals.attention, repeat_internals.attention, period)
    labels = scores.labels()
    base_text, text_change = attention_analysis.ablation_losses(model, windows)
    second_copy = slice(period, None)  # targets of the second copy: positions period .. 2 period - 1
    base_repeat, repeat_change = attention_analysis.ablation_losses(model, repeated, second_copy)
    first_copy_loss = attention_analysis.mean_loss(repeat_internals.logits, repeated[:, 1:], slice(0, period))

    report.add(
        f"Scores are mean attention weights: on {len(windows)} windows of {windows.shape[1]} tokens of "
        f"--text starting at a story (previous token: key i - 1; first token: key 0; self: key i), and on "
        f"{len(repeated)} sequences of an end-of-text token and {period} random tokens repeated twice "
        f"(induction: key t - {period} + 1, the token after the earlier occurrence). A head is labelled "
        f"with its highest score when that is at least {attention_analysis.LABEL_THRESHOLD}, else 'mixed'. "
        "Ablation sets one head's output to zero; the change in loss is on the same text windows and on "
        "the second copy of the repeated sequences (positive: the head helps)."
    )
    report.add()
    report.add(
        f"In-context copying: on the repeated random sequences the model's loss is {first_copy_loss:.2f} nats "
        f"per token on the first copy and {base_repeat:.2f} on the second (ln vocab = "
        f"{math.log(context.config.vocab_size):.2f}); loss on the text windows {base_text:.2f}."
    )
    report.add()
    rows = []
    score_values = {kind: values for kind, values in scores.as_dict().items()}
    for layer in range(layers):
        for head in range(heads):
            rows.append(
                {
                    "layer": layer,
                    "head": head,
                    **{kind: float(values[layer, head]) for kind, values in score_values.items()},
                    "label": labels[layer][head],
                    "ablation_loss_change_text": float(text_change[layer, head]),
                    "ablation_loss_change_repeat": float(repeat_change[layer, head]),
                }
            )
    report.table(
        rows,
        [
            "layer",
            "head",
            *attention_analysis.HEAD_KINDS,
            "label",
            "ablation_loss_change_text",
            "ablation_loss_change_repeat",
        ],
        "attention_heads.csv",
        headers=[
            "layer",
            "head",
            "previous token",
            "first token",
            "self",
            "induction",
            "label",
            "ablation: loss change, text",
            "ablation: loss change, repeat",
        ],
    )
    counts = {label: sum(row["label"] == label for row in rows) for label in dict.fromkeys(r["label"] for r in rows)}
    most = max(rows, key=lambda row: row["ablation_loss_change_text"])
    report.add(f"- Labels: {', '.join(f'{count} {label}' for label, count in counts.items())}.")
    strongest = []
    for kind in attention_analysis.HEAD_KINDS:
        best = max(rows, key=lambda row, kind=kind: row[kind])
        strongest.append(f"{kind} layer {best['layer']} head {best['head']} ({best[kind]:.2f})")
    report.add(f"- Strongest head of each kind: {'; '.join(strongest)}.")
    report.add(
        f"- Ablating layer {most['layer']} head {most['head']} ({most['label']}) hurts most on text: "
        f"+{most['ablation_loss_change_text']:.3f} nats per token."
    )
    copier = max(rows, key=lambda row: row["ablation_loss_change_repeat"])
    report.add(
        f"- Ablating layer {copier['layer']} head {copier['head']} (induction score {copier['induction']:.2f}) hurts "
        f"most on the second copy: {copier['ablation_loss_change_repeat']:+.3f} nats per token."
    )
    report.add()
    report.figure(
        lambda path: attention_analysis.plot_head_scores(scores, text_change, path),
        "head_scores.png",
        "head scores and ablation per layer and head",
    )
    sample = windows[:1, : min(args.heatmap_tokens, windows.shape[1])]
    sample_attention = attention_analysis.run_with_internals(model, sample, keep_hidden=False).attention
    token_labels = [embedding_analysis.token_label(tokenizer, t) for t in sample[0].tolist()]
    report.add(f"Heatmaps on the first {sample.shape[1]} tokens of a story:")
    report.add()
    for layer in range(layers):
        head_titles = [f"{labels[layer][h]}" for h in range(heads)]
        report.figure(
            lambda path, layer=layer, titles=head_titles: attention_analysis.plot_attention_layer(
                sample_attention[layer][0], token_labels, layer, path, titles
            ),
            f"attention_layer{layer}.png",
            f"attention weights of layer {layer}",
        )


# ------------------------------------------------------------------------------------------------
# 5. Embeddings
# ------------------------------------------------------------------------------------------------


def section_embeddings(context: Context, report: ReportWriter) -> None:
    model, tokenizer, args = context.model, context.tokenizer, context.args
    tables = {"input": embedding_analysis.input_embeddings(model)}
    output_table = embedding_analysis.output_embeddings(model)
    if output_table is not None:
        tables["output"] = output_table
    frequent = embedding_analysis.frequent_tokens(context.ids, tokenizer, args.map_tokens)
    labels = [embedding_analysis.token_label(tokenizer, t) for t in frequent]
    kinds = " and ".join(tables)
    extra = (
        " The output embeddings are the rows of the output layer: tokens the model predicts in similar contexts "
        "get similar rows."
        if output_table is not None
        else " The output layer is tied to them."
    )
    report.add(
        f"The {kinds} embeddings of the {len(frequent)} most frequent tokens of --text (a leading space is "
        f"shown as _).{extra}"
    )
    report.add()
    for kind, table in tables.items():
        points = table[frequent]
        projected, shares = embedding_analysis.pca_2d(points)
        title = f"PCA of {kind} embeddings (PC1 {shares[0]:.0%}, PC2 {shares[1]:.0%} of variance)"
        report.figure(
            lambda path, projected=projected, title=title: embedding_analysis.plot_projection(
                projected, labels, title, path, ("PC1", "PC2")
            ),
            f"embeddings_{kind}_pca.png",
            f"PCA of the {kind} embeddings",
        )
        try:
            tsne = embedding_analysis.tsne_2d(points, args.seed)
            report.figure(
                lambda path, tsne=tsne, kind=kind: embedding_analysis.plot_projection(
                    tsne, labels, f"t-SNE of {kind} embeddings", path, ("t-SNE 1", "t-SNE 2")
                ),
                f"embeddings_{kind}_tsne.png",
                f"t-SNE of the {kind} embeddings",
            )
        except MissingDependency as error:
            report.note(f"no t-SNE map: {error}")

    report.add("#### Nearest neighbours (cosine similarity)")
    report.add()
    special = list(tokenizer.special_token_ids.values())
    rows = []
    for word in NEIGHBOUR_WORDS:
        token = embedding_analysis.word_token(tokenizer, word)
        if token is None or token >= context.config.vocab_size:
            continue
        row = {"word": word}
        for kind, table in tables.items():
            neighbours = embedding_analysis.nearest_neighbours(table, token, 6, special)
            row[kind] = ", ".join(
                f"{tokenizer.decode([n]).strip() or repr(tokenizer.decode([n]))} ({s:.2f})" for n, s in neighbours
            )
        rows.append(row)
    if rows:
        report.table(
            rows,
            ["word", *tables],
            "embedding_neighbours.csv",
            headers=["word", *(f"{kind} embeddings" for kind in tables)],
        )
    else:
        report.note("none of the chosen words is a single token of this tokenizer")

    report.add("#### Linear probe: nouns against verbs, per layer")
    report.add()
    train_path = Path((context.checkpoint.get("config") or {}).get("train_data", ""))
    lexicon_path = train_path if train_path.is_file() else context.text_path
    lexicon = build_lexicon(split_stories(read_text_file(lexicon_path, "lexicon text")))
    data = embedding_analysis.labelled_word_positions(
        context.text,
        context.ids,
        tokenizer,
        lexicon.kind,
        offset=1 if context.eos is not None else 0,
        limit=args.probe_examples,
        seed=args.seed,
    )
    if len(set(data.labels)) < 2 or len(set(data.words)) < 4:
        report.note(f"too few nouns and verbs in --text for a probe ({len(data.positions)} occurrences)")
        return
    states = embedding_analysis.hidden_states_at(model, data.ids, data.positions)
    try:
        results = embedding_analysis.linear_probe([s.numpy() for s in states], data.labels, data.words, seed=args.seed)
    except MissingDependency as error:
        report.note(f"no probe: {error}")
        return
    counts = {kind: data.labels.count(kind) for kind in sorted(set(data.labels))}
    report.add(
        f"Word kinds from `cs288_lm.common.qa_data.build_lexicon` on {lexicon_path.name}; "
        f"{len(data.positions)} occurrences in --text ({', '.join(f'{n} {k}s' for k, n in counts.items())}) "
        f"of {len(set(data.words))} words, the hidden state at each word's last token. Logistic regression "
        "per layer (layer 0: the embeddings), trained and tested on disjoint words (30% of the words for "
        "testing); the baseline always answers the training set's most frequent kind."
    )
    report.add()
    probe_rows = [
        {
            "layer": r.layer,
            "accuracy": r.accuracy,
            "majority_baseline": r.baseline,
            "train_examples": r.train_examples,
            "test_examples": r.test_examples,
        }
        for r in results
    ]
    report.table(probe_rows, ["layer", "accuracy", "majority_baseline", "train_examples", "test_examples"], "probe.csv")
    best = max(results, key=lambda r: r.accuracy)
    report.add(f"Best: layer {best.layer}, {best.accuracy:.1%} against a baseline of {best.baseline:.1%}.")
    report.add()

    def draw(path: Path) -> None:
        plt = pyplot()
        figure, axis = plt.subplots(figsize=(5.5, 3.5))
        axis.plot([r.layer for r in results], [r.accuracy for r in results], "o-", label="probe (test words)")
        axis.axhline(results[0].baseline, color="grey", linestyle="--", label="majority baseline")
        axis.set_title("Linear probe: noun or verb from each layer's hidden state", fontsize=10)
        axis.set_xlabel("layer (0: embeddings)")
        axis.set_xticks([r.layer for r in results])
        axis.set_ylabel("accuracy, noun vs verb")
        axis.set_ylim(0.0, 1.0)
        axis.grid(alpha=0.3)
        axis.legend()
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)

    report.figure(draw, "probe.png", "probe accuracy per layer")


# ------------------------------------------------------------------------------------------------
# 6. Comparison with GPT-2
# ------------------------------------------------------------------------------------------------


def section_compare(context: Context, report: ReportWriter) -> None:
    if context.args.gpt2 is None:
        report.add(
            "No GPT-2 given (`--gpt2 DIR`). No hub is reached from here: save a GPT-2 on a machine that has "
            "internet access (or `huggingface-cli download gpt2 --local-dir gpt2-local`) and copy the "
            "directory over:"
        )
        report.add()
        report.add(f"    {GET_GPT2}")
        report.add()
        report.add(
            "then add `--gpt2 gpt2-local` to this command (also `distilgpt2`, or any GPT2LMHeadModel saved "
            "with save_pretrained with its tokenizer)."
        )
        report.add()
        return
    if context.gpt2 is None:
        report.note(f"no comparison: {context.gpt2_problem}")
        return
    gpt2 = context.gpt2
    ours = Contestant("ours", context.model, context.tokenizer, context.eos)
    theirs = Contestant(gpt2.name, gpt2.model, gpt2.tokenizer, gpt2.eos)
    text = cut_text(context.text, context.args.compare_bytes)
    context.progress(f"   scoring {len(text.encode()):,} bytes with both models")
    began = time.perf_counter()
    rows = []
    for contestant in (ours, theirs):
        with threads_while(contestant.model, context.args.threads):
            rows += score_models([contestant], text)
    report.add(
        f"Both models on the first {len(text.encode()):,} bytes of --text, each with its own tokenizer and "
        "context length. Per-token perplexity depends on the tokenizer; bits per byte do not."
    )
    report.add()
    report.table(
        rows,
        list(rows[0]),
        "compare_scores.csv",
        headers=[
            "model",
            "parameters",
            "vocabulary",
            "context",
            "tokens",
            "bytes",
            "bytes/token",
            "loss/token (nats)",
            "perplexity/token",
            "bits/byte",
        ],
    )
    per_prompt = min(context.args.compare_samples, context.args.samples_per_prompt)
    if not context.samples:
        context.samples = _study(context, context.model, context.tokenizer, context.eos)
    context.progress(f"   scored in {time.perf_counter() - began:.1f} s; sampling from {gpt2.name}")
    began = time.perf_counter()
    with threads_while(gpt2.model, context.args.threads):
        their_samples = _study(context, gpt2.model, gpt2.tokenizer, gpt2.eos, per_prompt)
    # The same number of samples for both: distinct-n and Self-BLEU depend on it.
    context.progress(f"   sampled in {time.perf_counter() - began:.1f} s")
    our_rows, notes = summarise([sample for sample in context.samples if sample.index < per_prompt])
    their_rows, more_notes = summarise(their_samples)
    for note in dict.fromkeys(notes + more_notes):
        report.note(note)
    rows = [{"model": "ours", **row} for row in our_rows] + [{"model": gpt2.name, **row} for row in their_rows]
    report.add(
        f"Sampling metrics of both models on the same prompts and settings, {per_prompt} samples per prompt "
        "and strategy (the first of section 3 for ours):"
    )
    report.add()
    _metric_table(report, rows, "compare_sampling.csv", first=("model", "strategy"))
    report.add("Same prompts, side by side (first sample of each strategy):")
    report.add()
    side = []
    for prompt in PROMPTS:
        for strategy in ("greedy", "top-p 0.9"):
            pick = [
                next((s.text for s in samples if s.prompt == prompt and s.strategy == strategy and s.index == 0), "")
                for samples in (context.samples, their_samples)
            ]
            side.append({"prompt": prompt, "strategy": strategy, "ours": pick[0], gpt2.name: pick[1]})
    report.table(side, ["prompt", "strategy", "ours", gpt2.name], "compare_samples.csv")


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------

SECTION_FUNCTIONS = {
    "card": section_card,
    "sweep": section_sweep,
    "sampling": section_sampling,
    "attention": section_attention,
    "embeddings": section_embeddings,
    "compare": section_compare,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a pretrain run directory, or a checkpoint file")
    parser.add_argument("--out", type=Path, default=Path("out/report"), help="where report.md and its files go")
    parser.add_argument(
        "--gpt2",
        default=None,
        help="a local Hugging Face GPT-2 directory (save_pretrained) for section 6 (default: none, no comparison)",
    )
    parser.add_argument(
        "--sweep",
        default=None,
        help="an output directory of python -m cs288_lm.pipelines.sweep (default: none, the command to run)",
    )
    parser.add_argument("--text", default=str(DEFAULT_TEXT), help="text to evaluate on (default: the valid split)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the checkpoint's)")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}"
    )
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the samples, the random sequences, t-SNE and the probe"
    )
    parser.add_argument(
        "--samples-per-prompt", type=int, default=4, help="samples per prompt and strategy (greedy: one)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=60, help="longest sample, in tokens")
    parser.add_argument("--max-text-bytes", type=int, default=200_000, help="score at most this much of --text")
    parser.add_argument("--compare-samples", type=int, default=2, help="samples per prompt and strategy in section 6")
    parser.add_argument("--compare-bytes", type=int, default=20_000, help="text scored by both models in section 6")
    parser.add_argument(
        "--max-count-bytes",
        type=int,
        default=20_000_000,
        help="encode the training text to count its tokens when at most this large",
    )
    parser.add_argument(
        "--attention-windows", type=int, default=8, help="text windows and repeated random sequences for head scores"
    )
    parser.add_argument("--heatmap-tokens", type=int, default=32, help="tokens of the text window the heatmaps show")
    parser.add_argument("--map-tokens", type=int, default=150, help="tokens in the embedding maps")
    parser.add_argument(
        "--probe-examples", type=int, default=3000, help="noun and verb occurrences for the linear probe"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 for models under 20 M parameters, whose small matrices run "
        "fastest on one thread, by far on a busy machine; torch's default for larger ones)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        parser.error(f"--sections: unknown {unknown}; choose from {', '.join(SECTIONS)}")
    args.sections = [s for s in SECTIONS if s in sections]
    for name in (
        "samples_per_prompt",
        "max_new_tokens",
        "max_text_bytes",
        "compare_bytes",
        "compare_samples",
        "attention_windows",
        "heatmap_tokens",
        "map_tokens",
        "probe_examples",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    return args


def make_report(args: argparse.Namespace) -> Path:
    """Write the report that ``args`` ask for (see :func:`parse_args`); returns the path of report.md."""
    previous_threads = torch.get_num_threads()
    try:
        return _make_report(args)
    finally:
        torch.set_num_threads(previous_threads)


def _make_report(args: argparse.Namespace) -> Path:
    start, cpu_start = time.perf_counter(), time.process_time()
    context = build_context(args)
    torch.set_num_threads(threads_for(context.model, args.threads))
    args.out.mkdir(parents=True, exist_ok=True)
    report = ReportWriter(args.out)
    report.add(f"# Report: {context.run_dir.name or context.run_dir}")
    report.add()
    report.add(
        f"Checkpoint `{context.checkpoint_path}` (step {context.checkpoint.get('step', '?')}), "
        f"{context.config.architecture} architecture; evaluation text `{context.text_path}`. Generated by "
        f"`python -m cs288_lm.pipelines.report {shlex.join(args.argv)}`."
    )
    report.add()
    for warning in context.warnings:
        report.note(warning)
    report.add(
        " | ".join(
            f"[{i}. {TITLES[s]}](#{i}-{TITLES[s].lower().replace(' ', '-')})"
            for i, s in enumerate(SECTIONS, start=1)
            if s in args.sections
        )
    )
    report.add()
    context.timings["reading inputs"] = (time.perf_counter() - start, time.process_time() - cpu_start)
    for number, name in enumerate(SECTIONS, start=1):
        if name not in args.sections:
            continue
        context.progress(f"({number}/{len(SECTIONS)}) {TITLES[name]} ...")
        began, cpu_began = time.perf_counter(), time.process_time()
        report.add(f"## {number}. {TITLES[name]}")
        report.add()
        try:
            SECTION_FUNCTIONS[name](context, report)
        except MissingDependency as error:
            report.note(f"this section stopped: {error}")
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
        context.timings[TITLES[name]] = (elapsed, cpu)
        context.progress(f"({number}/{len(SECTIONS)}) {TITLES[name]} done in {elapsed:.1f} s (CPU time {cpu:.1f} s)")
    report.add("## Timings")
    report.add()
    report.add(
        f"torch threads: {torch.get_num_threads()}; device: {next(context.model.parameters()).device}. "
        "CPU time is this process's, all threads together."
    )
    report.add()
    report.table(
        [
            {"part": part, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2)}
            for part, (wall, cpu) in context.timings.items()
        ],
        ["part", "seconds", "cpu_seconds"],
        "timings.csv",
        headers=["part", "wall seconds", "CPU seconds"],
    )
    path = report.write()
    context.progress(f"wrote {path} in {time.perf_counter() - start:.1f} s")
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    args.argv = argv
    try:
        make_report(args)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except NotImplementedError as error:  # the handout before the parts it needs are written
        print(f"error: not implemented yet: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
