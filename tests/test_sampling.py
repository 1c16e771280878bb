"""Part 4: sampling (public tests).

Every test goes through ``adapters.py``, on tiny models whose random weights the tests set by
parameter name (``pin_weights``), so the tokens are the same on every run and for every correct
implementation. The reference for every decoding check is the model's own ``forward`` on the whole
(cropped) prefix, one token at a time. ``sample_next_token`` draws with ``torch.multinomial`` and
the given generator, so seeded samples are part of the spec; only the sets of tokens drawn many
times from fixed logits are graded against the test's own expectation (the first of those draws
are graded against the reference's). Select a part with
``pytest -k``: ``greedy``, ``cache``, ``padded``, ``top_k``, ``top_p``, ``temperature``, ``eos``,
``seed``, ``crop``, ``errors``.
"""

from __future__ import annotations

import pytest
import torch

import adapters
from tests.common import distinct_allowed, pinned_lm
from tests.graded import check_close, check_equal

VOCAB_SIZE = 50
CONTEXT_LENGTH = 16
D_MODEL = 32
NUM_LAYERS = 2
NUM_HEADS = 4
D_FF = 64
ARCHITECTURES = ("llama", "gpt2")
SHOWN_DRAWS = 256  # the first seeded draws, recorded token by token


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/torch_threads.py


def make_model(architecture: str, seed: int = 0) -> torch.nn.Module:
    return pinned_lm(architecture, VOCAB_SIZE, CONTEXT_LENGTH, D_MODEL, NUM_LAYERS, NUM_HEADS, D_FF, seed)


