"""Generating text from a language model: greedy decoding, temperature, top-k and top-p sampling (Part 4).

A language model gives, for a prefix, logits over the next token. Decoding turns them into text
one token at a time:

* greedy: always the most likely token (deterministic; tends to repeat itself);
* temperature ``T``: sample from ``softmax(logits / T)``; ``T < 1`` sharpens the distribution,
  ``T > 1`` flattens it, ``T -> 0`` becomes greedy;
* top-k (Fan et al., 2018): sample only among the ``k`` most likely tokens;
* top-p or nucleus (Holtzman et al., 2020): sample only among the smallest set of most likely
  tokens whose probabilities add up to at least ``p``.

You write :func:`top_k_filter`, :func:`top_p_filter`, :func:`sample_next_token` and the loop of
:func:`generate`. The loop uses the given :class:`~cs288_lm.models.kv_cache.IncrementalDecoder`, which
keeps each layer's keys and values so that every new token costs one position's computation
instead of re-encoding the whole prefix. :func:`greedy_decode`, :func:`top_k_decode` and
:func:`nucleus_decode` (given) are the course starter's entry points; they return the prompt
followed by the new tokens, while :func:`generate` returns only the new tokens.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from cs288_lm.common.modes import eval_mode
from cs288_lm.models.kv_cache import IncrementalDecoder, check_input_ids


def top_k_filter(logits: Float[Tensor, "... vocab"], k: int) -> Float[Tensor, "... vocab"]:
    """Keep the ``k`` largest logits of each row (last dimension); set the others to ``-inf``.

    Tokens tied with the k-th largest logit are kept too. ``k >= vocab`` keeps everything.
    Returns a new tensor of the same shape and dtype as ``logits``, the kept logits unchanged;
    ``logits`` is not modified. ``k < 1`` raises a ValueError.
    """
    if k < 1:
        raise ValueError(f"top-k needs k >= 1, got {k}")
    # BEGIN SOLUTION
    kth_largest = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))
    # END SOLUTION


def top_p_filter(logits: Float[Tensor, "... vocab"], p: float) -> Float[Tensor, "... vocab"]:
    """Keep the nucleus of each row (last dimension); set the other logits to ``-inf``.

    The nucleus is the smallest set of most likely tokens whose probabilities (``softmax`` of the
    row) sum to at least ``p``: sort the tokens by probability, most likely first, and keep a
    token when the tokens before it sum to less than ``p``. The most likely token is therefore
    always kept, and ``p = 1`` keeps every token. "The tokens before it" is computed as the running
    sum *including* the token minus its own probability (``cumsum(probs) - probs`` of the sorted
    probabilities, not a cumulative sum shifted by one position: the two can differ in the last
    bit), and a token whose mass before it equals ``p`` exactly is dropped (strictly less than).
    Ties, as in :func:`top_k_filter`: every token whose logit equals that of the least likely kept
    token is kept too, so the result never depends on how a sort orders equal values. The
    probabilities are the softmax of the row sorted most likely first.

    The probabilities and their running sums are computed in float32 (in float64 for float64
    logits), whatever the dtype of ``logits``. Returns a new tensor of the same shape and dtype as
    ``logits``, the kept logits unchanged. ``p`` outside ``(0, 1]`` raises a ValueError.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top-p needs 0 < p <= 1, got {p}")
    if p == 1.0:
        return logits.clone()  # the whole distribution, without rounding errors in the cumulative sum
    # BEGIN SOLUTION
    sorted_logits = torch.sort(logits, dim=-1, descending=True).values
    sorted_probabilities = torch.softmax(sorted_logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    mass_before = sorted_probabilities.cumsum(dim=-1) - sorted_probabilities
    # The least likely kept logit of each row; every token at or above it (its ties too) is kept.
    smallest_kept = sorted_logits.masked_fill(mass_before >= p, float("inf")).amin(dim=-1, keepdim=True)
    return logits.masked_fill(logits < smallest_kept, float("-inf"))
    # END SOLUTION


def sample_next_token(
    logits: Float[Tensor, "batch vocab"],
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Int[Tensor, " batch"]:
    """Choose one next token per row from its logits.

    ``temperature == 0``: the most likely token (``argmax``; on a tie the lowest token id wins;
    ``top_k``, ``top_p`` and the generator are then unused). Otherwise divide the logits by
    ``temperature``, apply
    :func:`top_k_filter` (if ``top_k`` is given), then :func:`top_p_filter` (if ``top_p`` is
    given), and draw from the softmax with ``torch.multinomial(..., generator=generator)``: one
    draw per row, all rows in one call. Work in float32 whatever the dtype of ``logits``: cast
    the logits to float32 *first*, then divide by the temperature (in bfloat16 the division could
    round two different logits to one, and a filter would then keep both). Returns
    int64 token ids on the device of ``logits``. A negative temperature raises a ValueError.
    """
    check_sampling_settings(temperature, top_k, top_p)
    # BEGIN SOLUTION
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probabilities = torch.softmax(logits, dim=-1)
    return torch.multinomial(probabilities, num_samples=1, generator=generator).squeeze(-1)
    # END SOLUTION


@torch.no_grad()
def generate(
    model: nn.Module,
    input_ids: Int[Tensor, "batch seq"],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Int[Tensor, "batch new"]:
    """Generate up to ``max_new_tokens`` tokens after each prompt; returns only the new tokens.

    ``input_ids``: the prompts, left-padded with ``pad_token_id`` when their lengths differ.
    Create ``IncrementalDecoder(model, input_ids, pad_token_id, use_cache)``; ``prefill()``
    returns the logits of the first new token, ``step(tokens)`` appends one token per row and
    returns the logits of the next (it also crops to the model's context and handles padding).
    Choose each token with :func:`sample_next_token` (``temperature``, ``top_k``, ``top_p``,
    ``generator``).

    With ``eos_token_id``: a row that emits it is finished; the EOS token itself is part of the
    result (at the position where it was drawn), and the row's later positions hold
    ``pad_token_id`` (or ``eos_token_id`` when there is no pad token) while the other rows go
    on; when every row is finished, stop, so the result may have fewer than ``max_new_tokens``
    columns. Call ``step`` only when another token is needed (not after the last one), with the
    raw draws of every row, finished rows included (what :func:`sample_next_token` returned, before
    the filler replaces a finished row's draw): ``pad_token_id`` need not be a token the model knows.

    Every step samples every row, finished or not, with one :func:`sample_next_token` call on the
    whole batch (a finished row's draw is then replaced by the filler). So finished rows go on
    drawing from the generator, and a row finishing never changes the tokens the other rows
    draw: with a seed, each unfinished row gets the tokens it gets without ``eos_token_id``.

    The caller's ``generator``, or a new one seeded with ``seed``, makes sampling reproducible
    (both at once is an error). The model runs in eval mode, without gradients, and is put
    back in its previous mode afterwards. Returns a (batch, new) tensor of token ids with
    ``new <= max_new_tokens``, ``(batch, 0)`` for ``max_new_tokens == 0``, of the dtype of
    ``input_ids`` and on the model's device (that of its parameters, where the logits are), even
    when ``input_ids`` is elsewhere: the decode wrappers below move it back to the prompt's.
    """
    check_input_ids(input_ids)
    check_sampling_settings(temperature, top_k, top_p)
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    device = next(model.parameters()).device
    generator = make_generator(seed, generator, device)
    with eval_mode(model):
        # BEGIN SOLUTION
        batch = input_ids.shape[0]
        if max_new_tokens == 0:
            return torch.empty(batch, 0, dtype=input_ids.dtype, device=device)
        decoder = IncrementalDecoder(model, input_ids, pad_token_id, use_cache)
        logits = decoder.prefill()
        finished = torch.zeros(batch, dtype=torch.bool, device=logits.device)
        new_tokens = []
        for index in range(max_new_tokens):
            sampled = sample_next_token(logits, temperature, top_k, top_p, generator)
            if eos_token_id is None:
                new_tokens.append(sampled)
            else:
                filler = pad_token_id if pad_token_id is not None else eos_token_id
                new_tokens.append(sampled.masked_fill(finished, filler))
                finished |= sampled == eos_token_id
            if index == max_new_tokens - 1 or bool(finished.all()):
                break
            # Finished rows go on with what they sampled (always a valid id); it is never used.
            logits = decoder.step(sampled)
        return torch.stack(new_tokens, dim=1).to(input_ids.dtype)
        # END SOLUTION


def greedy_decode(
    model: nn.Module,
    input_ids: Int[Tensor, "batch seq"],
    max_new_tokens: int,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> Int[Tensor, "batch total"]:
    """Greedy decoding; returns the prompt (as given, padding included) followed by the new tokens."""
    return _prompt_and_new_tokens(
        model, input_ids, max_new_tokens, temperature=0.0, eos_token_id=eos_token_id, pad_token_id=pad_token_id
    )


def top_k_decode(
    model: nn.Module,
    input_ids: Int[Tensor, "batch seq"],
    max_new_tokens: int,
    k: int = 50,
    temperature: float = 1.0,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
) -> Int[Tensor, "batch total"]:
    """Top-k sampling; returns the prompt (as given, padding included) followed by the new tokens."""
    return _prompt_and_new_tokens(
        model,
        input_ids,
        max_new_tokens,
        temperature=temperature,
        top_k=k,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        seed=seed,
    )


def nucleus_decode(
    model: nn.Module,
    input_ids: Int[Tensor, "batch seq"],
    max_new_tokens: int,
    p: float = 0.9,
    temperature: float = 1.0,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
) -> Int[Tensor, "batch total"]:
    """Top-p (nucleus) sampling; returns the prompt (as given, padding included) followed by the new tokens."""
    return _prompt_and_new_tokens(
        model,
        input_ids,
        max_new_tokens,
        temperature=temperature,
        top_p=p,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        seed=seed,
    )


def _prompt_and_new_tokens(
    model: nn.Module, input_ids: Int[Tensor, "batch seq"], max_new_tokens: int, **settings
) -> Int[Tensor, "batch total"]:
    """:func:`generate` with ``settings``, after the prompt: the decode wrappers' one body. The new
    tokens come on the model's device and go back to the prompt's."""
    new_tokens = generate(model, input_ids, max_new_tokens, **settings)
    return torch.cat([input_ids, new_tokens.to(input_ids.device)], dim=1)


def check_sampling_settings(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Clear errors for settings that cannot be sampled with."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None for no top-k), got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (or None for no top-p), got {top_p}")


def make_generator(seed: int | None, generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """The caller's generator, a new one seeded with ``seed``, or None (torch's global generator)."""
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    if seed is None:
        return generator
    return torch.Generator(device=device).manual_seed(seed)
