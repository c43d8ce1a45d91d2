"""MaskGIT invariants: the schedule and the sampler."""

import torch

from opengenie.maskgit import draw_categorical, mask_schedule, sample, training_mask_rate


def test_schedule_is_monotone_and_ends_unmasked():
    """The schedule starts fully masked, never rises, and ends fully unmasked."""
    for kind in ("cosine", "linear"):
        r = mask_schedule(torch.linspace(0, 1, 101), kind)
        assert r[0] == 1 and r[-1].abs() < 1e-9
        assert (r[1:] <= r[:-1] + 1e-12).all()


def test_training_rates_are_uniform_on_range():
    """Training mask rates fill [min_rate, 1] uniformly (Genie: U(0.5, 1))."""
    g = torch.Generator().manual_seed(0)
    r = training_mask_rate(20000, 0.5, g)
    assert r.min() >= 0.5 and r.max() <= 1.0
    assert abs(r.mean().item() - 0.75) < 0.01
    assert abs((r < 0.625).float().mean().item() - 0.25) < 0.02


def _random_logits_fn(vocab, calls):
    def fn(tokens):
        calls.append(tokens.clone())
        g = torch.Generator().manual_seed(len(calls))
        return torch.randn(*tokens.shape, vocab, generator=g)
    return fn


def test_sampler_keeps_known_tokens_and_fills_all():
    """Prompt tokens never change; after `steps` no mask is left; tokens stay in the vocabulary."""
    mask_id, vocab = 10, 10
    tokens = torch.randint(0, vocab, (3, 40))
    tokens[:, 10:] = mask_id
    calls = []
    out = sample(_random_logits_fn(vocab, calls), tokens, mask_id, steps=6,
                 generator=torch.Generator().manual_seed(0))
    assert len(calls) == 6
    assert torch.equal(out[:, :10], tokens[:, :10])
    assert (out != mask_id).all() and (out < vocab).all()


def test_fixed_tokens_are_fed_back_and_never_remasked():
    """Each step sees every token fixed before it, and no fixed token is masked again."""
    mask_id, vocab = 7, 7
    tokens = torch.full((2, 30), mask_id)
    calls = []
    out = sample(_random_logits_fn(vocab, calls), tokens, mask_id, steps=5, choice_noise=1.0,
                 generator=torch.Generator().manual_seed(1))
    calls.append(out)
    for before, after in zip(calls, calls[1:]):
        fixed = before != mask_id
        assert torch.equal(after[fixed], before[fixed])
        assert ((after != mask_id).sum(1) > (before != mask_id).sum(1)).all()


def test_one_step_fills_everything():
    """With steps=1 every mask is filled by the first and only call."""
    tokens = torch.full((1, 16), 4)
    out = sample(lambda t: torch.randn(*t.shape, 4), tokens, 4, steps=1)
    assert (out != 4).all()


def test_zero_temperature_takes_argmax():
    """Temperature 0 returns the argmax of the logits."""
    logits = torch.randn(2, 12, 9)
    out = sample(lambda t: logits, torch.full((2, 12), 9), 9, steps=3, temperature=0.0)
    assert torch.equal(out, logits.argmax(-1))


def test_draw_categorical_follows_the_probabilities():
    """Inverse-CDF draws match each row's distribution (within 4 standard errors over 40,000
    draws) and never pick an entry of probability 0."""
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2], [0.0, 0.0, 0.0, 1.0], [0.25, 0.25, 0.25, 0.25]])
    draws = draw_categorical(probs[:, None].expand(3, 40_000, 4), generator=g)  # (3, 40000)
    freq = torch.stack([torch.bincount(row, minlength=4) for row in draws]).double() / 40_000
    se = (probs.double() * (1 - probs.double()) / 40_000).sqrt()
    assert ((freq - probs.double()).abs() <= 4 * se + 1e-12).all()
    assert (freq[probs == 0] == 0).all()
    assert draws.dtype == torch.int64 and draws.shape == (3, 40_000)
