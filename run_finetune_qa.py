"""Part 4 end to end: pretrained LM -> fine-tuned multiple-choice head and prompting -> predictions.

    python run_finetune_qa.py --help

The program is :mod:`cs288_lm.pipelines.qa_job`; this script runs it from the repository's root.
"""

from __future__ import annotations

import sys

from cs288_lm.pipelines.qa_job import build_parser, main, parse_config

__all__ = ["build_parser", "main", "parse_config"]

if __name__ == "__main__":
    sys.exit(main())
