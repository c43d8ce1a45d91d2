"""Properties of the vector quantizer."""

import torch

from opengenie.nn.quantize import VectorQuantizer


def test_round_trip_ids_to_codes():
    """embed(ids) returns exactly the codes the forward pass chose."""
    vq = VectorQuantizer(16, 8)
    q = vq(torch.randn(4, 5, 8))
    assert q.ids.shape == (4, 5) and q.codes.shape == (4, 5, 8)
    assert torch.allclose(vq.embed(q.ids), q.codes, atol=1e-6)


def test_codes_are_nearest():
    """Each id is the nearest codebook entry of its encoding."""
    vq = VectorQuantizer(32, 4)
    z = torch.randn(100, 4)
    q = vq(z)
    expect = torch.cdist(z, vq.codebook).argmin(dim=1)
    assert torch.equal(q.ids, expect)


def test_straight_through_gradient_reaches_encodings():
    """The gradient of a loss on the codes flows to the encodings unchanged."""
    vq = VectorQuantizer(16, 8)
    z = torch.randn(10, 8, requires_grad=True)
    q = vq(z)
    q.codes.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))


def test_losses_move_codebook():
    """The codebook loss gives the chosen codes a gradient."""
    vq = VectorQuantizer(16, 8)
    q = vq(torch.randn(10, 8))
    q.loss.backward()
    assert vq.codebook.grad[q.ids.unique()].abs().sum() > 0


def test_l2_codes_lie_on_sphere():
    """With l2_codes the returned codes have unit norm."""
    vq = VectorQuantizer(16, 8, l2_codes=True)
    q = vq(torch.randn(10, 8) * 5)
    assert torch.allclose(q.codes.norm(dim=-1), torch.ones(10), atol=1e-5)


def test_dead_code_restart_revives_unused_codes():
    """Codes never chosen for dead_code_steps training steps are re-seeded near the encodings."""
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 2, dead_code_steps=3).train()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0]] + [[100.0, 100.0]] * 7))  # 7 codes far away
    z = torch.randn(64, 2) * 0.1 + torch.tensor([5.0, 5.0])
    assert vq(z).usage.item() == 1 / 8
    for _ in range(3):
        vq(z)
    assert vq(z).usage.item() > 1 / 8  # revived codes now win some encodings
    assert (vq.codebook - 100).abs().min() > 50  # none is left far away


def test_perplexity_counts_codes_in_use():
    """Perplexity equals the number of codes when they are used evenly."""
    vq = VectorQuantizer(4, 2)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[1.0, 0], [0, 1.0], [-1.0, 0], [0, -1.0]]))
    q = vq(vq.codebook.detach().repeat(5, 1))
    assert abs(q.perplexity.item() - 4) < 1e-4 and q.usage.item() == 1.0
