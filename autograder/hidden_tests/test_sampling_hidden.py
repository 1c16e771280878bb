"""Hidden tests for sampling (Part 4): decoding, the KV cache, the filters and their distributions.

Everything goes through ``adapters.py``. Sizes differ from the public tests (vocabulary 37,
d_model 48 with 3 or 6 heads, 1 or 3 layers, context 10, batch 1 and 5, the reference attention
backend). The references are written here: greedy decoding by ``model.forward`` on the cropped
prefix, and the filtered distributions computed in float64 straight from their definitions;
empirical frequencies over many seeded draws must match them (graded against those distributions,
not against the reference's draws), and the first of those draws, which the specification fixes
(``torch.multinomial`` on the float32 softmax, with the given generator), are graded against the
reference's. The models' weight matrices are set by parameter name
(``pin_weights``), so every correct implementation has the same weights.
"""

from __future__ import annotations

import pytest
import torch

import adapters
from tests.common import distinct_allowed, pinned_lm
from tests.graded import check_close, check_equal

VOCAB = 37
CONTEXT = 10
D_MODEL, D_FF = 48, 80
DRAWS = 40_000
# Three standard deviations of a frequency estimated from DRAWS draws is at most 3 * 0.5 / 200.
FREQUENCY_TOLERANCE = 0.0075
SHOWN_DRAWS = 256  # the first seeded draws, recorded token by token


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/torch_threads.py


def llama(num_layers: int = 3, num_heads: int = 6, seed: int = 0) -> torch.nn.Module:
    return pinned_lm("llama", VOCAB, CONTEXT, D_MODEL, num_layers, num_heads, D_FF, seed)


def gpt2(num_layers: int = 1, num_heads: int = 3, seed: int = 0) -> torch.nn.Module:
    return pinned_lm("gpt2", VOCAB, CONTEXT, D_MODEL, num_layers, num_heads, seed=seed)


MODELS = {"llama-3x6": llama, "llama-1x3": lambda: llama(1, 3), "gpt2-1x3": gpt2, "gpt2-3x6": lambda: gpt2(3, 6)}


