"""Our models against independent implementations: Hugging Face GPT-2 and Llama, torch's attention.

Instructor-only (``transformers`` is in requirements-dev.txt). The Hugging Face models are built of a
``ModelConfig``'s sizes by ``cs288_lm.models.hf_interop``, which the benchmarks use too. Also checks
the attention backend switch: the reference path and ``torch.nn.functional.scaled_dot_product_attention``
agree.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import cs288_lm.model
from cs288_lm.common.optional import MissingDependency
from cs288_lm.model import MultiHeadSelfAttentionWithRoPE, TransformerLM, count_parameters
from cs288_lm.models.architectures import ModelConfig, build_model, default_d_ff
from cs288_lm.models.gpt2_model import GPT2Attention
from cs288_lm.models.hf_interop import hf_gpt2, hf_llama, llama_to_ours

REPO_ROOT = Path(__file__).resolve().parent.parent
VOCAB, CONTEXT, D_MODEL, LAYERS, HEADS, D_FF = 97, 24, 48, 2, 4, 80


def random_tokens(batch: int = 3, seq: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_transformer_lm_equals_hugging_face_llama(backend):
    torch.manual_seed(0)
    config = ModelConfig(
        architecture="llama",
        vocab_size=VOCAB,
        context_length=CONTEXT,
        d_model=D_MODEL,
        num_layers=LAYERS,
        num_heads=HEADS,
        d_ff=D_FF,
        rope_theta=10000.0,
    )
    reference = hf_llama(config).eval()
    ours = TransformerLM(VOCAB, CONTEXT, D_MODEL, LAYERS, HEADS, D_FF, 10000.0, attention_backend=backend)
    ours.load_weights(llama_to_ours(reference.state_dict()))
    tokens = random_tokens()
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), reference(tokens).logits, rtol=1e-4, atol=1e-5)
    assert count_parameters(ours) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_gpt2_equals_hugging_face_gpt2(backend):
    torch.manual_seed(0)
    config = ModelConfig(
        architecture="gpt2",
        vocab_size=VOCAB,
        context_length=CONTEXT,
        d_model=D_MODEL,
        num_layers=LAYERS,
        num_heads=HEADS,
        dropout=0.0,
        kernels=backend,
    )
    reference = hf_gpt2(config).eval()
    ours = build_model(config).eval()
    ours.load_hf_state_dict(reference.state_dict())
    tokens = random_tokens()
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), reference(tokens).logits, rtol=1e-4, atol=1e-5)
    assert count_parameters(ours) == sum(p.numel() for p in reference.parameters())
    assert ours.lm_head.weight is ours.wte.weight


def test_gpt2_attention_equals_torch_multihead_attention():
    torch.manual_seed(1)
    ours = GPT2Attention(D_MODEL, HEADS).eval()
    reference = nn.MultiheadAttention(D_MODEL, HEADS, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(ours.c_attn.weight)
        reference.in_proj_bias.copy_(ours.c_attn.bias.uniform_(-0.1, 0.1))
        reference.out_proj.weight.copy_(ours.c_proj.weight)
        reference.out_proj.bias.copy_(ours.c_proj.bias.uniform_(-0.1, 0.1))
        x = torch.randn(2, 11, D_MODEL)
        causal = torch.ones(11, 11, dtype=torch.bool).triu(1)  # True = may NOT attend, in torch's convention
        expected, _ = reference(x, x, x, attn_mask=causal, need_weights=False)
        torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_attention_backends_agree_in_float32(architecture):
    config = ModelConfig(
        architecture=architecture,
        vocab_size=VOCAB,
        context_length=CONTEXT,
        d_model=D_MODEL,
        num_layers=LAYERS,
        num_heads=HEADS,
        kernels="reference",
    )
    torch.manual_seed(0)
    reference = build_model(config)
    fast = build_model(config.replace(kernels="torch"))
    fast.load_state_dict(reference.state_dict())
    tokens = random_tokens(seed=3)
    reference_logits, fast_logits = reference(tokens), fast(tokens)
    assert (reference_logits - fast_logits).abs().max() < 1e-5
    reference_logits.sum().backward()
    fast_logits.sum().backward()
    for (name, a), (_, b) in zip(reference.named_parameters(), fast.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_only_the_reference_backend_runs_the_student_silu(monkeypatch):
    """With kernels="torch" the Llama MLP uses torch's fused SiLU (same function, checked
    above); "reference" runs the student's silu, and the state dicts of both have the same keys."""
    config = ModelConfig(
        architecture="llama",
        vocab_size=VOCAB,
        context_length=CONTEXT,
        d_model=D_MODEL,
        num_layers=LAYERS,
        num_heads=HEADS,
        kernels="reference",
    )
    reference, fast = build_model(config), build_model(config.replace(kernels="torch"))
    assert reference.state_dict().keys() == fast.state_dict().keys()

    def student_silu(x):
        raise AssertionError("the student's silu ran")

    monkeypatch.setattr(cs288_lm.model, "silu", student_silu)
    fast(random_tokens())
    with pytest.raises(AssertionError, match="student's silu ran"):
        reference(random_tokens())


