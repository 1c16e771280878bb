"""Benchmark our BPE trainer and tokenizer against Hugging Face ``tokenizers`` and ``tiktoken``.

Everything runs in one invocation on the same text (default: the bundled TinyStories sample)::

    python benchmarks/bench_tokenizer.py [--input PATH] [--vocab-size N] [--repeats K] \\
        [--whole-file-mb MB] [--json PATH]

What is measured (wall-clock ``time.perf_counter``, best of ``--repeats`` runs; MB = 10**6 bytes):

1. **BPE training.** ``cs288_lm.bpe.train_bpe(path, N, ["<|endoftext|>"], workers=W)`` (counting
   pre-tokens in W processes, then learning merges) against a Hugging Face BPE trainer configured
   the same way (byte-level pre-tokenizer without prefix space, the 256-byte initial alphabet, the
   same special token). Hugging Face is run twice, each time in a child process of this script so
   its Rust thread pool starts with the intended size: once with its default threads (all cores,
   or whatever ``RAYON_NUM_THREADS`` already says), against ours with as many workers, and once
   with ``RAYON_NUM_THREADS=1``, against ours with ``workers=1``. The child's own timing is
   reported, so interpreter start-up is not counted (ours includes starting its workers). The
   merges are compared
   only for information (common prefix length of the two merge lists, size of their intersection
   as sets): the trainers break ties between equally frequent pairs differently, and Hugging Face
   does not cut special tokens out of the training text, so it also learns merges inside
   ``<|endoftext|>`` (e.g. ``e nd``), which shifts its merge order early on.
2. **Encoding** the whole file with the GPT-2 vocabulary and merges (``tests/fixtures/gpt2``):
   ``cs288_lm.tokenizer.Tokenizer.encode`` against tiktoken's ``gpt2`` encoding built offline from
   the same files, ``encode(text, allowed_special="all")`` (single thread). *Cold*: every repeat
   builds a fresh tokenizer / ``Encoding`` first (construction timed separately, not included),
   so our caches (pre-tokens and words) start empty. *Warm*: a second ``encode`` on the same object, with
   the cache filled. Ours and tiktoken take turns within each repeat, so background load hits
   both alike. The ids of both are checked to be identical. Also reported, for information: our
   multi-process ``cs288_lm.training.encoding.encode_file`` (one worker per core, includes process
   start-up, each worker's empty cache and writing the ``.npy``; on a small file this overhead
   dominates) and tiktoken's multi-threaded ``encode_batch`` over the text cut at the
   ``<|endoftext|>`` tokens (which gives the same ids as encoding the whole text).
3. **Whole file, large.** The input repeated up to ``--whole-file-mb`` MB (default 50; 0 skips
   this) in a temporary folder, where start-up no longer dominates. Ours: ``encode_file`` with one
   worker per core, from the file on disk to the ``.npy`` on disk, a fresh tokenizer (empty cache)
   per repeat. tiktoken: ``encode_batch`` with as many threads, on the documents already in memory
   (read and cut before the clock starts) and returning lists: the stricter comparison, and the
   target's. For information, tiktoken also runs the whole way ours does: read the file, cut it,
   ``encode_batch``, write the ids as a ``.npy``. The methods alternate within each repeat, so
   background load hits both alike, and the ids of both are checked to be identical.

Targets: training time ours <= 1x Hugging Face at its default threads; cold single-thread
encoding throughput ours >= 0.75x tiktoken; whole large file ours >= 1.0x tiktoken ``encode_batch``
(same number of processes / threads).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np
import tiktoken

from cs288_lm.bpe import train_bpe
from cs288_lm.common.gpt2_format import load_vocab_and_merges, tiktoken_encoding, token_to_string
from cs288_lm.common.pretokenization import EOT
from cs288_lm.tokenizer import Tokenizer
from cs288_lm.training.encoding import encode_file

DEFAULT_INPUT = REPO_ROOT / "data" / "tinystories" / "train.txt"
GPT2_DIR = REPO_ROOT / "tests" / "fixtures" / "gpt2"  # GPT-2's vocabulary and merges (data files of the tests)
GPT2_VOCAB, GPT2_MERGES = GPT2_DIR / "gpt2_vocab.json", GPT2_DIR / "gpt2_merges.txt"
HF_WORKER_FLAG = "--hf-worker"  # internal: train with Hugging Face only and print one JSON line

T = TypeVar("T")
Result = dict[str, Any]


# ---------------------------------------------------------------------------------------- timing


def best_of(repeats: int, run: Callable[[], T]) -> tuple[float, T]:
    """The shortest of ``repeats`` timed calls of ``run``, with the result of the last call."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def megabytes_per_second(num_bytes: int, seconds: float) -> float:
    return num_bytes / 1e6 / seconds