def tokens(*shape: int, seed: int) -> torch.Tensor:
    return torch.randint(1, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def greedy_reference(model: torch.nn.Module, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    sequence = input_ids
    for _ in range(max_new_tokens):
        sequence = torch.cat([sequence, model(sequence[:, -CONTEXT:])[:, -1].argmax(-1, keepdim=True)], dim=1)
    return sequence[:, input_ids.shape[1] :]


def top_k_distribution(logits: torch.Tensor, k: int) -> torch.Tensor:
    probabilities = torch.softmax(logits.double(), dim=-1)
    kept = torch.zeros_like(probabilities, dtype=torch.bool)
    kept[torch.topk(logits, k).indices] = True
    probabilities = probabilities * kept
    return probabilities / probabilities.sum()


def top_p_distribution(logits: torch.Tensor, p: float) -> torch.Tensor:
    probabilities = torch.softmax(logits.double(), dim=-1)
    order = probabilities.argsort(descending=True)
    kept = torch.zeros_like(probabilities, dtype=torch.bool)
    total = 0.0
    for token in order.tolist():  # add tokens, most likely first, until the mass reaches p
        kept[token] = True
        total += float(probabilities[token])
        if total >= p:
            break
    probabilities = probabilities * kept
    return probabilities / probabilities.sum()


def frequencies(samples: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.bincount(samples, minlength=vocab).double() / samples.numel()


def draw(logits_row: torch.Tensor, seed: int, **settings) -> torch.Tensor:
    logits = logits_row[None].repeat(DRAWS, 1)
    return adapters.run_sample_next_token(logits, generator=torch.Generator().manual_seed(seed), **settings)


def seeded_draws(kept: torch.Tensor, scaled: torch.Tensor, seed: int) -> torch.Tensor:
    """The specification's first draws: ``torch.multinomial`` on the float32 softmax of the kept
    scaled logits (the others ``-inf``), over the same ``DRAWS`` rows as :func:`draw`."""
    row = torch.where(kept, scaled.float(), torch.tensor(float("-inf")))
    probabilities = torch.softmax(row[None].repeat(DRAWS, 1), dim=-1)
    samples = torch.multinomial(probabilities, num_samples=1, generator=torch.Generator().manual_seed(seed))
    return samples.squeeze(-1)[:SHOWN_DRAWS]


# ---------------------------------------------------------------------------------------------
# Decoding and the cache, other sizes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("batch", "prompt_length"), [(1, 1), (5, 4), (2, 10), (3, 13)])
def test_greedy_matches_forward_for_other_sizes(name, batch, prompt_length):
    model = MODELS[name]()
    input_ids = tokens(batch, prompt_length, seed=prompt_length)
    expected = greedy_reference(model, input_ids, 14)
    check_equal(adapters.generate(model, input_ids, 14, temperature=0.0), expected)
    check_equal(adapters.generate(model, input_ids, 14, temperature=0.0, use_cache=False), expected)


@pytest.mark.parametrize("name", MODELS)
def test_cache_logits_match_recomputation_with_padding_and_sliding(name):
    model = MODELS[name]()
    pad = 0
    rows = [tokens(length, seed=length) for length in (2, 9, 6, 1)]
    batch = torch.stack([torch.cat([torch.full((9 - len(row),), pad), row]) for row in rows])
    cached = adapters.get_incremental_decoder(model, batch, pad_token_id=pad)
    recomputed = adapters.get_incremental_decoder(model, batch, pad_token_id=pad, use_cache=False)
    sequences = list(rows)
    logits, reference = cached.prefill(), recomputed.prefill()
    for _ in range(8):  # 9 + 8 tokens: the window slides after the first step
        check_close(logits, reference, atol=1e-5, rtol=0)
        with torch.no_grad():
            alone = torch.stack([model(sequence[None, -CONTEXT:])[0, -1] for sequence in sequences])
        check_close(logits, alone, atol=1e-5, rtol=0)
        next_tokens = torch.randint(1, VOCAB, (4,), generator=torch.Generator().manual_seed(len(sequences[0])))
        sequences = [torch.cat([sequence, token[None]]) for sequence, token in zip(sequences, next_tokens, strict=True)]
        logits, reference = cached.step(next_tokens), recomputed.step(next_tokens)


def test_reference_attention_backend_gives_the_same_tokens():
    torch.manual_seed(3)
    model = pinned_lm("llama", VOCAB, CONTEXT, D_MODEL, 2, 4, D_FF, seed=3)
    input_ids = tokens(2, 3, seed=3)
    check_equal(adapters.generate(model, input_ids, 12, temperature=0.0), greedy_reference(model, input_ids, 12))


def test_prompt_of_exactly_the_context_length_and_longer():
    model = llama()
    for length in (CONTEXT, CONTEXT + 1, 3 * CONTEXT):
        input_ids = tokens(2, length, seed=length)
        expected = greedy_reference(model, input_ids[:, -CONTEXT:], 5)
        check_equal(adapters.generate(model, input_ids, 5, temperature=0.0), expected)


def stopped_at_eos(new_tokens: torch.Tensor, eos: int, filler: int) -> torch.Tensor:
    """``new_tokens`` of one row with everything after the first ``eos`` replaced by ``filler``."""
    hits = (new_tokens == eos).nonzero().flatten().tolist()
    if not hits:
        return new_tokens
    return torch.cat([new_tokens[: hits[0] + 1], torch.full((len(new_tokens) - hits[0] - 1,), filler)])


def test_padding_that_is_cropped_away_and_pad_equal_to_eos():
    model = gpt2()
    real = tokens(1, 12, seed=5)
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), real], dim=1)  # the crop removes every pad
    short = torch.cat([torch.zeros(1, 14, dtype=torch.long), tokens(1, 2, seed=6)], dim=1)
    new = adapters.generate(model, torch.cat([padded, short]), 6, temperature=0.0, pad_token_id=0, eos_token_id=0)
    for row, prompt in enumerate((real[:, -CONTEXT:], short[:, -2:])):
        expected = stopped_at_eos(greedy_reference(model, prompt, 6)[0], eos=0, filler=0)
        check_equal(new[row], expected[: new.shape[1]])


def test_a_prompt_of_only_padding_is_an_error():
    model = llama()
    with pytest.raises(ValueError, match="padding"):
        adapters.generate(model, torch.tensor([[0, 0, 0], [0, 4, 5]]), 3, pad_token_id=0)
    # With one real token in the first row, both rows decode as their unpadded prompts do.
    new = adapters.generate(model, torch.tensor([[0, 0, 7], [0, 4, 5]]), 3, temperature=0.0, pad_token_id=0)
    expected = [greedy_reference(model, prompt, 3)[0] for prompt in (torch.tensor([[7]]), torch.tensor([[4, 5]]))]
    check_equal(new, torch.stack(expected))


