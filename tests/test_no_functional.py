"""Parts 2 and 3 written from tensor operations (public tests).

``cs288_lm/model.py`` and ``cs288_lm/nn_utils.py`` may use ``torch`` tensor operations and
``einops``, but not ``torch.nn.functional`` or the ``torch.nn`` layers (``nn.Linear``,
``nn.Embedding``, ...); ``nn.Module``, ``nn.Parameter``, ``nn.ModuleList`` and ``nn.init`` are fine.
The same goes for what those would give away: torch's own softmax (``torch.softmax``,
``Tensor.softmax``, ``torch.special.softmax``), ``torch.nn.utils.clip_grad_norm_`` and, for
``AdamW``, ``torch.optim``'s Adam and AdamW.

Every test computes its expected values first (with ``torch.nn.functional`` and friends), then runs
the adapter inside :func:`forbidden_shortcuts`, where each of those functions raises
:class:`ForbiddenShortcut` naming itself ("Part 2 forbids torch.nn.functional.linear: implement it
with tensor operations"). A solution that calls one fails here even when its values are right,
under whatever name it reaches them (a reference kept from before the block, ``torch._C._nn``,
``torch.ops.aten``), and even when it catches the exception.

Select a part with ``pytest -k``: ``linear``, ``embedding``, ``rmsnorm``, ``silu``, ``swiglu``,
``rope``, ``softmax``, ``sdpa``, ``mha``, ``transformer_block``, ``transformer_lm``,
``cross_entropy``, ``perplexity``, ``token_accuracy``, ``gradient_clipping``, ``adamw``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import math
import re
import sys
from collections.abc import Callable, Iterator
from types import CodeType, ModuleType
from typing import NoReturn

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode_stack

import adapters
from tests.graded import check_close, check_equal

# The helpers of torch.nn.functional that are not operations (type hints, dispatch machinery).
_FUNCTIONAL_HELPERS = {
    "Optional",
    "assert_int_or_pair",
    "boolean_dispatch",
    "handle_torch_function",
    "has_torch_function",
    "has_torch_function_unary",
    "has_torch_function_variadic",
}
# torch.nn classes that are no layer: students may build with them.
_ALLOWED_MODULE_CLASSES = {"Module", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict", "Sequential"}
# The same operations under other names.
_ALIASES: list[tuple[object, str, tuple[str, ...]]] = [
    (
        torch,
        "torch",
        (
            "softmax",
            "log_softmax",
            "_softmax",
            "_log_softmax",
            "embedding",
            "embedding_bag",
            "layer_norm",
            "rms_norm",
            "group_norm",
            "native_layer_norm",
        ),
    ),
    (torch.Tensor, "torch.Tensor", ("softmax", "log_softmax")),
    (torch.special, "torch.special", ("softmax", "log_softmax")),
    (
        torch._C._nn,
        "torch._C._nn",
        (
            "linear",
            "silu",
            "gelu",
            "scaled_dot_product_attention",
            "cross_entropy_loss",
            "nll_loss",
            "nll_loss_nd",
            "nll_loss2d",
        ),
    ),
    (
        torch.nn.utils,
        "torch.nn.utils",
        ("clip_grad_norm_", "clip_grad_norm", "clip_grads_with_norm_", "get_total_norm"),
    ),
    (
        torch.nn.utils.clip_grad,
        "torch.nn.utils.clip_grad",
        ("clip_grad_norm_", "clip_grad_norm", "clip_grads_with_norm_", "get_total_norm"),
    ),
    (torch.optim.Adam, "torch.optim.Adam", ("step",)),
    (torch.optim.AdamW, "torch.optim.AdamW", ("step",)),
    (sys.modules["torch.optim.adam"], "torch.optim.adam", ("adam",)),
    (sys.modules["torch.optim.adamw"], "torch.optim.adamw", ("adamw",)),
    (torch.optim._functional, "torch.optim._functional", ("adam", "adamw")),
]


class ForbiddenShortcut(RuntimeError):
    """A function the student modules must not call was called."""


def forbidden_targets() -> list[tuple[object, str, str]]:
    """``(owner, attribute, name)`` of every function that :func:`forbidden_shortcuts` makes raise:
    the operations of ``torch.nn.functional``, the ``forward`` of every ``torch.nn`` layer, and the
    aliases above."""
    targets: list[tuple[object, str, str]] = []
    for name in dir(F):
        value = getattr(F, name)
        if name.startswith("_") or name in _FUNCTIONAL_HELPERS or not callable(value) or isinstance(value, type):
            continue
        targets.append((F, name, f"torch.nn.functional.{name}"))
    for name in dir(nn):
        value = getattr(nn, name)
        if isinstance(value, type) and issubclass(value, nn.Module) and name not in _ALLOWED_MODULE_CLASSES:
            targets.append((value, "forward", f"torch.nn.{name}"))
    for owner, prefix, names in _ALIASES:
        targets += [(owner, name, f"{prefix}.{name}") for name in names if hasattr(owner, name)]
    return targets


def student_modules() -> list[ModuleType]:
    """The modules of Parts 2 and 3, reached through the adapters."""
    return [adapters._model, adapters.nn_utils, adapters._optimizer, adapters._data, adapters._checkpointing]


@contextlib.contextmanager
def forbidden_shortcuts(part: str) -> Iterator[None]:
    """Inside the block, every forbidden function raises :class:`ForbiddenShortcut`.

    Names the student modules bound to one of them at import (``from torch.nn.functional import
    softmax``) are replaced too. References kept from before the block (``stashed = torch.softmax``,
    ``torch._C._nn.linear``, ``torch.ops.aten._softmax.default``, ``torch.optim.adam._single_tensor_adam``)
    are refused below the attributes: see :func:`watching`. A forbidden call fails the test even when
    the code that made it catches the exception: the block raises again when it ends. Everything is
    put back when the block ends.
    """
    watch = Watch(part)
    targets = forbidden_targets()
    originals = {id(getattr(owner, attribute)): name for owner, attribute, name in targets if attribute != "forward"}
    with pytest.MonkeyPatch.context() as patch:
        for owner, attribute, name in targets:
            patch.setattr(owner, attribute, watch.refusal(name))
        for module in student_modules():
            for attribute, value in list(vars(module).items()):
                if id(value) in originals:
                    patch.setattr(module, attribute, watch.refusal(originals[id(value)]))
        with watching(watch, forbidden_functions(targets)):
            yield


# ---------------------------------------------------------------------------------------------
# Below the attributes: what a reference kept from before the block still reaches
# ---------------------------------------------------------------------------------------------

# Torch functions refused under any name that reaches a torch function mode (C bindings such as
# torch._C._nn.linear, Tensor methods, torch.ops overloads): their names, without the overload.
_FORBIDDEN_FUNCTION_NAMES = frozenset(
    {
        "softmax",
        "log_softmax",
        "_softmax",
        "_log_softmax",
        "special_softmax",
        "special_log_softmax",
        "linear",
        "silu",
        "silu_",
        "gelu",
        "glu",
        "embedding",
        "embedding_bag",
        "_embedding_bag",
        "layer_norm",
        "native_layer_norm",
        "rms_norm",
        "_fused_rms_norm",
        "group_norm",
        "native_group_norm",
        "scaled_dot_product_attention",
        "cross_entropy_loss",
        "nll_loss",
        "nll_loss_nd",
        "nll_loss2d",
    }
)
# Kernels that only forbidden functions reach, whatever the route (a dispatch mode sees them after
# composite ops such as aten::linear have decomposed: linear itself arrives as aten::mm, like x @ W.T).
_FORBIDDEN_KERNELS = frozenset(
    {
        "aten::_softmax",
        "aten::_log_softmax",
        "aten::silu",
        "aten::silu_",
        "aten::gelu",
        "aten::gelu_",
        "aten::glu",
        "aten::embedding",
        "aten::_embedding_bag",
        "aten::native_layer_norm",
        "aten::_fused_rms_norm",
        "aten::native_group_norm",
        "aten::nll_loss_forward",
        "aten::nll_loss2d_forward",
    }
)
_FORBIDDEN_PREFIXES = ("_scaled_dot_product", "aten::_scaled_dot_product", "_fused_adam", "aten::_fused_adam")
# Python modules of torch whose every function is refused: AdamW and clip_grad_norm_ are made of
# elementwise kernels a student's version uses too, so only their code objects tell them apart.
_FORBIDDEN_SOURCES = (
    "torch.nn.functional",
    "torch.nn.utils.clip_grad",
    "torch.optim.adam",
    "torch.optim.adamw",
    "torch.optim._functional",
)


class Watch:
    """The forbidden calls seen in one block, and the refusal that records them."""

    def __init__(self, part: str) -> None:
        self.part = part
        self.seen: list[str] = []

    def refuse(self, name: str) -> NoReturn:
        self.seen.append(name)
        raise ForbiddenShortcut(
            f"{self.part} forbids {name}: implement it with tensor operations (torch and einops; "
            "torch.nn.functional and the torch.nn layers are not allowed)"
        )

    def refusal(self, name: str) -> Callable[..., NoReturn]:
        def refuse(*args, **kwargs):
            self.refuse(name)

        return refuse

    def verdict(self, intact: bool) -> None:
        """Raise if a forbidden call was made (even one whose exception was caught) or the checks were turned off."""
        if self.seen:
            self.refuse(self.seen[0])
        if not intact:
            raise ForbiddenShortcut(
                f"{self.part} forbids turning off the checks of this test (the torch function mode, the "
                "dispatch mode or the profile function it installs)"
            )


def forbidden_functions(targets: list[tuple[object, str, str]]) -> dict[int, str]:
    """Ids of the patched functions' originals, by name; torch's own tensor operations that
    torch.nn.functional merely re-exports (torch.conv2d, torch.cosine_similarity) stay allowed."""
    operations = {id(getattr(torch, name)) for name in dir(torch) if not name.startswith("_")}
    operations |= {id(getattr(torch.Tensor, name)) for name in dir(torch.Tensor) if not name.startswith("_")}
    found = {}
    for owner, attribute, name in targets:
        value = getattr(owner, attribute)
        if attribute != "forward" and (owner is not F or id(value) not in operations):
            found[id(value)] = name
    return found


def function_name(func: object) -> str:
    """How a message names what reached the torch function mode."""
    if isinstance(func, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return f"torch.ops.{func}"
    name = getattr(func, "__name__", repr(func))
    if type(func).__name__ == "method_descriptor":
        return f"torch.Tensor.{name}"
    return f"{getattr(func, '__module__', None) or 'torch'}.{name}"


# Families of fused operations, whatever the exact kernel: torch has more entry points to its own
# softmax, norms and attention than any list (torch._masked_softmax, torch._sparse_softmax,
# torch._native_multi_head_attention, their backward kernels, ...).
_FORBIDDEN_FAMILIES = re.compile(
    r"softmax|layer_norm|rms_norm|group_norm|batch_norm|instance_norm|scaled_dot_product|multi_head_attention"
    r"|transformer_encoder|embedding|silu|gelu|glu|nll_loss|cross_entropy|fused_adam|linear"
)


def is_forbidden_name(name: str) -> bool:
    return (
        name in _FORBIDDEN_FUNCTION_NAMES
        or name in _FORBIDDEN_KERNELS
        or name.startswith(_FORBIDDEN_PREFIXES)
        or bool(_FORBIDDEN_FAMILIES.search(name.removeprefix("aten::")))
    )


class RefuseFunctions(TorchFunctionMode):
    """Consulted inside torch's C bindings, so a forbidden function kept under another name still arrives here."""

    def __init__(self, watch: Watch, forbidden: dict[int, str]) -> None:
        super().__init__()
        self.watch, self.forbidden = watch, forbidden

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = self.forbidden.get(id(func))
        if name is None and is_forbidden_name(getattr(func, "__name__", "").split(".")[0]):
            name = function_name(func)
        if name is not None:
            self.watch.refuse(name)
        return func(*args, **(kwargs or {}))