@functools.lru_cache(maxsize=1)
def gpt2_vocab() -> dict[int, bytes]:
    """GPT-2's vocabulary, read once: building a tiktoken ``Encoding`` from it is what is timed."""
    vocab, _ = load_vocab_and_merges(GPT2_VOCAB, GPT2_MERGES, [EOT])
    return vocab


def gpt2_tiktoken() -> tiktoken.Encoding:
    """tiktoken's ``gpt2`` encoding, built offline from the GPT-2 files (a fresh ``Encoding`` per call)."""
    return tiktoken_encoding(gpt2_vocab(), [EOT], name="gpt2_offline")


# ---------------------------------------------------------------------------------- BPE training


def train_ours(path: Path, vocab_size: int, repeats: int, workers: int) -> Result:
    """Time ``train_bpe``; the merges are returned as GPT-2 strings for comparison."""

    def run() -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "ran out of pairs": the small sample has < N tokens
            return train_bpe(path, vocab_size, [EOT], workers=workers)

    seconds, (vocab, merges) = best_of(repeats, run)
    return {
        "seconds": seconds,
        "workers": workers,
        "vocab_size": len(vocab),
        "merges": [[token_to_string(left), token_to_string(right)] for left, right in merges],
    }


def train_hf(path: Path, vocab_size: int, repeats: int) -> Result:
    """Time the equivalent Hugging Face BPE trainer in this process (run in a child, see below)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    def run() -> HFTokenizer:
        tokenizer = HFTokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train([str(path)], trainer)
        return tokenizer

    seconds, tokenizer = best_of(repeats, run)
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    # Recent versions store each merge as [left, right], older ones as "left right".
    merges = [merge if isinstance(merge, list) else merge.split(" ") for merge in merges]
    return {"seconds": seconds, "vocab_size": tokenizer.get_vocab_size(), "merges": merges}


def train_hf_in_child(path: Path, vocab_size: int, repeats: int, single_thread: bool) -> Result:
    """Run :func:`train_hf` in a fresh interpreter, so ``RAYON_NUM_THREADS`` takes effect."""
    env = dict(os.environ)
    if single_thread:
        env["RAYON_NUM_THREADS"] = "1"
    command = [sys.executable, str(Path(__file__).resolve()), HF_WORKER_FLAG, "--input", str(path)]
    command += ["--vocab-size", str(vocab_size), "--repeats", str(repeats)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["threads"] = 1 if single_thread else default_hf_threads()
    return result


def merge_agreement(ours: Sequence[Sequence[str]], theirs: Sequence[Sequence[str]]) -> Result:
    """How far the two merge lists agree: common prefix length and set intersection size."""
    ours, theirs = [tuple(m) for m in ours], [tuple(m) for m in theirs]
    prefix = next(
        (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs))
    )
    return {"common_prefix": prefix, "set_overlap": len(set(ours) & set(theirs)), "ours": len(ours), "hf": len(theirs)}


def default_hf_threads() -> int:
    """The size of Hugging Face's thread pool when ``RAYON_NUM_THREADS`` is not forced to 1."""
    return int(os.environ.get("RAYON_NUM_THREADS") or os.cpu_count() or 1)


