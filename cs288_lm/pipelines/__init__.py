"""The given programs, each runnable as ``python -m cs288_lm.pipelines.NAME``: ``pretrain``,
``sweep``, ``generate``, ``encode_file``, ``check_predictions`` and ``report``; ``qa_job`` is the
Part 4 main job behind ``run_finetune_qa.py``. What they share is library code in
:mod:`cs288_lm.training`; no program imports another."""