class RefuseKernels(TorchDispatchMode):
    """Sees the kernels below autograd: the fused ones only forbidden functions reach."""

    def __init__(self, watch: Watch) -> None:
        super().__init__()
        self.watch = watch

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if is_forbidden_name(func.name()):
            self.watch.refuse(f"torch's {func.name()} kernel")
        return func(*args, **(kwargs or {}))


def forbidden_code() -> dict[CodeType, str]:
    """Every code object defined in :data:`_FORBIDDEN_SOURCES` (nested functions too), by qualified name."""
    found: dict[CodeType, str] = {}

    def add(code: CodeType, module: str) -> None:
        if code not in found:
            found[code] = f"{module}.{getattr(code, 'co_qualname', code.co_name)}"  # co_qualname: Python 3.11+"
            for constant in code.co_consts:
                if isinstance(constant, CodeType):
                    add(constant, module)

    for module_name in _FORBIDDEN_SOURCES:
        module = importlib.import_module(module_name)
        values = list(vars(module).values())
        values += [v for cls in values if isinstance(cls, type) for v in vars(cls).values()]
        for value in values:
            value = getattr(value, "__func__", value)  # staticmethod, classmethod
            while value is not None:
                code = getattr(value, "__code__", None)
                if isinstance(code, CodeType) and code.co_filename == module.__file__:
                    add(code, module_name)
                value = getattr(value, "__wrapped__", None)
    return found


