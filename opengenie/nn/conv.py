"""MagViT-2 convolution blocks (Yu et al. 2023) for the seed's conv tokenizer variant.

Every block maps a video `(B, C, T, H, W)` to a video and is registered for blueprints.
Causality in time means: output frame t depends only on input frames <= t. A block that
down-samples time by f groups frames: output frame i summarises input frames f·i .. f·i+f-1
and sees nothing later. A block that up-samples time by f turns frame t into frames
f·t .. f·t+f-1 (depth-to-time), so it never looks ahead either.

Normalisation is GroupNorm taken per frame: statistics pooled over the whole clip would let
future frames change the present one and break causality.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from opengenie.nn.blueprint import register


def _triple(v: int | tuple[int, ...], name: str) -> tuple[int, int, int]:
    if isinstance(v, int):
        return (v, v, v)
    if len(v) != 3:
        raise ValueError(f"{name} must be an int or a (time, height, width) triple, got {v!r}")
    return tuple(int(x) for x in v)  # type: ignore[return-value]


def _factors(v: int | tuple[int, int] | None, name: str) -> tuple[int, int]:
    """A re-sampling factor as (time, space): an int applies to both."""
    if v is None:
        return (1, 1)
    if isinstance(v, int):
        return (v, v)
    if len(v) != 2 or min(v) < 1:
        raise ValueError(f"{name} must be an int or a (time, space) pair of factors >= 1, got {v!r}")
    return (int(v[0]), int(v[1]))


def activation(name: str) -> nn.Module:
    """'silu' (MagViT-2's choice, also 'swish'), 'leaky' (LeakyReLU 0.1) or 'relu'."""
    acts = {"silu": nn.SiLU, "swish": nn.SiLU, "leaky": lambda: nn.LeakyReLU(0.1), "relu": nn.ReLU}
    if name not in acts:
        raise ValueError(f"act_fn must be one of {sorted(acts)}, got {name!r}")
    return acts[name]()


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over (C/G, H, W) of each frame separately, so it stays causal in time."""

    def __init__(self, num_groups: int, channels: int) -> None:
        if channels % num_groups:
            raise ValueError(f"num_groups={num_groups} must divide the channels ({channels})")
        super().__init__(num_groups, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = super().forward(rearrange(x, "b c t h w -> (b t) c h w"))  # (B*T, C, H, W)
        return rearrange(y, "(b t) c h w -> b c t h w", b=b)


@register("causal", "causal_conv")
class CausalConv3d(nn.Module):
    """Conv3d padded in time on the past side only; space is padded to keep `H/stride`.

    With time stride s, output frame i reads input frames up to s·i + s - 1 (the whole of its
    group of s frames, never beyond), so `T` divisible by s gives `T/s` frames and no frame is
    dropped. This needs the time kernel to be at least s.

    video (B, in_channels, T, H, W) → (B, out_channels, T/s_t, H/s_h, W/s_w)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int] = 3,
                 stride: int | tuple[int, int, int] = 1, bias: bool = True) -> None:
        super().__init__()
        kt, kh, kw = _triple(kernel_size, "kernel_size")
        st, sh, sw = _triple(stride, "stride")
        if kt < st:
            raise ValueError(f"time kernel ({kt}) must be >= time stride ({st}) or frames are skipped")
        self.in_channels, self.time_stride = in_channels, st
        # F.pad order: (w_left, w_right, h_top, h_bottom, t_past, t_future).
        self.pad = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2, kt - st, 0)
        self.conv = nn.Conv3d(in_channels, out_channels, (kt, kh, kw), stride=(st, sh, sw), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected video (B, {self.in_channels}, T, H, W), got {tuple(x.shape)}")
        if x.shape[2] % self.time_stride:
            raise ValueError(f"frames T={x.shape[2]} must be divisible by the time stride {self.time_stride}")
        return self.conv(F.pad(x, self.pad))


def binomial_kernel(factor: int) -> torch.Tensor:
    """1-D binomial low-pass filter of length factor + 1 ([1, 2, 1]/4 for factor 2), sums to 1."""
    k = torch.tensor([1.0])
    for _ in range(factor):
        k = torch.cat([k, torch.zeros(1)]) + torch.cat([torch.zeros(1), k])
    return k / k.sum()


class BlurPool3d(nn.Module):
    """Anti-aliased down-sampling (Zhang 2019): binomial blur, then keep every f-th sample.

    Time is blurred causally: output frame i mixes frames f·i - 1 .. f·i + f - 1, edges
    replicated. Space is padded symmetrically. (B, C, T, H, W) → (B, C, T/f_t, H/f_s, W/f_s).
    """

    def __init__(self, time_factor: int, space_factor: int) -> None:
        super().__init__()
        self.ft, self.fs = time_factor, space_factor
        kt = binomial_kernel(time_factor) if time_factor > 1 else torch.ones(1)
        ks = binomial_kernel(space_factor) if space_factor > 1 else torch.ones(1)
        self.register_buffer("kernel", torch.einsum("t,h,w->thw", kt, ks, ks), persistent=False)
        ps = space_factor // 2 if space_factor > 1 else 0
        self.pad = (ps, ps, ps, ps, 1 if time_factor > 1 else 0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        weight = self.kernel.to(x.dtype).expand(c, 1, *self.kernel.shape)  # (C, 1, kt, kh, kw) depthwise
        x = F.pad(x, self.pad, mode="replicate")
        return F.conv3d(x, weight, stride=(self.ft, self.fs, self.fs), groups=c)


class GroupPool3d(nn.Module):
    """Down-sampling by averaging each (f_t, f_s, f_s) group: causal in the grouping sense."""

    def __init__(self, time_factor: int, space_factor: int) -> None:
        super().__init__()
        self.size = (time_factor, space_factor, space_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(x, self.size)


class RepeatUpsample(nn.Module):
    """Nearest-neighbour up-sampling: frame t → frames f·t .. f·t+f-1, pixel → f_s × f_s block."""

    def __init__(self, time_factor: int, space_factor: int) -> None:
        super().__init__()
        self.ft, self.fs = time_factor, space_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.repeat_interleave(self.ft, dim=2).repeat_interleave(self.fs, dim=3)
        return x.repeat_interleave(self.fs, dim=4)  # (B, C, T*f_t, H*f_s, W*f_s)


def _conv(in_channels: int, out_channels: int, kernel_size: int | tuple, causal: bool) -> nn.Module:
    """A stride-1 conv that keeps (T, H, W); time padding past-only when `causal`."""
    if causal:
        return CausalConv3d(in_channels, out_channels, kernel_size)
    k = _triple(kernel_size, "kernel_size")
    if any(x % 2 == 0 for x in k):
        raise ValueError(f"a non-causal conv needs odd kernel sizes to keep the shape, got {k}")
    return nn.Conv3d(in_channels, out_channels, k, padding=tuple(x // 2 for x in k))


@register("residual", "residual_block")
class ResidualBlock(nn.Module):
    """(GroupNorm → act → conv) × 2 plus a skip (1×1×1 conv when the width changes).

    `upsample` (nearest-neighbour repeat) is applied to the input before both paths;
    `downsample` (blur pooling with `use_blur`, else group averaging) to the sum after them.
    Factors are an int (time and space) or a (time, space) pair.

    video (B, in_channels, T, H, W) → (B, out_channels, T·u_t/d_t, H·u_s/d_s, W·u_s/d_s)
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, kernel_size: int | tuple = 3,
                 num_groups: int = 1, downsample: int | tuple[int, int] | None = None,
                 upsample: int | tuple[int, int] | None = None, use_causal: bool = False,
                 use_blur: bool = False, act_fn: str = "silu") -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.in_channels = in_channels
        down, up = _factors(downsample, "downsample"), _factors(upsample, "upsample")
        self.up = RepeatUpsample(*up) if up != (1, 1) else nn.Identity()
        self.body = nn.Sequential(
            FrameGroupNorm(num_groups, in_channels), activation(act_fn),
            _conv(in_channels, out_channels, kernel_size, use_causal),
            FrameGroupNorm(num_groups, out_channels), activation(act_fn),
            _conv(out_channels, out_channels, kernel_size, use_causal),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, 1)
        if down == (1, 1):
            self.down: nn.Module = nn.Identity()
        else:
            self.down = BlurPool3d(*down) if use_blur else GroupPool3d(*down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected video (B, {self.in_channels}, T, H, W), got {tuple(x.shape)}")
        x = self.up(x)
        return self.down(self.skip(x) + self.body(x))


@register("proj_out")
class ProjectOut(nn.Module):
    """GroupNorm → SiLU → conv to `out_channels` (the encoder's last block before quantization,
    the decoder's last before pixels). Causal by default, like the `causal` block.

    video (B, in_channels, T, H, W) → (B, out_channels, T, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, num_groups: int = 1,
                 kernel_size: int | tuple = 3, use_causal: bool = True, act_fn: str = "silu") -> None:
        super().__init__()
        self.net = nn.Sequential(FrameGroupNorm(num_groups, in_channels), activation(act_fn),
                                 _conv(in_channels, out_channels, kernel_size, use_causal))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register("spacetime_downsample")
class SpaceTimeDownsample(nn.Module):
    """Learned down-sampling: a causal conv strided by (time_factor, space_factor, space_factor).

    Output frame i reads input frames up to f·i + f - 1 (its own group), never later ones.
    video (B, in_channels, T, H, W) → (B, out_channels, T/f_t, H/f_s, W/f_s)
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, kernel_size: int | tuple = 3,
                 time_factor: int = 2, space_factor: int = 2) -> None:
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels or in_channels, kernel_size,
                                 stride=(time_factor, space_factor, space_factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@register("spacetime_upsample", "depth2spacetime")
class SpaceTimeUpsample(nn.Module):
    """Learned up-sampling: a causal conv to f_t·f_s²× the channels, then depth-to-space/time.

    Frame t becomes frames f_t·t .. f_t·t+f_t-1, so no output frame depends on a later input.
    The conv starts as if each of the f_t·f_s² sub-positions shared one filter (ICNR init,
    Aitken et al. 2017), i.e. as nearest-neighbour up-sampling: no checkerboard at the start.
    video (B, in_channels, T, H, W) → (B, out_channels, T·f_t, H·f_s, W·f_s)
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, kernel_size: int | tuple = 3,
                 time_factor: int = 2, space_factor: int = 2) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.ft, self.fs = time_factor, space_factor
        n_sub = time_factor * space_factor**2
        self.conv = CausalConv3d(in_channels, out_channels * n_sub, kernel_size)
        with torch.no_grad():  # ICNR: copy one filter per output channel to all its sub-positions
            w = self.conv.conv.weight[:out_channels]  # (C_out, C_in, kt, kh, kw)
            self.conv.conv.weight.copy_(w.repeat_interleave(n_sub, dim=0))
            self.conv.conv.bias.copy_(self.conv.conv.bias[:out_channels].repeat_interleave(n_sub))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (B, C_out*f_t*f_s*f_s, T, H, W)
        return rearrange(x, "b (c ft fh fw) t h w -> b c (t ft) (h fh) (w fw)",
                         ft=self.ft, fh=self.fs, fw=self.fs)  # (B, C_out, T*f_t, H*f_s, W*f_s)
