"""Part 4 end to end: pretrained LM -> fine-tuned multiple-choice head and prompting -> predictions.

    python run_finetune_qa.py                                  # bundled data, default small LM
    python run_finetune_qa.py --checkpoint out/pretrain/checkpoints/best.pt
    python run_finetune_qa.py --config configs/qa_tinystories_full.json --device cuda
    python -m cs288_lm.pipelines.qa_job ...                    # the same program

Writes finetuned_predictions.json and prompting_predictions.json (the files to submit) and prints
the dev accuracy of each method next to the shipped baselines (baseline_metrics.json), with the
points each would earn. A second run reuses the tokenizer, the LM, the fine-tuned head and the
prompting choice. See cs288_lm/training/qa_job.py for the stages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from cs288_lm.training.finetune import FinetuneConfig
from cs288_lm.training.qa_job import QAJobConfig, run_qa_job
from cs288_lm.training.settings import HelpFormatter, add_config_flag, config_from_settings, read_settings_file
from cs288_lm.training.train_config import TrainConfig

FULL_TINYSTORIES = ("TinyStoriesV2-GPT4-train.txt", "TinyStoriesV2-GPT4-valid.txt")


def build_parser() -> argparse.ArgumentParser:
    """The command line; the flags that set a config field take its help and default from the field."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--config", type=Path, help="JSON object of QAJobConfig settings (flags override it)")
    add_config_flag(parser, QAJobConfig, "checkpoint")
    parser.add_argument(
        "--tinystories-dir",
        type=Path,
        help=f"pretrain on the full TinyStories files in this directory ({', '.join(FULL_TINYSTORIES)}) "
        "(default: none, the bundled sample)",
    )
    add_config_flag(parser, TrainConfig, "out_dir", flag="--pretrain-out", dest="pretrain_out")
    add_config_flag(parser, QAJobConfig, "device")
    add_config_flag(parser, FinetuneConfig, "epochs")
    add_config_flag(parser, QAJobConfig, "out_dir")
    add_config_flag(parser, QAJobConfig, "predictions_dir")
    parser.add_argument(
        "--write-baseline", type=Path, metavar="PATH", help="also write the dev (and test) accuracies to this JSON file"
    )
    return parser


def parse_config(argv: list[str] | None = None) -> tuple[QAJobConfig, argparse.Namespace]:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = read_settings_file(args.config) if args.config is not None else {}
        config = config_from_settings(QAJobConfig, settings, str(args.config))  # names and types of the file's settings
    except ValueError as error:
        parser.error(str(error))
    pretrain, finetune = dict(config.pretrain), dict(config.finetune)
    if args.tinystories_dir is not None:
        pretrain["train_data"], pretrain["valid_data"] = (str(args.tinystories_dir / name) for name in FULL_TINYSTORIES)
    if hasattr(args, "pretrain_out"):
        pretrain["out_dir"] = args.pretrain_out
    if hasattr(args, "epochs"):
        finetune["epochs"] = args.epochs
    flags = {
        name: getattr(args, name)
        for name in ("checkpoint", "device", "out_dir", "predictions_dir")
        if hasattr(args, name)
    }
    try:
        config = dataclasses.replace(config, **flags, pretrain=pretrain, finetune=finetune)
        config.pretrain_config(), config.finetune_config()  # check the nested settings now
    except ValueError as error:
        parser.error(str(error))
    return config, args


def main(argv: list[str] | None = None) -> int:
    config, args = parse_config(argv)
    try:
        summary = run_qa_job(config)
    except (FileNotFoundError, ValueError) as error:  # includes bad question and predictions files
        print(f"error: {error}", file=sys.stderr)
        return 1
    except NotImplementedError as error:  # the handout before the code it needs is written
        print(f"error: not implemented yet: {error}", file=sys.stderr)
        return 1
    if args.write_baseline is not None:
        baseline = {
            key: value
            for key, value in summary.items()
            if key.endswith("accuracy") or key in ("prompting_setup", "prompting_model")
        }
        baseline["command"] = "python run_finetune_qa.py " + " ".join(argv if argv is not None else sys.argv[1:])
        args.write_baseline.write_text(json.dumps(baseline, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.write_baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