def test_rope_attention_backends_agree_with_positions():
    torch.manual_seed(2)
    reference = MultiHeadSelfAttentionWithRoPE(D_MODEL, HEADS, CONTEXT, 10000.0, "reference")
    fast = MultiHeadSelfAttentionWithRoPE(D_MODEL, HEADS, CONTEXT, 10000.0, "torch")
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(2, 9, D_MODEL)
    positions = torch.tensor([list(range(3, 12)), list(range(9))])
    assert (reference(x, positions) - fast(x, positions)).abs().max() < 1e-5


def test_gpt2_dropout_is_active_only_in_training():
    config = ModelConfig(
        architecture="gpt2",
        vocab_size=VOCAB,
        context_length=CONTEXT,
        d_model=D_MODEL,
        num_layers=LAYERS,
        num_heads=HEADS,
        dropout=0.5,
    )
    model = build_model(config)
    tokens = random_tokens()
    model.eval()
    assert torch.equal(model(tokens), model(tokens))
    model.train()
    assert not torch.equal(model(tokens), model(tokens))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"architecture": "mamba"}, "unknown architecture"),
        ({"kernels": "flash"}, "unknown kernels"),
        ({"d_model": 50}, "not divisible"),
        ({"architecture": "gpt2", "d_ff": 100}, "4 x d_model"),
        ({"dropout": 0.1}, "no dropout"),
        ({"num_layers": 0}, "num_layers must be positive"),
    ],
)
def test_model_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{"vocab_size": VOCAB, "d_model": D_MODEL, "num_heads": HEADS, **changes})


def test_default_d_ff_is_about_eight_thirds_and_a_multiple_of_64():
    assert default_d_ff(512) == 1344 and default_d_ff(768) == 2048 and default_d_ff(48) == 128


def test_hf_interop_imports_without_transformers_and_checks_the_architecture():
    """Importing the module needs only torch (it ships with the handout); the builders refuse a
    config of the other architecture."""
    code = "import sys, cs288_lm.models.hf_interop; print(sorted({'transformers', 'safetensors'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"
    with pytest.raises(ValueError, match="needs a llama ModelConfig"):
        hf_llama(ModelConfig(architecture="gpt2", vocab_size=VOCAB, d_model=D_MODEL, num_heads=HEADS))
    with pytest.raises(ValueError, match="needs a gpt2 ModelConfig"):
        hf_gpt2(ModelConfig(architecture="llama", vocab_size=VOCAB, d_model=D_MODEL, num_heads=HEADS))


def test_hf_interop_names_the_missing_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed: importing it fails
    config = ModelConfig(architecture="llama", vocab_size=VOCAB, d_model=D_MODEL, num_heads=HEADS)
    with pytest.raises(MissingDependency, match=r"'transformers' \(pip install transformers\)"):
        hf_llama(config)
