"""Given library code below the programs of :mod:`cs288_lm.pipelines`: settings and command-line
flags (``settings``), a pretraining run's folder (``run_dir``), encoding text files and caching
token arrays (``encoding``, ``token_files``), models from checkpoints (``loading``) and the
fine-tuning loop (``finetune``)."""
