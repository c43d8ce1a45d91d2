"""Lookup-free quantizer: exact round trips, straight-through gradients, entropy terms."""

from __future__ import annotations

import math

import pytest
import torch

from opengenie.nn.lfq import LookupFreeQuantizer


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("code_dim, n_codebook, ids_shape", [(18, 1, (2, 3, 4, 4)), (12, 3, (2, 3, 4, 4, 3))])
def test_embed_of_ids_gives_back_the_codes(code_dim: int, n_codebook: int, ids_shape: tuple[int, ...]) -> None:
    """codes are exactly ±1, ids have shape (...) or (..., n_codebook), and embed(ids) == codes."""
    q = LookupFreeQuantizer(code_dim, n_codebook)
    out = q(torch.randn(2, 3, 4, 4, code_dim))
    assert out.ids.shape == ids_shape and out.ids.dtype == torch.int64
    assert ((out.codes == 1) | (out.codes == -1)).all()
    assert 0 <= out.ids.min() and out.ids.max() < q.codebook_size == 2 ** (code_dim // n_codebook)
    assert torch.equal(q.embed(out.ids), out.codes)
    assert torch.equal(q.codes_to_ids(q.embed(out.ids)), out.ids)


def test_ids_read_bits_most_significant_first() -> None:
    """Code (+1, -1, +1, +1) is id 0b1011 = 11."""
    q = LookupFreeQuantizer(4, bias=False)
    assert q(torch.tensor([[0.5, -0.5, 0.2, 0.9]])).ids.tolist() == [11]


def test_straight_through_gradient_reaches_the_input() -> None:
    """d codes / d z is the identity: the gradient of sum(w · codes) w.r.t. z is w, and the bias gets it too."""
    q = LookupFreeQuantizer(6)
    z = torch.randn(5, 6, requires_grad=True)
    w = torch.randn(5, 6)
    (q(z).codes * w).sum().backward()
    torch.testing.assert_close(z.grad, w)
    torch.testing.assert_close(q.bias.grad, w.sum(0))


def test_loss_gradient_reaches_the_input() -> None:
    """The quantizer loss (commitment + entropies) gives the encodings a non-zero gradient."""
    z = torch.randn(4, 8, 8, 18, requires_grad=True)
    LookupFreeQuantizer(18)(z).loss.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_diversity_loss_is_lower_for_spread_codes() -> None:
    """Codes spread over the codebook give a lower loss than one collapsed code (other terms equal)."""
    q = LookupFreeQuantizer(8, bias=False)
    spread = (torch.randint(0, 2, (512, 8)) * 2 - 1).float() * 3  # confident, random bits
    collapsed = torch.full((512, 8), 3.0)  # confident, always the same code
    out_spread, out_collapsed = q(spread), q(collapsed)
    assert 0 <= out_spread.loss < out_collapsed.loss - 5 * math.log(2)
    _, codebook_entropy = q.entropies(spread)
    assert codebook_entropy == pytest.approx(q.max_entropy, rel=0.01)  # every bit used half the time
    assert out_collapsed.perplexity == pytest.approx(1.0) and out_collapsed.usage == 1 / 256
    assert out_spread.perplexity > 100


def test_per_sample_entropy_is_lower_for_confident_encodings() -> None:
    """Encodings far from the decision threshold have a lower per-sample entropy than ones near 0."""
    q = LookupFreeQuantizer(8, bias=False)
    signs = (torch.randint(0, 2, (256, 8)) * 2 - 1).float()
    confident, _ = q.entropies(signs * 3.0)
    unsure, _ = q.entropies(signs * 0.01)
    assert confident < 0.01 < 8 * math.log(2) * 0.99 < unsure


def test_diversity_term_revives_a_collapsed_codebook() -> None:
    """Minimising the LFQ loss alone moves encodings that all share one code onto many codes."""
    z = (torch.full((256, 6), 0.5) + 0.1 * torch.randn(256, 6)).requires_grad_()
    q = LookupFreeQuantizer(6, bias=False)
    assert q(z).usage == 1 / 64
    opt = torch.optim.SGD([z], lr=3.0)
    for _ in range(80):
        opt.zero_grad()
        q(z).loss.backward()
        opt.step()
    out = q(z)
    assert out.usage > 0.5 and out.perplexity > 16


def test_frac_sample_and_seed_sized_input() -> None:
    """The seed's 18-bit codebook runs on its full latent batch (4 × 8 × 16 × 16) with frac_sample < 1;
    in eval mode the loss is deterministic."""
    q = LookupFreeQuantizer(18, frac_sample=0.25)
    z = torch.randn(4, 8, 16, 16, 18, requires_grad=True)
    out = q(z)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.ids.shape == (4, 8, 16, 16)
    q.eval()  # evaluation estimates the entropies on every position: the same loss each call
    with torch.no_grad():
        assert q(z).loss == q(z).loss


def test_bad_inputs_raise_value_errors() -> None:
    """Mismatched code_dim, indivisible codebooks, ids out of range fail with a ValueError."""
    with pytest.raises(ValueError, match=r"\(\.\.\., 18\)"):
        LookupFreeQuantizer(18)(torch.randn(2, 16))
    with pytest.raises(ValueError, match="divisible"):
        LookupFreeQuantizer(18, n_codebook=4)
    with pytest.raises(ValueError, match="ids must lie"):
        LookupFreeQuantizer(4).embed(torch.tensor([16]))
    with pytest.raises(ValueError, match="frac_sample"):
        LookupFreeQuantizer(4, frac_sample=0.0)
