"""cs288_lm: build your own language model (reference solution of the CS288 assignment)."""
