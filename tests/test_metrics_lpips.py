"""LPIPS and its trunks: zero on identical images, growing with distortion, torchvision layer names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from opengenie.features import weights
from opengenie.features.lpips import LPIPS, VGG16, load_lpips, load_vgg16


@pytest.fixture(scope="session")
def lpips_models() -> dict[str, LPIPS]:
    weights.fetch(["vgg16", "alexnet"])
    return {net: load_lpips(net) for net in ("alexnet", "vgg16")}


def _images(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random images (N, 3, size, size) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("net", ["alexnet", "vgg16"])
def test_lpips_of_identical_images_is_zero(lpips_models: dict[str, LPIPS], net: str) -> None:
    """LPIPS(x, x) = 0 exactly."""
    x = _images()
    with torch.inference_mode():
        assert (lpips_models[net](x, x) == 0).all()


@pytest.mark.parametrize("net", ["alexnet", "vgg16"])
def test_lpips_grows_with_noise(lpips_models: dict[str, LPIPS], net: str) -> None:
    """Stronger Gaussian noise gives a larger distance, image by image; the distance is symmetric."""
    x = _images()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    with torch.inference_mode():
        d = torch.stack([lpips_models[net](x, (x + s * noise).clamp(-1, 1)) for s in (0.02, 0.1, 0.3)])
        y = (x + 0.1 * noise).clamp(-1, 1)
        torch.testing.assert_close(lpips_models[net](y, x), lpips_models[net](x, y))
    assert (d > 0).all() and (d[1:] > d[:-1]).all()


def test_lpips_on_videos_scores_each_frame(lpips_models: dict[str, LPIPS]) -> None:
    """Videos (B, 3, T, H, W) give (B, T), equal to scoring the frames as images."""
    video = _images(n=4, size=32).reshape(2, 2, 3, 32, 32).transpose(1, 2)  # (2, 3, 2, 32, 32)
    other = video.flip(-1)
    model = lpips_models["alexnet"]
    with torch.inference_mode():
        d = model(video, other)
        assert d.shape == (2, 2)
        torch.testing.assert_close(d[:, 1], model(video[:, :, 1], other[:, :, 1]))


def test_lpips_heads_are_non_negative(lpips_models: dict[str, LPIPS]) -> None:
    """The LPIPS v0.1 linear heads are non-negative channel weights (a check that they loaded)."""
    for model in lpips_models.values():
        assert all((head.weight >= 0).all() and head.weight.sum() > 0 for head in model.heads)


def test_vgg16_follows_torchvision_numbering() -> None:
    """Convs sit at torchvision's indices, so 'features.N' names the same layer in both."""
    vgg = VGG16()
    convs = [i for i, m in enumerate(vgg.features) if isinstance(m, nn.Conv2d)]
    assert convs == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert len(vgg.features) == 31 and isinstance(vgg.features[30], nn.MaxPool2d)


def test_vgg16_extracts_named_layers_with_gradients_to_the_input(lpips_models: dict[str, LPIPS]) -> None:
    """load_vgg16().extract returns the requested layers; the net is frozen but the input gets gradients."""
    vgg = load_vgg16()
    x = _images(n=1, size=32).requires_grad_(True)
    layers = ["features.6", "features.13", "features.18", "features.25"]
    feats = vgg.extract(x, layers)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "features.6": (1, 128, 16, 16), "features.13": (1, 256, 8, 8),
        "features.18": (1, 512, 4, 4), "features.25": (1, 512, 2, 2),
    }
    sum(f.pow(2).mean() for f in feats.values()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in vgg.parameters())
    with pytest.raises(ValueError, match="features.N"):
        vgg.extract(x, ["classifier.0"])


def test_lpips_gradients_are_finite(lpips_models: dict[str, LPIPS]) -> None:
    """LPIPS can serve as a loss: gradients reach the input, and stay finite where a position's
    channels are all zero (as after a ReLU)."""
    from opengenie.features.lpips import _unit_normalize

    feat = torch.zeros(1, 8, 2, 2)
    feat[0, :, 0, 0] = 1.0
    feat.requires_grad_(True)
    _unit_normalize(feat).pow(2).sum().backward()
    assert torch.isfinite(feat.grad).all()
    x = _images(n=1, size=32).requires_grad_(True)
    lpips_models["alexnet"](x, _images(n=1, size=32, seed=5)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
