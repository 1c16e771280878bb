"""Given helpers below the student modules: they import nothing from ``cs288_lm`` outside this
package, and student modules may import them (pre-tokenization, the GPT-2 vocabulary and merges
files, the QA question generator and its audit, predictions files, plots, optional libraries, the
config fields with help text that every layer's configs declare, a module's eval mode for a block)."""