def verify_modes(functions: RefuseFunctions, kernels: RefuseKernels) -> bool:
    """Whether both modes are still on their stacks (code in the block may pop them)."""
    return any(mode is functions for mode in _get_current_function_mode_stack()) and any(
        mode is kernels for mode in _get_current_dispatch_mode_stack()
    )


@contextlib.contextmanager
def watching(watch: Watch, forbidden: dict[int, str]) -> Iterator[None]:
    """A torch function mode, a dispatch mode and a profile function refuse forbidden calls; when the
    block ends, any call they saw, or any of them missing, fails it."""
    codes = forbidden_code()

    def profile(frame, event, arg):
        if event == "call" and (name := codes.get(frame.f_code)) is not None:
            watch.refuse(name)

    functions, kernels = RefuseFunctions(watch, forbidden), RefuseKernels(watch)
    previous = sys.getprofile()
    functions.__enter__()
    kernels.__enter__()
    sys.setprofile(profile)
    try:
        yield
    finally:
        intact = sys.getprofile() is profile and verify_modes(functions, kernels)
        sys.setprofile(previous)
        with contextlib.suppress(Exception):  # a mode popped in the block: nothing left to pop
            kernels.__exit__(None, None, None)
        with contextlib.suppress(Exception):
            functions.__exit__(None, None, None)
    watch.verdict(intact)


