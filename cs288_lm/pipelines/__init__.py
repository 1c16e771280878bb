"""The given programs, each runnable as ``python -m cs288_lm.pipelines.NAME``: ``pretrain``,
``sweep``, ``generate``, ``encode_file``, ``train_bpe``, ``check_predictions``, ``report`` and
``qa_job`` (the Part 4 main job, also ``run_finetune_qa.py``). Each is a thin command line: parsing,
error messages and exit codes over library code in :mod:`cs288_lm.training` (and below); no program
imports another."""
