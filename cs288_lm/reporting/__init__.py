"""The analysis report behind ``python -m cs288_lm.pipelines.report`` (given): library code that the
program drives, above the measurements of :mod:`cs288_lm.analysis` and the run folders of
:mod:`cs288_lm.training`.

* :mod:`~cs288_lm.reporting.writer`: the Markdown, with tables also as CSV and figures as PNG;
* :mod:`~cs288_lm.reporting.context`: the inputs (checkpoint and run folder, model, tokenizer,
  texts), read and checked before any section runs;
* one module per section, each measuring and writing its part: :mod:`~cs288_lm.reporting.card`,
  :mod:`~cs288_lm.reporting.sweep`, :mod:`~cs288_lm.reporting.sampling`,
  :mod:`~cs288_lm.reporting.attention`, :mod:`~cs288_lm.reporting.embeddings`,
  :mod:`~cs288_lm.reporting.compare`;
* :mod:`~cs288_lm.reporting.sections`: their order, names and titles;
  :mod:`~cs288_lm.reporting.document`: the heading and the timings around them;
  :mod:`~cs288_lm.reporting.threads`: torch's CPU threads while measuring.
"""
