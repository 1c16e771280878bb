"""Turn a pretraining checkpoint into a report: ``OUT/report.md``, its PNGs and CSV tables (given).

    python -m cs288_lm.pipelines.report --checkpoint out/pretrain --out out/report
    python -m cs288_lm.pipelines.report --checkpoint out/pretrain --out out/report --sweep out/sweep --gpt2 gpt2-local

``--checkpoint`` is a run directory of :mod:`cs288_lm.pipelines.pretrain` (its model checkpoint and
``metrics.jsonl``, see :class:`~cs288_lm.training.run_dir.RunDir`) or a checkpoint file, of either
architecture (Llama-style or GPT-2). The report has six sections (``--sections`` picks some), each a
module of :mod:`cs288_lm.reporting`:

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
import sys
import time
from pathlib import Path

import torch

from cs288_lm.analysis import MissingDependency
from cs288_lm.reporting.context import DEFAULT_TEXT, Context, ReportError, build_context
from cs288_lm.reporting.document import write_header, write_timings
from cs288_lm.reporting.sections import NAMES, Section, numbered
from cs288_lm.reporting.threads import threads_for
from cs288_lm.reporting.writer import ReportWriter
from cs288_lm.training.settings import DEVICE_HELP, HelpFormatter

AT_LEAST_ONE = (
    "samples_per_prompt",
    "max_new_tokens",
    "max_text_bytes",
    "compare_bytes",
    "compare_samples",
    "attention_windows",
    "heatmap_tokens",
    "map_tokens",
    "probe_examples",
)


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
    parser.add_argument("--sections", default=",".join(NAMES), help=f"comma-separated subset of {', '.join(NAMES)}")
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
    unknown = [s for s in sections if s not in NAMES]
    if unknown or not sections:
        parser.error(f"--sections: unknown {unknown}; choose from {', '.join(NAMES)}")
    args.sections = [s for s in NAMES if s in sections]
    for name in AT_LEAST_ONE:
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


def run_section(context: Context, report: ReportWriter, number: int, section: Section) -> None:
    """Write one section under its heading and time it; a missing optional library stops only this section."""
    context.progress(f"({number}/{len(NAMES)}) {section.title} ...")
    began, cpu_began = time.perf_counter(), time.process_time()
    report.paragraph(f"## {number}. {section.title}")
    try:
        section.render(context, report)
    except MissingDependency as error:
        report.note(f"this section stopped: {error}")
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    context.timings[section.title] = (elapsed, cpu)
    context.progress(f"({number}/{len(NAMES)}) {section.title} done in {elapsed:.1f} s (CPU time {cpu:.1f} s)")


def _make_report(args: argparse.Namespace) -> Path:
    start, cpu_start = time.perf_counter(), time.process_time()
    sections = numbered(args.sections)
    context = build_context(args)
    for _, section in sections:
        if section.prepare is not None:
            section.prepare(context)
    torch.set_num_threads(threads_for(context.model, args.threads))
    args.out.mkdir(parents=True, exist_ok=True)
    report = ReportWriter(args.out)
    write_header(context, report, sections, args.argv)
    context.timings["reading inputs"] = (time.perf_counter() - start, time.process_time() - cpu_start)
    for number, section in sections:
        run_section(context, report, number, section)
    write_timings(context, report)
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
