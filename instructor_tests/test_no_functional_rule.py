"""The no-functional rule below the attributes (``tests/test_no_functional.py``): references to
forbidden torch functions kept before ``forbidden_shortcuts`` patches the attributes (what a student
module can do at import) are refused by the torch function mode, the dispatch mode or the profile
function; a refusal the code catches still fails the block; turning a layer off fails it; the
operations a solution is made of pass.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import _pop_mode

from tests.test_no_functional import ForbiddenShortcut, forbidden_shortcuts

# Kept at import, as a student module would, before any block replaces the attributes.
KEPT = {
    "torch.softmax": torch.softmax,
    "torch.log_softmax": torch.log_softmax,
    "Tensor.softmax": torch.Tensor.softmax,
    "F.softmax": F.softmax,
    "F.cross_entropy": F.cross_entropy,
    "torch._C._nn.linear": torch._C._nn.linear,
    "torch._C._nn.silu": torch._C._nn.silu,
    "torch._C._nn.scaled_dot_product_attention": torch._C._nn.scaled_dot_product_attention,
    "torch._C._nn.cross_entropy_loss": torch._C._nn.cross_entropy_loss,
    "torch._C._VariableFunctions.softmax": torch._C._VariableFunctions.softmax,
    "torch._masked_softmax": torch._masked_softmax,
    "torch._native_multi_head_attention": torch._native_multi_head_attention,
    "torch.ops.aten._softmax.default": torch.ops.aten._softmax.default,
    "torch.ops.aten._log_softmax.default": torch.ops.aten._log_softmax.default,
    "torch.ops.aten.linear.default": torch.ops.aten.linear.default,
    "torch.ops.aten.silu.default": torch.ops.aten.silu.default,
    "torch.embedding": torch.embedding,
    "torch.rms_norm": torch.rms_norm,
    "torch.layer_norm": torch.layer_norm,
    "nn.Linear.forward": nn.Linear.forward,
    "clip_grad_norm_": torch.nn.utils.clip_grad_norm_,
    "AdamW": torch.optim.AdamW,
    "Adam.step": torch.optim.Adam.step,
    "_single_tensor_adam": sys.modules["torch.optim.adam"]._single_tensor_adam,
    "torch._fused_adamw_": torch._fused_adamw_,
}
X = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
W = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
Q = torch.randn(1, 2, 3, 4, generator=torch.Generator().manual_seed(2))
IDS = torch.tensor([0, 2, 1])


def parameter() -> nn.Parameter:
    p = nn.Parameter(X.clone())
    p.grad = torch.ones_like(X)
    return p


def adam_state(p: nn.Parameter) -> list:
    return [[p], [p.grad], [torch.zeros_like(p)], [torch.zeros_like(p)], [], [torch.tensor(0.0)]]


def single_tensor_adam() -> None:
    p = parameter()
    KEPT["_single_tensor_adam"](
        *adam_state(p),
        None,
        None,
        amsgrad=False,
        has_complex=False,
        beta1=0.9,
        beta2=0.999,
        lr=1e-3,
        weight_decay=0.01,
        eps=1e-8,
        maximize=False,
        capturable=False,
        differentiable=False,
        decoupled_weight_decay=True,
    )


def fused_adamw() -> None:
    p = parameter()
    state = adam_state(p)
    KEPT["torch._fused_adamw_"](
        *state, lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.01, eps=1e-8, amsgrad=False, maximize=False
    )


LAYER = nn.Linear(4, 5, bias=False)
OPTIMIZER = torch.optim.AdamW([parameter()])
FOREACH = torch.optim.AdamW([parameter()], foreach=True)

# Each route to a forbidden function, and what the refusal names.
ROUTES: dict[str, tuple[Callable[[], object], str]] = {
    "torch.softmax": (lambda: KEPT["torch.softmax"](X, -1), "torch.softmax"),
    "torch.log_softmax": (lambda: KEPT["torch.log_softmax"](X, -1), "torch.log_softmax"),
    "Tensor.softmax unbound": (lambda: KEPT["Tensor.softmax"](X, -1), "torch.Tensor.softmax"),
    "F.softmax": (lambda: KEPT["F.softmax"](X, -1), "torch.nn.functional.softmax"),
    "F.cross_entropy": (lambda: KEPT["F.cross_entropy"](X, IDS), "torch.nn.functional.cross_entropy"),
    "torch._C._nn.linear": (lambda: KEPT["torch._C._nn.linear"](X, W), "linear"),
    "torch._C._nn.silu": (lambda: KEPT["torch._C._nn.silu"](X), "silu"),
    "torch._C._nn.sdpa": (
        lambda: KEPT["torch._C._nn.scaled_dot_product_attention"](Q, Q, Q),
        "scaled_dot_product_attention",
    ),
    "torch._C._nn.cross_entropy_loss": (
        lambda: KEPT["torch._C._nn.cross_entropy_loss"](X, IDS),
        "cross_entropy_loss",
    ),
    "torch._C._VariableFunctions.softmax": (lambda: KEPT["torch._C._VariableFunctions.softmax"](X, -1), "softmax"),
    "torch.ops.aten._softmax": (
        lambda: KEPT["torch.ops.aten._softmax.default"](X, -1, False),
        "torch.ops.aten._softmax.default",
    ),
    "torch.ops.aten._log_softmax": (
        lambda: KEPT["torch.ops.aten._log_softmax.default"](X, -1, False),
        "torch.ops.aten._log_softmax.default",
    ),
    "torch.ops.aten.linear": (lambda: KEPT["torch.ops.aten.linear.default"](X, W), "torch.ops.aten.linear.default"),
    "torch.ops.aten.silu": (lambda: KEPT["torch.ops.aten.silu.default"](X), "torch.ops.aten.silu.default"),
    "torch.embedding": (lambda: KEPT["torch.embedding"](W, IDS), "torch.embedding"),
    "torch.rms_norm": (lambda: KEPT["torch.rms_norm"](X, (4,)), "torch.rms_norm"),
    "torch.layer_norm": (lambda: KEPT["torch.layer_norm"](X, (4,)), "torch.layer_norm"),
    "nn.Linear.forward": (lambda: KEPT["nn.Linear.forward"](LAYER, X), "linear"),
    "clip_grad_norm_": (
        lambda: KEPT["clip_grad_norm_"]([parameter()], 1.0),
        "torch.nn.utils.clip_grad",
    ),
    "AdamW class": (lambda: KEPT["AdamW"]([parameter()]), "torch.optim.adamw.AdamW.__init__"),
    "AdamW made before, foreach": (lambda: FOREACH.step(), "torch.optim.AdamW.step"),
    "AdamW bound step kept, foreach": (FOREACH.step, "torch.optim.adam.Adam"),
    "Adam.step function": (lambda: KEPT["Adam.step"](OPTIMIZER), "torch.optim.adam"),
    "_single_tensor_adam": (single_tensor_adam, "torch.optim.adam._single_tensor_adam"),
    "torch._fused_adamw_": (fused_adamw, "_fused_adamw_"),
    # other entry points to torch's own kernels (found by a fresh attack): refused by family
    "torch._masked_softmax": (
        lambda: KEPT["torch._masked_softmax"](X, torch.zeros_like(X, dtype=torch.bool), 1),
        "_masked_softmax",
    ),
    "torch._native_multi_head_attention": (
        lambda: KEPT["torch._native_multi_head_attention"](
            Q, Q, Q, 4, 2, torch.eye(12, 4).T.repeat(3, 1), torch.zeros(12), torch.eye(4), torch.zeros(4)
        ),
        "multi_head_attention",
    ),
}


@pytest.mark.parametrize("route", ROUTES)
def test_a_reference_kept_before_the_block_is_refused(route):
    call, named = ROUTES[route]
    with pytest.raises(ForbiddenShortcut, match=rf"^Part 2 forbids .*{named}"), forbidden_shortcuts("Part 2"):
        call()


@pytest.mark.parametrize("route", ["torch.softmax", "torch._C._nn.linear", "torch.ops.aten.silu", "clip_grad_norm_"])
def test_a_refusal_the_code_catches_still_fails_the_block(route):
    call, named = ROUTES[route]
    with pytest.raises(ForbiddenShortcut, match=rf"^Part 3 forbids .*{named}"), forbidden_shortcuts("Part 3"):
        try:
            call()
        except ForbiddenShortcut:
            pass


@pytest.mark.parametrize(
    "turn_off",
    [torch._C._pop_torch_function_stack, _pop_mode, lambda: sys.setprofile(None)],
    ids=["function mode popped", "dispatch mode popped", "profile function removed"],
)
def test_turning_a_layer_off_fails_the_block(turn_off):
    with (
        pytest.raises(ForbiddenShortcut, match="^Part 2 forbids turning off the checks"),
        forbidden_shortcuts("Part 2"),
    ):
        turn_off()
    assert sys.getprofile() is None
    torch.softmax(X, -1)  # nothing of the block is left behind


def test_what_a_solution_is_made_of_passes_and_nothing_is_left_behind():
    x = X.clone().requires_grad_(True)
    with forbidden_shortcuts("Part 2"):
        shifted = x - x.amax(-1, keepdim=True)
        softmax = torch.exp(shifted) / torch.exp(shifted).sum(-1, keepdim=True)
        log_softmax = shifted - torch.logsumexp(shifted, -1, keepdim=True)
        silu = x * torch.sigmoid(x)
        linear = x @ W.T + torch.einsum("...i,oi->...o", x, W)
        rms = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
        embedded = W[IDS]
        total = softmax.sum() + log_softmax.sum() + silu.sum() + linear.sum() + rms.sum() + embedded.sum()
        total.backward()
        weight = nn.Parameter(torch.empty(4, 4))
        nn.init.trunc_normal_(weight, std=0.1, a=-0.3, b=0.3)
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert sys.getprofile() is None
    torch.testing.assert_close(torch.softmax(X, -1), F.softmax(X, -1))
