"""Properties of the vector quantizer."""

import torch

from opengenie.nn.quantize import VectorQuantizer, kmeans


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


def _blobs(n_per: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Four tight, far-apart clusters in 2-D and their centres."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[10.0, 0], [0, 10.0], [-10.0, 0], [0, -10.0]])
    return (centres.repeat_interleave(n_per, 0) + 0.1 * torch.randn(4 * n_per, 2, generator=g)), centres


def test_kmeans_finds_separated_clusters():
    """k-means (k-means++ seeding) puts one centre on each of four separated clusters."""
    torch.manual_seed(0)
    points, centres = _blobs()
    found = kmeans(points, 4)
    assert torch.cdist(centres, found).min(1).values.max() < 0.1


def test_warmup_passes_encodings_then_places_codes_by_kmeans():
    """During the warm-up, training passes return the noisy encodings with zero loss; the step
    after, the codebook is k-means over the remembered encodings and quantisation starts."""
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, warmup_steps=3, warmup_noise=0.0).train()
    start = vq.codebook.detach().clone()
    points, centres = _blobs()
    for step in range(3):
        z = points[torch.randperm(len(points))[:64]].requires_grad_()
        q = vq(z)
        assert q.loss.item() == 0 and torch.equal(q.codes, z)  # unquantised (no noise here)
        q.codes.sum().backward()
        assert torch.equal(z.grad, torch.ones_like(z))
    assert torch.equal(vq.codebook, start) and int(vq.steps_taken) == 3
    q = vq(points[:50])  # step 4, one cluster only: codes placed from the remembered ones, then quantised
    assert torch.cdist(centres, vq.codebook.detach()).min(1).values.max() < 0.1
    assert torch.allclose(q.codes, vq.codebook.detach()[q.ids], atol=1e-5) and q.ids.unique().numel() == 1
    assert q.loss.item() > 0


def test_warmup_memory_keeps_the_latest_encodings():
    """The ring of remembered encodings wraps around and holds the newest ones."""
    vq = VectorQuantizer(2, 1, warmup_steps=10, warmup_memory=5).train()
    for start in (0, 3, 6):
        vq(torch.arange(start, start + 3, dtype=torch.float32)[:, None])
    assert sorted(vq.memory.flatten().tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0]


def test_warmup_noise_and_eval():
    """Warm-up noise perturbs the codes in training only; eval passes always quantise."""
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 8, l2_codes=True, warmup_steps=5)
    z = torch.randn(16, 8)
    codes = vq.train()(z).codes
    assert not torch.allclose(codes, torch.nn.functional.normalize(z, dim=-1))
    assert torch.allclose(codes.norm(dim=-1), torch.ones(16), atol=1e-5)
    q = vq.eval()(z)
    assert torch.allclose(q.codes, vq.embed(q.ids)) and int(vq.steps_taken) == 1


def test_warmup_step_count_is_checkpointed():
    """The step count travels with the weights, so a loaded model does not warm up again; the
    remembered encodings do not, and a quantizer without warm-up keeps its old keys."""
    assert set(VectorQuantizer(4, 2).state_dict()) == {"codebook", "idle_steps"}
    vq = VectorQuantizer(4, 2, warmup_steps=2).train()
    for _ in range(3):
        vq(torch.randn(8, 2))
    state = vq.state_dict()
    assert set(state) == {"codebook", "idle_steps", "steps_taken"}
    fresh = VectorQuantizer(4, 2, warmup_steps=2).train()
    fresh.load_state_dict(state)
    book = fresh.codebook.detach().clone()
    q = fresh(torch.randn(8, 2) + 50)  # past the warm-up: quantised, and no second k-means onto these
    assert q.loss.item() > 0 and int(fresh.steps_taken) == 3
    assert torch.equal(fresh.codebook.detach(), book)