def test_sampling_with_and_without_the_cache_agree():
    model = llama()
    input_ids = tokens(3, 4, seed=9)
    with_cache = adapters.generate(model, input_ids, 12, top_k=10, temperature=0.7, seed=11)
    without = adapters.generate(model, input_ids, 12, top_k=10, temperature=0.7, seed=11, use_cache=False)
    check_equal(with_cache, without)


def test_rows_are_independent_of_the_batch_they_are_in():
    model = llama(1, 3)
    input_ids = tokens(5, 6, seed=10)
    together = adapters.generate(model, input_ids, 9, temperature=0.0)
    for row in range(5):
        check_equal(together[row], adapters.generate(model, input_ids[row : row + 1], 9, temperature=0.0)[0])


def test_dropout_is_off_while_generating_and_the_mode_comes_back():
    model = pinned_lm("gpt2", VOCAB, CONTEXT, D_MODEL, 2, 3)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    model.train()
    input_ids = tokens(2, 4, seed=1)
    first = adapters.generate(model, input_ids, 8, temperature=0.0)
    check_equal(model.training, True, message="generate restores the model's mode")
    model.eval()
    check_equal(first, greedy_reference(model, input_ids, 8))


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------


def test_filters_work_on_any_leading_dimensions_and_keep_dtype():
    logits = torch.randn(2, 3, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for filtered, expected in (
        (adapters.run_top_k_filter(logits, 4), [4] * 6),
        (adapters.run_top_p_filter(logits, 1e-9), [1] * 6),
    ):
        check_equal(tuple(filtered.shape), tuple(logits.shape))
        check_equal(filtered.dtype, torch.float64)
        check_equal(torch.isfinite(filtered).sum(-1).flatten().tolist(), expected)
        kept = torch.isfinite(filtered)
        check_equal(filtered[kept], logits[kept])


def test_top_k_filter_keeps_ties_and_handles_minus_infinity():
    inf = float("-inf")
    logits = torch.tensor([[2.0, 1.0, 2.0, 0.0], [inf, 3.0, inf, inf]])
    check_equal(adapters.run_top_k_filter(logits, 1), torch.tensor([[2.0, inf, 2.0, inf], [inf, 3.0, inf, inf]]))
    check_equal(adapters.run_top_k_filter(logits, 3), torch.tensor([[2.0, 1.0, 2.0, inf], [inf, 3.0, inf, inf]]))


@pytest.mark.parametrize("p", [0.05, 0.3, 0.6, 0.9, 0.99])
def test_top_p_filter_matches_the_definition(p):
    logits = torch.randn(4, 29, generator=torch.Generator().manual_seed(int(p * 100))) * 2
    filtered = adapters.run_top_p_filter(logits, p)
    for row in range(4):
        expected = top_p_distribution(logits[row], p) > 0
        check_equal(torch.isfinite(filtered[row]), expected)


def nucleus_with_ties(logits: torch.Tensor, p: float) -> torch.Tensor:
    """The tokens of each row at or above the least likely token of its float64 nucleus."""
    kept = torch.zeros_like(logits, dtype=torch.bool)
    for index in range(logits.shape[0]):
        row = logits[index]
        kept[index] = row >= row[top_p_distribution(row, p) > 0].min()
    return kept


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_top_p_filter_keeps_every_tie_at_the_edge(p):
    """Each value three times in a row: the edge of the nucleus falls inside a group of ties, and
    the whole group is kept, in any leading dimensions and whatever order a sort gives them."""
    generator = torch.Generator().manual_seed(int(p * 10) + 30)
    values = torch.randn(12, 6, generator=generator)
    logits = values.repeat_interleave(3, dim=-1)[:, torch.randperm(18, generator=generator)]
    probabilities = torch.softmax(logits.double(), dim=-1).sort(dim=-1, descending=True).values
    assert (probabilities.cumsum(-1) - p).abs().min() > 1e-4  # a guard on the test's input: no sum at p
    filtered = adapters.run_top_p_filter(logits.reshape(3, 4, 18), p)
    check_equal(torch.isfinite(filtered).reshape(12, 18), nucleus_with_ties(logits, p))
    check_equal(int(torch.isfinite(filtered).sum(-1).remainder(3).sum()), 0)  # whole groups only


def test_top_p_one_and_k_at_least_vocab_equal_plain_sampling():
    logits = torch.randn(500, 23, generator=torch.Generator().manual_seed(1))
    plain = adapters.run_sample_next_token(logits, generator=torch.Generator().manual_seed(2))
    for settings in ({"top_p": 1.0}, {"top_k": 23}, {"top_k": 1000}, {"top_k": 23, "top_p": 1.0}):
        again = adapters.run_sample_next_token(logits, generator=torch.Generator().manual_seed(2), **settings)
        check_equal(again, plain)  # for each of the settings


def test_top_k_one_and_a_tiny_p_are_greedy():
    logits = torch.randn(64, 31, generator=torch.Generator().manual_seed(3))
    for settings in ({"top_k": 1}, {"top_p": 1e-7}, {"top_k": 1, "temperature": 5.0}):
        check_equal(adapters.run_sample_next_token(logits, **settings), logits.argmax(-1))  # for each of the settings


def test_low_precision_logits_are_sampled():
    logits = torch.randn(3, 17, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    samples = adapters.run_sample_next_token(logits, top_k=3, generator=torch.Generator().manual_seed(0))
    check_equal(tuple(samples.shape), (3,))
    check_equal(samples.dtype, torch.long)
    for row in range(3):
        top_3 = set(torch.topk(logits[row].float(), 3).indices.tolist())
        check_equal([int(samples[row])], distinct_allowed([int(samples[row])], top_3))


# ---------------------------------------------------------------------------------------------
# Distributions: empirical frequencies of many seeded draws
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 5, 12])
def test_top_k_frequencies_match_the_renormalised_probabilities(k):
    logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(k))
    samples = draw(logits, seed=k, top_k=k)
    observed = frequencies(samples, VOCAB)
    check_close(observed, top_k_distribution(logits, k), atol=FREQUENCY_TOLERANCE, rtol=0, against="expected")
    check_equal(samples[:SHOWN_DRAWS], seeded_draws(top_k_distribution(logits, k) > 0, logits, seed=k))


