"""Pretrain a language model on a text corpus (Part 4), on one CPU or several GPUs.

    python -m cs288_lm.pipelines.pretrain                # small model, bundled TinyStories, a few minutes on CPU
    python -m cs288_lm.pipelines.pretrain --resume       # continue the run in --out-dir
    python -m cs288_lm.pipelines.pretrain --config configs/tinystories.json \\
        --train-data data/TinyStoriesV2-GPT4-train.txt
    torchrun --nproc_per_node=4 -m cs288_lm.pipelines.pretrain --config ...   # DistributedDataParallel

Settings come from the defaults of ``TrainConfig``, then a JSON ``--config`` file (the model's
settings under ``"model"``), then flags (one per setting). The run writes to ``--out-dir``:
``config.json``, ``metrics.jsonl`` (one JSON record per logged step), ``loss.png`` and
``perplexity.png``, and ``checkpoints/latest.pt`` and ``checkpoints/best.pt`` (by validation loss);
see cs288_lm/training/run_dir.py for the layout and cs288_lm/training/trainer.py for resuming,
stopping and several processes.
"""

from __future__ import annotations

import argparse
import sys

from cs288_lm.training.distributed import peer_failed
from cs288_lm.training.train_config import TrainConfig, parse_train_config, train_parser
from cs288_lm.training.trainer import TrainingDiverged, run


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``--config`` and one flag per setting of ``TrainConfig``."""
    return train_parser(__doc__.split("\n\n")[0])


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """The settings of a run: ``TrainConfig``'s defaults, then ``--config FILE``, then flags.
    Bad settings exit with an argparse error (code 2)."""
    return parse_train_config(build_parser(), argv)


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    try:
        run(config)
    except (FileNotFoundError, ValueError, TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except NotImplementedError as error:  # the handout before Parts 2 and 3 are written
        print(f"error: not implemented yet: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a file that cannot be written or read: the path and the reason
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    except RuntimeError as error:
        if not peer_failed(error):
            raise
        print(f"error: another process of this run stopped; its output says why ({error})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
