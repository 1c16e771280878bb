"""cs288_lm: build your own language model (the CS288 assignment).

The modules directly in this folder are the ones students write (the handout replaces their
solution blocks with stubs): ``tokenizer``, ``bpe``, ``model``, ``nn_utils``, ``optimizer``, ``data``,
``checkpointing``, ``sampling``, ``datasets``, ``qa_model`` and ``prompting``. The sub-packages are
given, in layers:

* :mod:`cs288_lm.common`: formats and data helpers below the student modules, which may import
  them (pre-tokenization, the GPT-2 file format, the QA questions, predictions files, plots);
* :mod:`cs288_lm.models`: models and decoding helpers built from the student layers (the
  architecture switch, GPT-2, the key/value cache);
* :mod:`cs288_lm.training`: library code for the programs (settings, run folders, token files,
  loading checkpoints, the pretraining and fine-tuning loops, the Part 4 main job's stages);
* :mod:`cs288_lm.analysis`: the measurements behind the report;
* :mod:`cs288_lm.reporting`: the analysis report, one module per section, above ``training`` and
  ``analysis``;
* :mod:`cs288_lm.pipelines`: the programs run from the command line (pretraining, sweeps,
  sampling, tokenizer training, the Part 4 main job, encoding files, the analysis report), thin
  layers over the rest; no program imports another.
"""