def bench_training(path: Path, vocab_size: int, repeats: int) -> Result:
    ours = train_ours(path, vocab_size, repeats, workers=default_hf_threads())
    ours_single = train_ours(path, vocab_size, repeats, workers=1)
    hf_default = train_hf_in_child(path, vocab_size, repeats, single_thread=False)
    hf_single = train_hf_in_child(path, vocab_size, repeats, single_thread=True)
    our_merges = ours.pop("merges")
    if our_merges != ours_single.pop("merges"):
        raise AssertionError("train_bpe gave different merges with 1 and several workers")
    agreement = merge_agreement(our_merges, hf_default.pop("merges"))
    hf_single.pop("merges")
    return {
        "ours": ours,
        "ours_single": ours_single,
        "hf_default_threads": hf_default,
        "hf_single_thread": hf_single,
        "ratio_ours_over_hf_default": ours["seconds"] / hf_default["seconds"],
        "ratio_ours_over_hf_single": ours_single["seconds"] / hf_single["seconds"],
        "merge_agreement": agreement,
    }


# -------------------------------------------------------------------------------------- encoding


Encoder = tuple[Callable[[], Any], Callable[[Any, str], list[int]]]  # (make a fresh one, encode with it)


def ours_encoder() -> Encoder:
    """Our ``Tokenizer.encode`` of the whole text; a fresh tokenizer (empty cache) per repeat."""
    return lambda: Tokenizer.from_files(GPT2_VOCAB, GPT2_MERGES, [EOT]), Tokenizer.encode


def tiktoken_encoder() -> Encoder:
    """tiktoken, single thread; a fresh ``Encoding`` per repeat."""
    return gpt2_tiktoken, lambda encoding, text: encoding.encode(text, allowed_special="all")


def time_cold_and_warm(
    encoders: dict[str, Encoder], text: str, repeats: int
) -> tuple[dict[str, Result], dict[str, list[int]]]:
    """Best construction, cold (fresh object, empty caches) and warm (second call) encode times.

    The encoders take turns within each repeat, so background load hits them alike.
    """
    best = {
        name: {"construct_seconds": float("inf"), "cold_seconds": float("inf"), "warm_seconds": float("inf")}
        for name in encoders
    }
    ids: dict[str, list[int]] = {}
    for _ in range(repeats):
        for name, (make, encode) in encoders.items():
            start = time.perf_counter()
            encoder = make()
            middle = time.perf_counter()
            ids[name] = encode(encoder, text)
            end = time.perf_counter()
            encode(encoder, text)
            stop = time.perf_counter()
            row = best[name]
            row["construct_seconds"] = min(row["construct_seconds"], middle - start)
            row["cold_seconds"] = min(row["cold_seconds"], end - middle)
            row["warm_seconds"] = min(row["warm_seconds"], stop - end)
    return best, ids


def encode_file_ours(path: Path, repeats: int, workers: int, expected: list[int]) -> Result:
    """Our multi-process whole-file encoder, output checked against single-call ``encode``."""
    tokenizer = Tokenizer.from_files(GPT2_VOCAB, GPT2_MERGES, [EOT])
    with tempfile.TemporaryDirectory() as directory:
        output = Path(directory) / "ids.npy"
        seconds, _ = best_of(repeats, lambda: encode_file(tokenizer, path, output, workers=workers))
        identical = np.array_equal(np.load(output), np.asarray(expected))
    return {"seconds": seconds, "workers": workers, "identical": bool(identical)}


