"""Peak memory and time of ``cs288_lm.training.encoding.encode_file`` on a large file.

Builds a text file of about ``--megabytes`` MB (10**6 bytes) by repeating the bundled TinyStories
sample in a temporary folder, then encodes it with the bundled tokenizer (``data/tokenizer``)
once per worker count, each run in a fresh child process so that the peaks do not mix::

    python benchmarks/bench_encode_file_memory.py [--megabytes 100] [--workers 1 2] [--json PATH]

Reported per run: wall time of ``encode_file`` (the child's ``time.perf_counter``), the peak RSS
of the main process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``: planning, the join into the
``.npy``) and of the largest worker process (``RUSAGE_CHILDREN``; none with one worker, which
encodes in the main process), and the number of tokens written. With a streaming join, the peaks
stay flat as the file grows; a join that loads whole parts grows by a few bytes per token.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "tinystories" / "train.txt"
TOKENIZER = ROOT / "data" / "tokenizer"

# Runs in the child: its own peaks are what we want, so nothing else is loaded there first.
CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from cs288_lm.training.encoding import encode_file
from cs288_lm.tokenizer import Tokenizer
tokenizer = Tokenizer.from_directory(sys.argv[2])
start = time.perf_counter()
path = encode_file(tokenizer, sys.argv[3], sys.argv[4], workers=int(sys.argv[5]))
seconds = time.perf_counter() - start
tokens = len(np.load(path, mmap_mode="r"))
print(json.dumps({
    "seconds": seconds,
    "tokens": tokens,
    "main_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "worker_peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
}))
"""


def build_input(path: Path, megabytes: float) -> int:
    """Write SAMPLE repeated until the file reaches ``megabytes``; returns its size in bytes."""
    sample = SAMPLE.read_bytes()
    target = int(megabytes * 1e6)
    written = 0
    with open(path, "wb") as out:
        while written < target:
            out.write(sample)
            written += len(sample)
    return written


def run(input_path: Path, output_path: Path, workers: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), str(TOKENIZER), str(input_path), str(output_path), str(workers)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=100.0, help="size of the generated input (MB)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to run")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        input_path = Path(folder) / "input.txt"
        size = build_input(input_path, args.megabytes)
        for workers in args.workers:
            output_path = Path(folder) / f"ids_{workers}.npy"
            row = {"workers": workers, "input_bytes": size, **run(input_path, output_path, workers)}
            output_path.unlink()
            rows.append(row)
            print(f"workers={workers}: {row}", file=sys.stderr)
    print(f"\ninput: {size / 1e6:.1f} MB (data/tinystories/train.txt repeated), tokenizer: data/tokenizer\n")
    print("| Workers | Time (s) | MB/s | Tokens | Main peak RSS (MiB) | Worker peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        worker_peak = f"{row['worker_peak_kib'] / 1024:.0f}" if row["workers"] > 1 else "-"
        print(
            f"| {row['workers']} | {row['seconds']:.1f} | {size / 1e6 / row['seconds']:.1f} | {row['tokens']:,} "
            f"| {row['main_peak_kib'] / 1024:.0f} | {worker_peak} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
