"""Given programs on top of the student modules, each runnable as ``python -m
cs288_lm.pipelines.NAME``: ``pretrain``, ``sweep``, ``generate``, ``encode_file`` and ``report``;
``finetune`` and ``qa_job`` are the Part 4 main job behind ``run_finetune_qa.py``. Shared pieces:
``settings`` (configurations, paths, devices), ``token_files`` (cached token arrays) and
``loading`` (models from checkpoints)."""