@pytest.mark.parametrize("p", [0.5, 0.8, 0.95])
def test_top_p_frequencies_match_the_renormalised_probabilities(p):
    logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(int(p * 100))) * 1.5
    samples = draw(logits, seed=1, top_p=p)
    observed = frequencies(samples, VOCAB)
    check_close(observed, top_p_distribution(logits, p), atol=FREQUENCY_TOLERANCE, rtol=0, against="expected")
    check_equal(samples[:SHOWN_DRAWS], seeded_draws(top_p_distribution(logits, p) > 0, logits, seed=1))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_frequencies_match_the_scaled_softmax(temperature):
    logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(7))
    samples = draw(logits, seed=2, temperature=temperature)
    observed = frequencies(samples, VOCAB)
    expected = torch.softmax(logits.double() / temperature, dim=-1)
    check_close(observed, expected, atol=FREQUENCY_TOLERANCE, rtol=0, against="expected")
    every_token = torch.ones(VOCAB, dtype=torch.bool)
    check_equal(samples[:SHOWN_DRAWS], seeded_draws(every_token, logits / temperature, seed=2))


def test_temperature_is_applied_before_top_p():
    logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(8))
    samples = draw(logits, seed=3, temperature=2.0, top_p=0.7, top_k=20)
    observed = frequencies(samples, VOCAB)
    scaled = torch.where(top_k_distribution(logits, 20) > 0, logits / 2.0, torch.tensor(float("-inf")))
    expected = top_p_distribution(scaled, 0.7)
    check_close(observed, expected, atol=FREQUENCY_TOLERANCE, rtol=0, against="expected")
    check_equal(samples[:SHOWN_DRAWS], seeded_draws(expected > 0, logits / 2.0, seed=3))


