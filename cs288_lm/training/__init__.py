"""Given library code below the programs of :mod:`cs288_lm.pipelines`: settings and command-line
flags (``settings``), the pretraining run's settings (``train_config``: ``TrainConfig`` with its
nested ``ModelConfig``), the trainer (``trainer``, with ``distributed`` and ``rng``), a pretraining
run's folder and which checkpoint holds its model (``run_dir``), encoding text files and caching
token arrays (``encoding``, ``token_files``), FLOPs and MFU (``flops``), models from checkpoints
(``loading``), the fine-tuning loop (``finetune``) and the Part 4 main job's stages (``qa_job``)."""
