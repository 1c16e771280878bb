"""cs288_lm: build your own language model (the CS288 assignment)."""