def bound_to_functional(module: ModuleType) -> list[str]:
    """The module-level names of ``module`` bound to ``torch.nn.functional`` or one of its functions."""
    functions = {id(getattr(F, attribute)) for owner, attribute, _ in forbidden_targets() if owner is F}
    return sorted(
        name for name, value in vars(module).items() if value is F or (callable(value) and id(value) in functions)
    )


# ---------------------------------------------------------------------------------------------
# Seeded data and references (computed before the forbidden block)
# ---------------------------------------------------------------------------------------------

D_MODEL, NUM_HEADS, D_FF, VOCAB, THETA = 32, 4, 48, 50, 10000.0


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def matrices(seed: int, *shapes: tuple[int, int]) -> list[torch.Tensor]:
    """Weights N(0, 1 / d_in): activations stay O(1)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) / math.sqrt(shape[1]) for shape in shapes]


def rotate(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE, rotate-half pairing (dimension k with k + d/2), angles in float64."""
    half = x.shape[-1] // 2
    frequencies = theta ** (-torch.arange(half, dtype=torch.float64) * 2 / x.shape[-1])
    angles = positions.to(torch.float64)[..., None] * frequencies
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half:]
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)


def reference_attention(x, wq, wk, wv, wo, num_heads, theta=None, positions=None) -> torch.Tensor:
    """Causal multi-head self-attention with torch.nn.functional, RoPE on queries and keys if theta."""

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (num_heads, -1)).transpose(-3, -2)

    q, k, v = heads(F.linear(x, wq)), heads(F.linear(x, wk)), heads(F.linear(x, wv))
    if theta is not None:
        positions = torch.arange(x.shape[-2]) if positions is None else positions.unsqueeze(-2)
        q, k = rotate(q, positions, theta), rotate(k, positions, theta)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.linear(out.transpose(-3, -2).flatten(-2), wo)


def reference_block(x: torch.Tensor, weights: dict[str, torch.Tensor], prefix: str = "") -> torch.Tensor:
    w = {key.removeprefix(prefix): value for key, value in weights.items() if key.startswith(prefix)}
    wq, wk, wv, wo = (w[f"attn.{name}.weight"] for name in ("q_proj", "k_proj", "v_proj", "output_proj"))
    h = x + reference_attention(F.rms_norm(x, (x.shape[-1],), w["ln1.weight"], 1e-5), wq, wk, wv, wo, NUM_HEADS, THETA)
    normed = F.rms_norm(h, (h.shape[-1],), w["ln2.weight"], 1e-5)
    gated = F.silu(F.linear(normed, w["ffn.w1.weight"])) * F.linear(normed, w["ffn.w3.weight"])
    return h + F.linear(gated, w["ffn.w2.weight"])