def test_first_generated_token_follows_the_model_distribution():
    model = llama(1, 3)
    input_ids = tokens(1, 5, seed=12)
    with torch.no_grad():
        logits = model(input_ids)[0, -1]
    new = adapters.generate(model, input_ids.repeat(DRAWS // 4, 1), 1, top_k=6, seed=4)
    # The distribution comes from the model's own forward, so the frequencies are graded against
    # the reference's (the same seeded draws), within the same tolerance.
    check_close(frequencies(new[:, 0], VOCAB), top_k_distribution(logits, 6), atol=0.015, rtol=0)


# ---------------------------------------------------------------------------------------------
# End of sequence and the decode wrappers
# ---------------------------------------------------------------------------------------------


def test_every_row_finishes_at_its_own_eos():
    model = llama()
    input_ids = tokens(5, 3, seed=13)
    free = adapters.generate(model, input_ids, 10, temperature=0.0)
    eos = int(free[0, 0])  # row 0 stops at once; other rows stop wherever they emit it, if ever
    stopped = adapters.generate(model, input_ids, 10, temperature=0.0, eos_token_id=eos, pad_token_id=VOCAB)
    for row in range(5):
        hits = (free[row] == eos).nonzero().flatten().tolist()
        end = hits[0] + 1 if hits else 10
        check_equal(stopped[row, :end], free[row, :end])
        check_equal(stopped[row, end:].tolist(), [VOCAB] * (stopped.shape[1] - end))
    everyone = [(free[row] == eos).nonzero().flatten().tolist() for row in range(5)]
    expected_width = max(hits[0] + 1 for hits in everyone) if all(everyone) else 10
    check_equal(tuple(stopped.shape), (5, expected_width))


def test_finished_rows_keep_drawing_in_a_bigger_batch():
    """Seeded top-k sampling of 5 rows: with an end-of-sequence token every row gets the tokens it
    gets without one up to its own EOS (finished rows keep drawing), then padding."""
    model = gpt2()
    input_ids = tokens(5, 3, seed=17)
    free = adapters.generate(model, input_ids, 10, top_k=10, temperature=1.5, seed=4)
    eos = int(free[0, 1])
    hits = [(free[row] == eos).nonzero().flatten().tolist() for row in range(5)]
    assert sum(not row_hits or row_hits[0] > 2 for row_hits in hits) >= 2  # a guard: rows going on after row 0
    stopped = adapters.generate(
        model, input_ids, 10, top_k=10, temperature=1.5, seed=4, eos_token_id=eos, pad_token_id=VOCAB
    )
    for row in range(5):
        end = hits[row][0] + 1 if hits[row] else 10
        check_equal(stopped[row, :end], free[row, :end])
        check_equal(stopped[row, end:].tolist(), [VOCAB] * (stopped.shape[1] - end))


def test_decode_wrappers_return_the_prompt_then_the_new_tokens():
    model = gpt2()
    input_ids = tokens(3, 4, seed=14)
    for decode, settings in (
        (adapters.greedy_decode, {}),
        (adapters.top_k_decode, {"k": 4, "temperature": 0.8, "seed": 0}),
        (adapters.nucleus_decode, {"p": 0.7, "temperature": 1.3, "seed": 0}),
    ):
        full = decode(model, input_ids, 7, **settings)
        check_equal(tuple(full.shape), (3, 11))
        check_equal(full[:, :4], input_ids)
    check_equal(
        adapters.top_k_decode(model, input_ids, 7, k=4, temperature=0.8, seed=0)[:, 4:],
        adapters.generate(model, input_ids, 7, temperature=0.8, top_k=4, seed=0),
    )
    check_equal(
        adapters.nucleus_decode(model, input_ids, 7, p=0.7, seed=0)[:, 4:],
        adapters.generate(model, input_ids, 7, top_p=0.7, seed=0),
    )


@pytest.mark.parametrize("bad", [{"top_k": -3}, {"top_p": 0.0}, {"top_p": 1.01}, {"temperature": -1e-3}])
def test_sample_next_token_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        adapters.run_sample_next_token(torch.zeros(2, 5), **bad)
    # Valid settings on the same function: top_k=1 draws the most likely token of each row.
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(20))
    check_equal(adapters.run_sample_next_token(logits, top_k=1), logits.argmax(-1))


@pytest.mark.parametrize(
    "bad_ids",
    [torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 3, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool)],
)
def test_generate_rejects_bad_prompts(bad_ids):
    model = llama(1, 3)
    with pytest.raises(ValueError, match="input_ids"):
        adapters.generate(model, bad_ids, 2)
    # A valid prompt of the same batch size decodes greedily as the forward pass does.
    input_ids = tokens(2, 3, seed=21)
    check_equal(adapters.generate(model, input_ids, 2, temperature=0.0), greedy_reference(model, input_ids, 2))