def split_after_special(text: str) -> list[str]:
    """Cut ``text`` right after each ``<|endoftext|>``: encoding the pieces gives the same ids."""
    parts = text.split(EOT)
    return [part + EOT for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def encode_batch_tiktoken(text: str, repeats: int, threads: int, expected: list[int]) -> Result:
    encoding: tiktoken.Encoding = gpt2_tiktoken()
    documents = split_after_special(text)
    seconds, batches = best_of(
        repeats, lambda: encoding.encode_batch(documents, num_threads=threads, allowed_special="all")
    )
    identical = [token for batch in batches for token in batch] == expected
    return {"seconds": seconds, "threads": threads, "documents": len(documents), "identical": identical}


def build_repeated_file(source: Path, destination: Path, megabytes: float) -> int:
    """Write ``source`` repeated whole until ``destination`` holds ``megabytes`` MB; return its size."""
    data = source.read_bytes()
    copies = max(1, -(-int(megabytes * 1e6) // len(data)))
    with open(destination, "wb") as out:
        out.writelines(itertools.repeat(data, copies))
    return copies * len(data)


# Characters per encode_batch input when the documents are grouped: large enough that tiktoken's
# per-call overhead (a thread-pool task, special-token checks, a list per call) disappears.
GROUP_CHARS = 1 << 20


def group_documents(documents: Sequence[str], chars: int = GROUP_CHARS) -> list[str]:
    """Join consecutive documents into pieces of about ``chars`` characters (same ids when encoded)."""
    groups, current, length = [], [], 0
    for document in documents:
        current.append(document)
        length += len(document)
        if length >= chars:
            groups.append("".join(current))
            current, length = [], 0
    if current:
        groups.append("".join(current))
    return groups


def tiktoken_file_to_npy(encoding: tiktoken.Encoding, path: Path, output: Path, threads: int) -> None:
    """What ``encode_file`` does, with tiktoken: read, cut, ``encode_batch``, write a ``.npy``."""
    groups = group_documents(split_after_special(path.read_text(encoding="utf-8")))
    batches = encoding.encode_batch(groups, num_threads=threads, allowed_special="all")
    count = sum(map(len, batches))
    np.save(output, np.fromiter(itertools.chain.from_iterable(batches), dtype=np.uint16, count=count))


def timed(run: Callable[[], Any]) -> Callable[[], float]:
    """A function that calls ``run`` and returns how long it took."""

    def call() -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    return call


def bench_whole_file(source: Path, megabytes: float, repeats: int, workers: int) -> Result:
    """``encode_file`` against tiktoken ``encode_batch`` on ``source`` repeated to ``megabytes`` MB."""
    encoding: tiktoken.Encoding = gpt2_tiktoken()
    with tempfile.TemporaryDirectory() as directory:
        path, output = Path(directory) / "input.txt", Path(directory) / "ids.npy"
        num_bytes = build_repeated_file(source, path, megabytes)
        documents = split_after_special(path.read_text(encoding="utf-8"))
        groups = group_documents(documents)

        def ours() -> float:
            tokenizer = Tokenizer.from_files(GPT2_VOCAB, GPT2_MERGES, [EOT])  # empty cache; not timed
            return timed(lambda: encode_file(tokenizer, path, output, workers=workers))()

        methods = {
            "ours_encode_file": ours,
            "tiktoken_encode_batch_grouped": timed(
                lambda: encoding.encode_batch(groups, num_threads=workers, allowed_special="all")
            ),
            "tiktoken_encode_batch_documents": timed(
                lambda: encoding.encode_batch(documents, num_threads=workers, allowed_special="all")
            ),
            "tiktoken_file_to_npy": timed(
                lambda: tiktoken_file_to_npy(encoding, path, Path(directory) / "tiktoken.npy", workers)
            ),
        }
        seconds = {name: float("inf") for name in methods}
        for _ in range(repeats):  # the methods take turns, so background load hits them alike
            for name, method in methods.items():
                seconds[name] = min(seconds[name], method())
        ours_ids = np.load(output)
        theirs = encoding.encode_batch(groups, num_threads=workers, allowed_special="all")
        count = sum(map(len, theirs))
        identical = count == len(ours_ids) and np.array_equal(
            ours_ids, np.fromiter(itertools.chain.from_iterable(theirs), dtype=ours_ids.dtype, count=count)
        )
    result = {
        "input_bytes": num_bytes,
        "num_tokens": len(ours_ids),
        "workers": workers,
        "documents": len(documents),
        "groups": len(groups),
        **{f"{name}_seconds": value for name, value in seconds.items()},
        "identical": bool(identical),
    }
    for name in methods:
        result[f"ratio_over_{name}"] = seconds[name] / seconds["ours_encode_file"]
    result["throughput_ratio"] = result["ratio_over_tiktoken_encode_batch_grouped"]  # the target's
    return result


def bench_encoding(path: Path, repeats: int) -> Result:
    text = path.read_text(encoding="utf-8")
    times, ids = time_cold_and_warm({"ours": ours_encoder(), "tiktoken": tiktoken_encoder()}, text, repeats)
    ours, theirs, our_ids, their_ids = times["ours"], times["tiktoken"], ids["ours"], ids["tiktoken"]
    workers = os.cpu_count() or 1
    return {
        "num_tokens": len(our_ids),
        "identical_ids": our_ids == their_ids,
        "ours": ours,
        "tiktoken": theirs,
        "throughput_ratio_cold": theirs["cold_seconds"] / ours["cold_seconds"],
        "throughput_ratio_warm": theirs["warm_seconds"] / ours["warm_seconds"],
        "ours_encode_file": encode_file_ours(path, repeats, workers, our_ids),
        "tiktoken_encode_batch": encode_batch_tiktoken(text, repeats, workers, their_ids),
    }


# -------------------------------------------------------------------------------------- printing


def machine_info() -> Result:
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tiktoken": version("tiktoken"),
        "tokenizers": version("tokenizers"),
        "numpy": np.__version__,
    }


def print_training(results: Result, num_bytes: int) -> None:
    print("== BPE training ==")
    rows = [
        (f"ours (train_bpe, workers={results['ours']['workers']})", results["ours"]),
        (f"HF tokenizers, default threads ({results['hf_default_threads']['threads']})", results["hf_default_threads"]),
        ("ours (train_bpe, workers=1)", results["ours_single"]),
        ("HF tokenizers, RAYON_NUM_THREADS=1", results["hf_single_thread"]),
    ]
    for name, row in rows:
        speed = megabytes_per_second(num_bytes, row["seconds"])
        print(f"  {name:<44} {row['seconds']:8.3f} s  {speed:7.2f} MB/s  vocab {row['vocab_size']}")
    print(
        f"  ratio ours/HF time: {results['ratio_ours_over_hf_default']:.2f}x (HF default threads), "
        f"{results['ratio_ours_over_hf_single']:.2f}x (both single)   [target <= 1x, HF default threads]"
    )
    agreement = results["merge_agreement"]
    print(
        f"  merges (informational, tie-breaking differs): {agreement['ours']} ours, {agreement['hf']} HF; "
        f"common prefix {agreement['common_prefix']}, set overlap {agreement['set_overlap']}"
    )
    print("    (HF also merges inside the <|endoftext|> text it does not cut out, and breaks ties differently)")


def print_encoding(results: Result, num_bytes: int) -> None:
    print("== Encoding with the GPT-2 vocabulary ==")
    print(f"  {results['num_tokens']} tokens; ids identical to tiktoken: {results['identical_ids']}")
    for name in ("ours", "tiktoken"):
        row = results[name]
        print(
            f"  {name:<9} construct {row['construct_seconds']:7.3f} s | "
            f"cold {row['cold_seconds']:7.3f} s {megabytes_per_second(num_bytes, row['cold_seconds']):7.2f} MB/s | "
            f"warm {row['warm_seconds']:7.3f} s {megabytes_per_second(num_bytes, row['warm_seconds']):7.2f} MB/s"
        )
    print(
        f"  throughput ours/tiktoken: cold {results['throughput_ratio_cold']:.2f}x   [target >= 0.75x], "
        f"warm {results['throughput_ratio_warm']:.2f}x"
    )
    parallel, batch = results["ours_encode_file"], results["tiktoken_encode_batch"]
    print(
        f"  ours encode_file, {parallel['workers']} worker processes (incl. start-up, .npy write): "
        f"{parallel['seconds']:.3f} s {megabytes_per_second(num_bytes, parallel['seconds']):.2f} MB/s, "
        f"identical: {parallel['identical']}"
    )
    print(
        f"  tiktoken encode_batch, {batch['threads']} threads, {batch['documents']} documents: "
        f"{batch['seconds']:.3f} s {megabytes_per_second(num_bytes, batch['seconds']):.2f} MB/s, "
        f"identical: {batch['identical']}"
    )


def print_whole_file(results: Result) -> None:
    num_bytes, workers = results["input_bytes"], results["workers"]
    print(
        f"== Whole file: {num_bytes / 1e6:.1f} MB (the input repeated), {results['num_tokens']} tokens, "
        f"{workers} processes / threads =="
    )
    rows = [
        ("ours encode_file (file -> .npy)", "ours_encode_file"),
        (f"tiktoken encode_batch, {results['groups']} groups of ~1 MB in memory", "tiktoken_encode_batch_grouped"),
        (f"tiktoken encode_batch, {results['documents']} documents in memory", "tiktoken_encode_batch_documents"),
        ("tiktoken read + encode_batch (groups) + .npy write", "tiktoken_file_to_npy"),
    ]
    for label, name in rows:
        seconds = results[f"{name}_seconds"]
        ratio = "" if name == "ours_encode_file" else f"  ours {results[f'ratio_over_{name}']:.2f}x"
        print(f"  {label:<58} {seconds:8.3f} s  {megabytes_per_second(num_bytes, seconds):7.2f} MB/s{ratio}")
    print(
        f"  throughput ours/tiktoken encode_batch (groups): {results['throughput_ratio']:.2f}x   [target >= 1.0x]; "
        f"ids identical: {results['identical']}"
    )


def markdown_summary(results: Result) -> str:
    info, num_bytes = results["machine"], results["input_bytes"]
    training, encoding = results["training"], results["encoding"]

    def speed(seconds: float) -> str:
        return f"{seconds:.3f} s ({megabytes_per_second(num_bytes, seconds):.2f} MB/s)"

    lines = [
        (
            f"Input: `{results['input']}` ({num_bytes / 1e6:.2f} MB), vocab size {results['vocab_size']}, "
            f"best of {results['repeats']}. Machine: {info['cpu_count']} CPUs ({info['processor']}), "
            f"Python {info['python']}, tiktoken {info['tiktoken']}, tokenizers {info['tokenizers']}."
        ),
        "",
        "| Task | Ours | Reference | Ours / reference | Target |",
        "|---|---|---|---|---|",
        (
            f"| BPE training (time) | {training['ours']['workers']} workers: {speed(training['ours']['seconds'])} "
            f"| HF, default threads ({training['hf_default_threads']['threads']}): "
            f"{speed(training['hf_default_threads']['seconds'])} | {training['ratio_ours_over_hf_default']:.2f}x "
            "| <= 1x |"
        ),
        (
            f"| BPE training (time) | 1 worker: {speed(training['ours_single']['seconds'])} | HF, 1 thread: "
            f"{speed(training['hf_single_thread']['seconds'])} | {training['ratio_ours_over_hf_single']:.2f}x | |"
        ),
        (
            f"| Encode, cold (throughput) | {speed(encoding['ours']['cold_seconds'])} | tiktoken, 1 thread: "
            f"{speed(encoding['tiktoken']['cold_seconds'])} | {encoding['throughput_ratio_cold']:.2f}x | >= 0.75x |"
        ),
        (
            f"| Encode, warm (throughput) | {speed(encoding['ours']['warm_seconds'])} | tiktoken, 1 thread: "
            f"{speed(encoding['tiktoken']['warm_seconds'])} | {encoding['throughput_ratio_warm']:.2f}x | |"
        ),
        (
            f"| Encode whole file, {num_bytes / 1e6:.1f} MB, parallel | "
            f"encode_file, {encoding['ours_encode_file']['workers']} processes: "
            f"{speed(encoding['ours_encode_file']['seconds'])} | encode_batch, "
            f"{encoding['tiktoken_encode_batch']['threads']} threads: "
            f"{speed(encoding['tiktoken_encode_batch']['seconds'])} | "
            f"{encoding['tiktoken_encode_batch']['seconds'] / encoding['ours_encode_file']['seconds']:.2f}x | |"
        ),
    ]
    whole = results.get("whole_file")
    if whole:
        lines += whole_file_rows(whole)
    return "\n".join(lines)


def whole_file_rows(whole: dict) -> list[str]:
    """The summary table's rows for the whole-file run (``results["whole_file"]``): ours against each reference."""

    def whole_speed(seconds: float) -> str:
        return f"{seconds:.3f} s ({megabytes_per_second(whole['input_bytes'], seconds):.2f} MB/s)"

    size = f"{whole['input_bytes'] / 1e6:.0f} MB"
    ours = f"encode_file, {whole['workers']} processes: {whole_speed(whole['ours_encode_file_seconds'])}"
    references = [
        ("tiktoken_encode_batch_grouped", f"encode_batch, {whole['workers']} threads, ~1 MB groups", ">= 1.0x"),
        ("tiktoken_encode_batch_documents", f"encode_batch, {whole['workers']} threads, one per document", ""),
        ("tiktoken_file_to_npy", "read + encode_batch (groups) + .npy write", ""),
    ]
    return [
        f"| Encode whole file, {size}, parallel | {ours} | {label}: {whole_speed(whole[f'{name}_seconds'])} "
        f"| {whole[f'ratio_over_{name}']:.2f}x | {target} |"
        for name, label, target in references
    ]


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="UTF-8 text file (default: %(default)s)")
    parser.add_argument("--vocab-size", type=int, default=10000, help="BPE vocabulary size (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, best kept (default: %(default)s)")
    parser.add_argument(
        "--whole-file-mb",
        type=float,
        default=50.0,
        help="also encode the input repeated to this many MB with encode_file and encode_batch; 0 skips "
        "(default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    parser.add_argument(HF_WORKER_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.whole_file_mb < 0:
        parser.error("--whole-file-mb must be at least 0")
    if not args.input.is_file():
        parser.error(f"input file not found: {args.input}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    path = args.input.resolve()
    if args.hf_worker:
        print(json.dumps(train_hf(path, args.vocab_size, args.repeats)))
        return

    num_bytes = path.stat().st_size
    try:
        shown = path.relative_to(REPO_ROOT)
    except ValueError:
        shown = path
    print(
        f"Input {shown}: {num_bytes / 1e6:.2f} MB; vocab size {args.vocab_size}; best of {args.repeats}; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n"
    )
    results: Result = {
        "input": str(shown),
        "input_bytes": num_bytes,
        "vocab_size": args.vocab_size,
        "repeats": args.repeats,
        "machine": machine_info(),
    }
    results["training"] = bench_training(path, args.vocab_size, args.repeats)
    print_training(results["training"], num_bytes)
    print()
    results["encoding"] = bench_encoding(path, args.repeats)
    print_encoding(results["encoding"], num_bytes)
    if args.whole_file_mb > 0:
        print()
        results["whole_file"] = bench_whole_file(path, args.whole_file_mb, args.repeats, os.cpu_count() or 1)
        print_whole_file(results["whole_file"])
    print("\n== Summary (markdown) ==\n")
    print(markdown_summary(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"\nWrote {args.json}")


if __name__ == "__main__":
    main()