def block_weights(seed: int, prefix: str = "") -> dict[str, torch.Tensor]:
    names = [f"attn.{name}.weight" for name in ("q_proj", "k_proj", "v_proj", "output_proj")]
    shapes = [(D_MODEL, D_MODEL)] * 4 + [(D_FF, D_MODEL), (D_MODEL, D_FF), (D_FF, D_MODEL)]
    weights = dict(
        zip([*names, "ffn.w1.weight", "ffn.w2.weight", "ffn.w3.weight"], matrices(seed, *shapes), strict=True)
    )
    weights["ln1.weight"] = 1.0 + randn(D_MODEL, seed=seed + 1, scale=0.1)
    weights["ln2.weight"] = 1.0 + randn(D_MODEL, seed=seed + 2, scale=0.1)
    return {prefix + key: value for key, value in weights.items()}


# ---------------------------------------------------------------------------------------------
# The rule itself
# ---------------------------------------------------------------------------------------------


def test_linear_forbidden_shortcuts_raise_a_clear_error():
    """The block refuses what it should and leaves alone what the modules may use."""
    x = randn(3, 4, seed=0)
    calls = [
        ("torch.nn.functional.linear", lambda: F.linear(x, x)),
        ("torch.nn.functional.softmax", lambda: torch.nn.functional.softmax(x, dim=-1)),
        ("torch.softmax", lambda: torch.softmax(x, -1)),
        ("torch.Tensor.softmax", lambda: x.softmax(-1)),
        ("torch.nn.Linear", lambda: nn.Linear(4, 2)(x)),
        ("torch.nn.RMSNorm", lambda: nn.RMSNorm(4)(x)),
        ("torch.nn.utils.clip_grad_norm_", lambda: torch.nn.utils.clip_grad_norm_([nn.Parameter(x)], 1.0)),
    ]
    for name, call in calls:
        refused = pytest.raises(ForbiddenShortcut, match=f"Part 2 forbids {name}: implement it with tensor operations")
        with refused, forbidden_shortcuts("Part 2"):
            call()
    with forbidden_shortcuts("Part 2"):
        allowed = torch.sigmoid(x) + torch.logsumexp(x, -1, keepdim=True) + torch.exp(x).sum()
        layer = nn.Module()
        layer.weight = nn.Parameter(torch.empty(2, 4))
        nn.init.trunc_normal_(layer.weight, std=0.1, a=-0.3, b=0.3)
    # Everything is back after the block.
    check_close(F.linear(x, x), x @ x.T, rtol=1e-6, atol=1e-6)
    check_close(allowed, torch.sigmoid(x) + torch.logsumexp(x, -1, keepdim=True) + torch.exp(x).sum())


def test_transformer_lm_modules_keep_functional_out_of_module_scope():
    """The modules of Parts 2 and 3 (model, nn_utils, optimizer, data, checkpointing) bind neither
    torch.nn.functional nor its functions at module level; the given fast path of ``attend`` imports
    it inside the function, where students do not write."""
    bound = {module.__name__: names for module in student_modules() if (names := bound_to_functional(module))}
    check_equal(bound, {}, message=f"module-level names bound to torch.nn.functional or its functions: {bound}")


# ---------------------------------------------------------------------------------------------
# Part 2
# ---------------------------------------------------------------------------------------------


def test_linear_without_functional():
    (weight,) = matrices(1, (24, D_MODEL))
    x = randn(2, 5, D_MODEL, seed=2)
    expected = F.linear(x, weight)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_linear(D_MODEL, 24, weight, x)
    check_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_embedding_without_functional():
    weight = randn(VOCAB, D_MODEL, seed=3)
    token_ids = torch.randint(0, VOCAB, (3, 7), generator=torch.Generator().manual_seed(4))
    expected = F.embedding(token_ids, weight)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_embedding(VOCAB, D_MODEL, weight, token_ids)
    check_close(actual, expected, rtol=0, atol=0)


def test_rmsnorm_without_functional():
    gain = 1.0 + randn(D_MODEL, seed=5, scale=0.1)
    x = randn(2, 6, D_MODEL, seed=6, scale=3.0)
    expected = F.rms_norm(x, (D_MODEL,), gain, 1e-5)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_rmsnorm(D_MODEL, 1e-5, gain, x)
    check_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_silu_without_functional():
    x = randn(4, 9, seed=7, scale=4.0)
    expected = F.silu(x)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_silu(x)
    check_close(actual, expected, rtol=1e-6, atol=1e-6)


