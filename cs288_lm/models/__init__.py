"""Given models built from the student layers of :mod:`cs288_lm.model`: the architecture switch
(:mod:`~cs288_lm.models.architectures`), GPT-2 (:mod:`~cs288_lm.models.gpt2_model`), the key/value
cache for decoding (:mod:`~cs288_lm.models.kv_cache`, which ``cs288_lm.sampling`` uses) and the
Hugging Face equivalents of our models (:mod:`~cs288_lm.models.hf_interop`)."""
