"""AdamW, written from its update rule (Part 3), and the parameter groups the trainer uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019), as ``torch.optim.AdamW``.

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...`` (per parameter):

    1. ``p <- p - lr * weight_decay * p``           (decoupled weight decay, applied first)
    2. ``m <- beta1 * m + (1 - beta1) * g``          (first moment; m and v start at 0)
    3. ``v <- beta2 * v + (1 - beta2) * g^2``        (second moment)
    4. ``p <- p - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)``

    ``lr``, ``betas``, ``eps`` and ``weight_decay`` are read from each parameter group at every
    step, so a schedule can change ``group["lr"]``. Keep ``m``, ``v`` and ``t`` in
    ``self.state[p]`` so that ``state_dict()`` saves them for checkpoints.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ):
        if lr < 0:
            raise ValueError(f"invalid learning rate: {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas: {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"invalid eps={eps} or weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # BEGIN SOLUTION
        for group in self.param_groups:
            lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                gradient = parameter.grad
                state = self.state[parameter]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(parameter)
                    state["exp_avg_sq"] = torch.zeros_like(parameter)
                state["step"] += 1
                step, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
                parameter.mul_(1 - lr * weight_decay)
                exp_avg.mul_(beta1).add_(gradient, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                denominator = (exp_avg_sq / bias_correction2).sqrt_().add_(eps)
                parameter.addcdiv_(exp_avg, denominator, value=-lr / bias_correction1)
        # END SOLUTION
        return loss


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices (linear and embedding weights) only, not on gains and biases.

    Decaying a norm's gain or a bias towards 0 only hurts; the usual practice (GPT-2, nanoGPT,
    Llama) decays the parameters with two or more dimensions.
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in parameters if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in parameters if p.dim() < 2], "weight_decay": 0.0},
    ]