def test_swiglu_without_functional():
    w1, w2, w3 = matrices(8, (D_FF, D_MODEL), (D_MODEL, D_FF), (D_FF, D_MODEL))
    x = randn(2, 5, D_MODEL, seed=9)
    expected = F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_swiglu(D_MODEL, D_FF, w1, w2, w3, x)
    check_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_rope_without_functional():
    x = randn(2, 3, 10, 16, seed=10)
    positions = torch.tensor([0, 1, 2, 3, 5, 8, 13, 21, 34, 55])
    expected = rotate(x, positions, THETA)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_rope(16, THETA, 64, x, positions)
    check_close(actual, expected, rtol=1e-4, atol=1e-4)  # float32 angles: about 4e-6 off at position 55


def test_softmax_without_functional():
    x = randn(3, 5, 7, seed=11, scale=5.0)
    x[0, 0] += 1000.0  # stability is the student's job, without torch's softmax
    for dim in (-1, 0, 1):
        expected = F.softmax(x, dim=dim)
        with forbidden_shortcuts("Part 2"):
            actual = adapters.run_softmax(x, dim)
        check_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_sdpa_without_functional():
    q, k, v = randn(2, 3, 6, 8, seed=12), randn(2, 3, 9, 8, seed=13), randn(2, 3, 9, 5, seed=14)
    mask = torch.rand(6, 9, generator=torch.Generator().manual_seed(15)) > 0.4
    mask[:, 0] = True  # every query sees a key
    unmasked = F.scaled_dot_product_attention(q, k, v)
    masked = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with forbidden_shortcuts("Part 2"):
        actual_unmasked = adapters.run_scaled_dot_product_attention(q, k, v)
        actual_masked = adapters.run_scaled_dot_product_attention(q, k, v, mask)
    check_close(actual_unmasked, unmasked, rtol=1e-5, atol=1e-5)
    check_close(actual_masked, masked, rtol=1e-5, atol=1e-5)


def test_mha_without_functional():
    weights = matrices(16, *[(D_MODEL, D_MODEL)] * 4)
    x = randn(2, 7, D_MODEL, seed=17)
    expected = reference_attention(x, *weights, NUM_HEADS)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_multihead_self_attention(D_MODEL, NUM_HEADS, *weights, x)
    check_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_mha_rope_without_functional():
    weights = matrices(18, *[(D_MODEL, D_MODEL)] * 4)
    x = randn(2, 7, D_MODEL, seed=19)
    positions = torch.tensor([[3, 4, 5, 6, 7, 8, 9], [0, 1, 2, 3, 4, 5, 6]])
    implicit = reference_attention(x, *weights, NUM_HEADS, THETA)
    given = reference_attention(x, *weights, NUM_HEADS, THETA, positions)
    with forbidden_shortcuts("Part 2"):
        actual_implicit = adapters.run_multihead_self_attention_with_rope(D_MODEL, NUM_HEADS, 16, THETA, *weights, x)
        actual_given = adapters.run_multihead_self_attention_with_rope(
            D_MODEL, NUM_HEADS, 16, THETA, *weights, x, token_positions=positions
        )
    check_close(actual_implicit, implicit, rtol=1e-5, atol=1e-5)
    check_close(actual_given, given, rtol=1e-5, atol=1e-5)