def prompts(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, VOCAB_SIZE, (batch, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def greedy_by_forward(model: torch.nn.Module, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The reference: argmax of ``model.forward`` on the last context_length tokens, step by step."""
    sequence = input_ids
    for _ in range(max_new_tokens):
        next_token = model(sequence[:, -CONTEXT_LENGTH:])[:, -1].argmax(dim=-1)
        sequence = torch.cat([sequence, next_token[:, None]], dim=1)
    return sequence[:, input_ids.shape[1] :]


def seeded_draws(logits: torch.Tensor, kept: set[int], seed: int) -> torch.Tensor:
    """The spec's first draws: ``torch.multinomial`` on the float32 softmax of ``logits`` with the
    tokens outside ``kept`` at ``-inf``, using a generator seeded with ``seed``."""
    outside = torch.ones(logits.shape[-1], dtype=torch.bool)
    outside[list(kept)] = False
    probabilities = torch.softmax(logits.float().masked_fill(outside, float("-inf")), dim=-1)
    samples = torch.multinomial(probabilities, num_samples=1, generator=torch.Generator().manual_seed(seed))
    return samples.squeeze(-1)[:SHOWN_DRAWS]


# ---------------------------------------------------------------------------------------------
# Greedy decoding and the KV cache
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_greedy_equals_step_by_step_argmax_of_forward(architecture):
    model = make_model(architecture)
    input_ids = prompts(2, 5)
    # 5 + 24 tokens: well past the context of 16, where every step re-encodes the last 16 tokens.
    expected = greedy_by_forward(model, input_ids, 24)
    full = adapters.greedy_decode(model, input_ids, 24)
    check_equal(full[:, :5], input_ids)  # greedy_decode returns the prompt, then the new tokens
    check_equal(full[:, 5:], expected)
    check_equal(adapters.generate(model, input_ids, 24, temperature=0.0), expected)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_cache_logits_equal_recomputation_past_the_context(architecture):
    model = make_model(architecture)
    input_ids = prompts(3, 4)
    cached = adapters.get_incremental_decoder(model, input_ids)
    recomputed = adapters.get_incremental_decoder(model, input_ids, use_cache=False)
    sequence = input_ids
    logits, reference = cached.prefill(), recomputed.prefill()
    for _ in range(20):  # 4 + 20 > 16
        with torch.no_grad():
            from_forward = model(sequence[:, -CONTEXT_LENGTH:])[:, -1]
        check_close(logits, reference, atol=1e-5, rtol=0)
        check_close(logits, from_forward, atol=1e-5, rtol=0)
        next_tokens = logits.argmax(dim=-1)
        sequence = torch.cat([sequence, next_tokens[:, None]], dim=1)
        logits, reference = cached.step(next_tokens), recomputed.step(next_tokens)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_cache_and_recomputation_give_the_same_tokens(architecture):
    model = make_model(architecture)
    input_ids = prompts(2, 6)
    cached = adapters.generate(model, input_ids, 20, temperature=0.0, use_cache=True)
    recomputed = adapters.generate(model, input_ids, 20, temperature=0.0, use_cache=False)
    check_equal(cached, recomputed)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_left_padded_batch_equals_each_row_alone(architecture):
    model = make_model(architecture)
    pad = 0
    rows = [prompts(1, length, seed=length)[0] for length in (3, 8, 5)]
    width = max(len(row) for row in rows)
    batch = torch.stack([torch.cat([torch.full((width - len(row),), pad), row]) for row in rows])
    new_tokens = adapters.generate(model, batch, 15, temperature=0.0, pad_token_id=pad)  # 8 + 15 > 16
    for row, tokens in zip(rows, new_tokens, strict=True):
        check_equal(tokens, greedy_by_forward(model, row[None], 15)[0])
    full = adapters.greedy_decode(model, batch, 15, pad_token_id=pad)
    check_equal(full, torch.cat([batch, new_tokens], dim=1))


def test_prompt_longer_than_the_context_is_cropped_from_the_left():
    model = make_model("llama")
    long_prompt = prompts(2, 25)
    cropped = long_prompt[:, -CONTEXT_LENGTH:]
    check_equal(
        adapters.generate(model, long_prompt, 6, temperature=0.0),
        adapters.generate(model, cropped, 6, temperature=0.0),
    )
    check_equal(adapters.generate(model, long_prompt, 6, temperature=0.0), greedy_by_forward(model, cropped, 6))
    sampled = adapters.generate(model, long_prompt, 6, top_p=0.9, seed=3)
    check_equal(sampled, adapters.generate(model, cropped, 6, top_p=0.9, seed=3))


# ---------------------------------------------------------------------------------------------
# Filters and sampling
# ---------------------------------------------------------------------------------------------


def test_top_k_filter_keeps_exactly_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, -2.0, 3.0, 0.5], [0.0, -1.0, 2.0, 4.0, 3.5]])
    original = logits.clone()
    filtered = adapters.run_top_k_filter(logits, 2)
    inf = float("-inf")
    check_equal(filtered, torch.tensor([[inf, 5.0, inf, 3.0, inf], [inf, inf, inf, 4.0, 3.5]]))
    check_equal(logits, original)  # the input must not be modified
    check_equal(adapters.run_top_k_filter(logits, 5), logits)


def test_top_k_never_samples_outside_the_k_best():
    logits = torch.randn(1, 40, generator=torch.Generator().manual_seed(0)).repeat(3000, 1)
    samples = adapters.run_sample_next_token(logits, top_k=5, generator=torch.Generator().manual_seed(1))
    best = set(torch.topk(logits[0], 5).indices.tolist())
    # Every draw among the 5 best, and each of them drawn: a statistic of 3000 draws, graded
    # against the test's own set.
    check_equal(sorted(set(samples.tolist())), sorted(best), against="expected")
    check_equal(samples[:SHOWN_DRAWS], seeded_draws(logits, best, seed=1))


def test_top_p_filter_keeps_the_smallest_nucleus():
    probabilities = torch.tensor([0.05, 0.5, 0.1, 0.3, 0.05])
    logits = probabilities.log()[None]

    def kept(p: float) -> list[int]:
        return torch.isfinite(adapters.run_top_p_filter(logits, p))[0].nonzero().flatten().tolist()

    check_equal((kept(0.3), kept(0.7), kept(0.85)), ([1], [1, 3], [1, 2, 3]))
    finite = torch.isfinite(adapters.run_top_p_filter(logits, 0.7))
    check_close(adapters.run_top_p_filter(logits, 0.7)[finite], logits[finite])
    check_equal(adapters.run_top_p_filter(logits, 1.0), logits)
    single = adapters.run_top_p_filter(logits, 1e-6)
    check_equal(int(torch.isfinite(single).sum()), 1, message="the most likely token is always kept")


def test_top_p_filter_keeps_ties_at_the_edge_and_the_dtype():
    """Tokens tied with the least likely kept token are kept too (as top-k keeps ties), so the
    result does not depend on how a sort orders equal values; the dtype is kept."""
    probabilities = torch.tensor([0.2, 0.4, 0.1, 0.2, 0.1])
    logits = probabilities.log()[None]

    def kept(p: float, dtype: torch.dtype = torch.float32) -> list[int]:
        return torch.isfinite(adapters.run_top_p_filter(logits.to(dtype), p))[0].nonzero().flatten().tolist()

    # 0.5: 0.4 and one 0.2 reach it, and the other 0.2 is tied with that one; 0.85: likewise for 0.1.
    check_equal((kept(0.3), kept(0.5), kept(0.7), kept(0.85)), ([1], [0, 1, 3], [0, 1, 3], [0, 1, 2, 3, 4]))
    check_equal(kept(0.5, torch.float64), [0, 1, 3])
    for dtype in (torch.float64, torch.bfloat16):
        filtered = adapters.run_top_p_filter(logits.to(dtype), 0.5)
        check_equal(filtered.dtype, dtype)
        finite = torch.isfinite(filtered)
        check_equal(filtered[finite], logits.to(dtype)[finite])  # the kept logits are unchanged


def test_top_p_mass_before_is_cumsum_minus_probs_and_strictly_below_p():
    """The mass before a token is ``cumsum(probs) - probs`` of the sorted float32 probabilities,
    compared strictly with p: at p equal to a token's mass before it, the token is dropped; here a
    cumulative sum shifted by one position would be one bit larger than cumsum - probs and drop a
    token that the rule keeps."""
    logits = torch.tensor(
        [[1.5409960746765137, -0.293428897857666, -2.1787893772125244, 0.5684312582015991, -1.0845223665237427]]
    )
    probabilities = torch.softmax(torch.sort(logits, descending=True).values, dim=-1)[0]
    running = probabilities.cumsum(0)
    mass_before, shifted = running - probabilities, torch.cat([torch.zeros(1), running[:-1]])
    # A guard on the test's input: the two ways differ at the third token (token 1).
    assert float(mass_before[2]) < float(shifted[2])

    def kept(p: float) -> list[int]:
        return torch.isfinite(adapters.run_top_p_filter(logits, p))[0].nonzero().flatten().tolist()

    check_equal(kept(float(mass_before[1])), [0], message="a token whose mass before it equals p is dropped")
    check_equal(kept(float(shifted[2])), [0, 1, 3], message="mass before = cumsum - probs, compared with <")
    check_equal(kept(float(mass_before[2])), [0, 3])


def test_top_p_never_samples_outside_the_nucleus():
    logits = torch.randn(1, 40, generator=torch.Generator().manual_seed(2)).mul(2).repeat(3000, 1)
    probabilities = torch.softmax(logits[0].double(), dim=-1)
    order = probabilities.argsort(descending=True)
    mass_before = probabilities[order].cumsum(0) - probabilities[order]
    nucleus = set(order[mass_before < 0.8].tolist())
    samples = adapters.run_sample_next_token(logits, top_p=0.8, generator=torch.Generator().manual_seed(3))
    # A statistic of 3000 draws, graded against the test's own nucleus.
    check_equal(sorted(set(samples.tolist())), sorted(nucleus), against="expected")
    check_equal(samples[:SHOWN_DRAWS], seeded_draws(logits, nucleus, seed=3))


def test_top_k_and_top_p_decoding_stay_inside_their_sets():
    model = make_model("llama")
    input_ids = prompts(1, 4).repeat(200, 1)
    with torch.no_grad():
        logits = model(input_ids[:1])[0, -1]
    first_k = adapters.top_k_decode(model, input_ids, 1, k=3, seed=0)[:, -1].tolist()
    # Graded: the distinct tokens drawn, against the reference's (seeded draws are fixed by the spec).
    check_equal(sorted(set(first_k)), distinct_allowed(first_k, set(torch.topk(logits, 3).indices.tolist())))
    probabilities = torch.softmax(logits.double(), dim=-1)
    order = probabilities.argsort(descending=True)
    nucleus = set(order[(probabilities[order].cumsum(0) - probabilities[order]) < 0.5].tolist())
    first_p = adapters.nucleus_decode(model, input_ids, 1, p=0.5, seed=0)[:, -1].tolist()
    check_equal(sorted(set(first_p)), distinct_allowed(first_p, nucleus))


def test_temperature_zero_is_argmax_and_a_tiny_temperature_equals_greedy():
    logits = torch.randn(8, 30, generator=torch.Generator().manual_seed(4))
    check_equal(adapters.run_sample_next_token(logits, temperature=0.0), logits.argmax(dim=-1))
    model = make_model("llama")
    input_ids = prompts(3, 4)
    greedy = adapters.generate(model, input_ids, 12, temperature=0.0)
    check_equal(adapters.generate(model, input_ids, 12, temperature=1e-6, seed=0), greedy)


def test_temperature_zero_ties_go_to_the_lowest_token_id():
    logits = torch.tensor([[0.5, 2.0, -1.0, 2.0], [3.0, 3.0, 3.0, 0.0], [-1.0, -1.0, -2.0, -1.0]])
    check_equal(adapters.run_sample_next_token(logits, temperature=0.0), torch.tensor([1, 0, 0]))
    check_equal(adapters.run_sample_next_token(logits.bfloat16(), temperature=0.0), torch.tensor([1, 0, 0]))


def test_sampling_casts_to_float32_before_dividing_by_the_temperature():
    """In bfloat16, 0.8125 / 0.7 and 0.81640625 / 0.7 round to the same number, so top-k = 1 would
    keep both; cast to float32 first and only the larger one is ever drawn."""
    row = torch.tensor([0.0, 0.8125, -1.0, 0.81640625, 0.5], dtype=torch.bfloat16)
    assert row[1] / 0.7 == row[3] / 0.7  # a guard on the test's input: tied after a bfloat16 division
    logits = row.repeat(300, 1)
    samples = adapters.run_sample_next_token(logits, 0.7, top_k=1, generator=torch.Generator().manual_seed(0))
    check_equal(samples, torch.full((300,), 3), message="cast to float32, then divide by the temperature")


# ---------------------------------------------------------------------------------------------
# End of sequence, seeds, errors
# ---------------------------------------------------------------------------------------------


def eos_candidate(tokens: torch.Tensor) -> tuple[int, int]:
    """A position j and token of row 0 that appears neither earlier in row 0 nor anywhere in row 1."""
    for j in range(1, tokens.shape[1] - 2):
        token = int(tokens[0, j])
        if token not in tokens[0, :j].tolist() and token not in tokens[1].tolist():
            return j, token
    raise AssertionError("no usable end-of-sequence candidate; change the seeds")


def test_eos_finishes_a_row_which_is_padded_while_the_others_continue():
    model = make_model("llama")
    input_ids = prompts(2, 4, seed=7)
    free = adapters.generate(model, input_ids, 12, temperature=0.0)
    j, eos = eos_candidate(free)
    pad = VOCAB_SIZE + 1  # never a real token, so any use of it shows
    stopped = adapters.generate(model, input_ids, 12, temperature=0.0, eos_token_id=eos, pad_token_id=pad)
    check_equal(tuple(stopped.shape), tuple(free.shape))
    check_equal(stopped[0, : j + 1], free[0, : j + 1])
    check_equal(stopped[0, j + 1 :].tolist(), [pad] * (12 - j - 1))
    check_equal(stopped[1], free[1])  # the unfinished row is not affected
    without_pad = adapters.generate(model, input_ids, 12, temperature=0.0, eos_token_id=eos)
    check_equal(without_pad[0, j + 1 :].tolist(), [eos] * (12 - j - 1), message="no pad token: the row repeats EOS")


def test_finished_rows_keep_drawing_so_seeded_rows_do_not_change():
    """Every step samples every row, finished or not, in one call: with a seed, a row that does not
    finish gets exactly the tokens it gets without eos_token_id, and the finished row is padded."""
    model = make_model("llama")
    input_ids = prompts(2, 4, seed=7)
    free = adapters.generate(model, input_ids, 12, seed=11)
    j, eos = eos_candidate(free)
    pad = VOCAB_SIZE + 1
    stopped = adapters.generate(model, input_ids, 12, seed=11, eos_token_id=eos, pad_token_id=pad)
    check_equal(tuple(stopped.shape), (2, 12))
    check_equal(stopped[0, : j + 1], free[0, : j + 1])
    check_equal(stopped[0, j + 1 :].tolist(), [pad] * (12 - j - 1))
    check_equal(stopped[1], free[1], message="a finished row must go on drawing, or the other rows' draws change")


def test_generation_stops_early_when_every_row_has_finished():
    model = make_model("llama")
    input_ids = prompts(2, 4, seed=7)
    free = adapters.generate(model, input_ids, 12, temperature=0.0)
    j, eos = eos_candidate(free)
    alone = adapters.generate(model, input_ids[:1], 12, temperature=0.0, eos_token_id=eos)
    check_equal(alone, free[:1, : j + 1])
    full = adapters.greedy_decode(model, input_ids[:1], 12, eos_token_id=eos)
    check_equal(full, torch.cat([input_ids[:1], free[:1, : j + 1]], dim=1))


def test_a_seed_makes_sampling_reproducible():
    model = make_model("gpt2")
    input_ids = prompts(4, 3)
    first = adapters.generate(model, input_ids, 10, top_k=20, top_p=0.95, seed=5)
    check_equal(first, adapters.generate(model, input_ids, 10, top_k=20, top_p=0.95, seed=5))
    other = adapters.generate(model, input_ids, 10, top_k=20, top_p=0.95, seed=6)
    check_equal(other, adapters.generate(model, input_ids, 10, top_k=20, top_p=0.95, seed=6))
    check_equal(torch.equal(first, other), False)  # another seed, other tokens (both recorded above)
    generator = torch.Generator().manual_seed(5)
    check_equal(adapters.generate(model, input_ids, 10, top_k=20, top_p=0.95, generator=generator), first)
    top_k = [adapters.top_k_decode(model, input_ids, 10, k=5, seed=1) for _ in range(2)]
    nucleus = [adapters.nucleus_decode(model, input_ids, 10, seed=1) for _ in range(2)]
    check_equal(top_k[0], top_k[1])
    check_equal(nucleus[0], nucleus[1])


def test_zero_new_tokens_and_the_model_mode():
    model = make_model("llama").train()
    input_ids = prompts(2, 3)
    check_equal(tuple(adapters.generate(model, input_ids, 0).shape), (2, 0))
    check_equal(adapters.greedy_decode(model, input_ids, 0), input_ids)
    adapters.generate(model, input_ids, 2)
    check_equal(model.training, True, message="generate restores the model's mode")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, x: adapters.top_k_decode(m, x, 3, k=0), "k"),
        (lambda m, x: adapters.nucleus_decode(m, x, 3, p=0.0), "p"),
        (lambda m, x: adapters.nucleus_decode(m, x, 3, p=1.5), "p"),
        (lambda m, x: adapters.generate(m, x, 3, temperature=-0.5), "temperature"),
        (lambda m, x: adapters.generate(m, x, -1), "max_new_tokens"),
        (lambda m, x: adapters.generate(m, x[0], 3), "shape"),
        (lambda m, x: adapters.generate(m, x.float(), 3), "integer"),
        (lambda m, x: adapters.generate(m, x, 3, seed=0, generator=torch.Generator()), "seed"),
        (lambda m, x: adapters.run_top_k_filter(x.float(), 0), "k"),
        (lambda m, x: adapters.run_top_p_filter(x.float(), -0.1), "p"),
    ],
)
def test_errors_for_bad_input(call, message):
    model, input_ids = make_model("llama"), prompts(2, 3)
    with pytest.raises(ValueError, match=message):
        call(model, input_ids)
    # Valid input next to the bad one: greedy tokens of the forward pass, and the 2 best logits kept.
    check_equal(adapters.generate(model, input_ids, 3, temperature=0.0), greedy_by_forward(model, input_ids, 3))
    logits = torch.randn(2, 7, generator=torch.Generator().manual_seed(4))
    best = torch.full_like(logits, float("-inf")).scatter(-1, logits.topk(2).indices, logits.topk(2).values)
    check_equal(adapters.run_top_k_filter(logits, 2), best)
