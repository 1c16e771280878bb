"""Generating text from a language model: greedy, temperature, top-k and top-p (nucleus) sampling."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn


def filter_logits(
    logits: Float[Tensor, "batch vocab"], top_k: int | None = None, top_p: float | None = None
) -> Float[Tensor, "batch vocab"]:
    """Set to -inf every logit outside the ``top_k`` largest and outside the nucleus of mass ``top_p``.

    The nucleus is the smallest set of most likely tokens whose probabilities sum to at least
    ``top_p``; the most likely token is always kept.
    """
    if top_k is not None and top_k > 0:
        kth_largest = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens before it already reach top_p.
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def generate(
    model: nn.Module,
    input_ids: Int[Tensor, "batch seq"],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Int[Tensor, "batch new"]:
    """Sample up to ``max_new_tokens`` tokens after each prompt; ``temperature=0`` is greedy.

    Prompts longer than the model's context are cropped from the left. A row that emits
    ``eos_token_id`` stops there (its later positions repeat ``eos_token_id``); generation ends
    when every row has stopped. Returns only the new tokens.
    """
    was_training = model.training
    model.eval()
    context_length = model.context_length
    sequence = input_ids
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    new_tokens = []
    for _ in range(max_new_tokens):
        logits = model(sequence[:, -context_length:])[:, -1, :].float()
        if temperature == 0:
            next_token = logits.argmax(dim=-1)
        else:
            probabilities = torch.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
            next_token = torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)
        if eos_token_id is not None:
            next_token = torch.where(finished, torch.full_like(next_token, eos_token_id), next_token)
            finished |= next_token == eos_token_id
        new_tokens.append(next_token)
        sequence = torch.cat([sequence, next_token[:, None]], dim=1)
        if eos_token_id is not None and bool(finished.all()):
            break
    model.train(was_training)
    return torch.stack(new_tokens, dim=1) if new_tokens else input_ids[:, :0]