def test_transformer_block_without_functional():
    weights = block_weights(20)
    x = randn(2, 6, D_MODEL, seed=21)
    expected = reference_block(x, weights)
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_transformer_block(D_MODEL, NUM_HEADS, D_FF, 16, THETA, weights, x)
    check_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_transformer_lm_without_functional():
    weights = {**block_weights(22, "layers.0."), **block_weights(23, "layers.1.")}
    weights["token_embeddings.weight"] = randn(VOCAB, D_MODEL, seed=24)
    weights["final_ln.weight"] = 1.0 + randn(D_MODEL, seed=25, scale=0.1)
    (weights["output.weight"],) = matrices(26, (VOCAB, D_MODEL))
    tokens = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(27))
    x = F.embedding(tokens, weights["token_embeddings.weight"])
    for layer in range(2):
        x = reference_block(x, weights, f"layers.{layer}.")
    expected = F.linear(F.rms_norm(x, (D_MODEL,), weights["final_ln.weight"], 1e-5), weights["output.weight"])
    with forbidden_shortcuts("Part 2"):
        actual = adapters.run_transformer_lm(VOCAB, 16, D_MODEL, 2, NUM_HEADS, D_FF, THETA, weights, tokens)
    check_close(actual, expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Part 3
# ---------------------------------------------------------------------------------------------


def test_log_softmax_without_functional():
    x = randn(4, 11, seed=30, scale=10.0)
    x[1] += 3000.0
    expected = F.log_softmax(x, dim=-1)
    with forbidden_shortcuts("Part 3"):
        actual = adapters.run_log_softmax(x, -1)
    check_close(actual, expected, rtol=1e-5, atol=1e-4)


def test_cross_entropy_without_functional():
    logits = randn(3, 5, 13, seed=31, scale=4.0)
    targets = torch.randint(0, 13, (3, 5), generator=torch.Generator().manual_seed(32))
    targets[0, :2] = -100
    kept_targets = targets.clamp_min(0)
    expected = F.cross_entropy(logits.flatten(0, 1), kept_targets.flatten())
    expected_ignoring = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    ours = logits.clone().requires_grad_(True)
    theirs = logits.clone().requires_grad_(True)
    F.cross_entropy(theirs.flatten(0, 1), targets.flatten(), ignore_index=-100).backward()
    with forbidden_shortcuts("Part 3"):
        actual = adapters.run_cross_entropy(logits, kept_targets)
        actual_ignoring = adapters.run_cross_entropy(ours, targets, ignore_index=-100)
        actual_ignoring.backward()
    check_close(actual, expected, rtol=1e-5, atol=1e-6)
    check_close(actual_ignoring.detach(), expected_ignoring, rtol=1e-5, atol=1e-6)
    check_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-6)


def test_perplexity_without_functional():
    logits = randn(2, 6, 9, seed=33)
    targets = torch.randint(0, 9, (2, 6), generator=torch.Generator().manual_seed(34))
    expected = torch.exp(F.cross_entropy(logits.flatten(0, 1), targets.flatten()))
    with forbidden_shortcuts("Part 3"):
        actual = adapters.run_perplexity(logits, targets)
    check_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_token_accuracy_without_functional():
    logits = randn(3, 8, 5, seed=35)
    targets = torch.randint(0, 5, (3, 8), generator=torch.Generator().manual_seed(36))
    targets[2] = -1
    keep = targets != -1
    expected = ((logits.argmax(-1) == targets) & keep).sum() / keep.sum()
    with forbidden_shortcuts("Part 3"):
        actual = adapters.run_token_accuracy(logits, targets, ignore_index=-1)
    check_close(actual, expected, rtol=1e-6, atol=1e-7)


def test_gradient_clipping_without_clip_grad_norm():
    generator = torch.Generator().manual_seed(37)
    ours = [nn.Parameter(torch.randn(shape, generator=generator)) for shape in [(6, 4), (4,), (3, 2, 2)]]
    for parameter in ours:
        parameter.grad = torch.randn(parameter.shape, generator=generator) * 3.0
    theirs = copy.deepcopy(ours)
    for a, b in zip(ours, theirs, strict=True):
        b.grad = a.grad.clone()
    expected_norm = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    with forbidden_shortcuts("Part 3"):
        norm = adapters.run_gradient_clipping(ours, 1.0)
    check_close(float(norm), expected_norm.item(), rtol=1e-5, atol=0)
    check_close([p.grad for p in ours], [p.grad for p in theirs], rtol=1e-6, atol=1e-6)


def test_adamw_without_torch_optim():
    generator = torch.Generator().manual_seed(38)
    start = torch.randn(5, 3, generator=generator)
    ours, theirs = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    gradients = [torch.randn(5, 3, generator=generator) for _ in range(4)]
    settings = {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-8, "weight_decay": 0.1}
    reference = torch.optim.AdamW([theirs], **settings)
    for gradient in gradients:
        theirs.grad = gradient.clone()
        reference.step()
    optimizer = adapters.get_adamw_cls()([ours], **settings)
    with forbidden_shortcuts("Part 3"):
        for gradient in gradients:
            ours.grad = gradient.clone()
            optimizer.step()
    check_close(ours.detach(), theirs.detach(), rtol=1e-6, atol=1e-6)
