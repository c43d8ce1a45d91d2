"""The seed's frame discriminator (MagViT-2's GAN loss, judged frame by frame) and GAN losses.

    disc = FrameDiscriminator(**disc_kwargs)   # the seed README's `disc_kwargs`
    logits = disc(frames)                      # frames (N, 3, H, W) in [-1, 1] → (N,)

Losses are the hinge loss (Lim & Ye 2017; used by VQGAN and MagViT-2): the discriminator
pushes real logits above +1 and fake ones below -1; the generator raises fake logits.
The discriminator is trained by its own optimiser on `discriminator_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from opengenie.nn.conv import activation, binomial_kernel


class BlurPool2d(nn.Module):
    """Anti-aliased down-sampling (Zhang 2019): binomial blur, keep every f-th pixel."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        k = binomial_kernel(factor)
        self.register_buffer("kernel", torch.outer(k, k), persistent=False)
        self.factor, self.pad = factor, factor // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        weight = self.kernel.to(x.dtype).expand(c, 1, *self.kernel.shape)  # (C, 1, k, k) depthwise
        x = F.pad(x, (self.pad,) * 4, mode="replicate")
        return F.conv2d(x, weight, stride=self.factor, groups=c)


class DiscBlock(nn.Module):
    """(GroupNorm → act → conv) × 2 + skip, then down-sampling by `down` (None: keep size).

    (N, in_dim, H, W) → (N, out_dim, H/down, W/down)
    """

    def __init__(self, in_dim: int, out_dim: int, down: int | None, kernel_size: int, num_groups: int,
                 act_fn: str, use_blur: bool) -> None:
        super().__init__()
        for dim in (in_dim, out_dim):
            if dim % num_groups:
                raise ValueError(f"num_groups={num_groups} must divide every stage width, got {dim}")
        pad = kernel_size // 2
        self.body = nn.Sequential(
            nn.GroupNorm(num_groups, in_dim), activation(act_fn), nn.Conv2d(in_dim, out_dim, kernel_size, padding=pad),
            nn.GroupNorm(num_groups, out_dim), activation(act_fn), nn.Conv2d(out_dim, out_dim, kernel_size, padding=pad),
        )
        self.skip = nn.Identity() if in_dim == out_dim else nn.Conv2d(in_dim, out_dim, 1)
        if not down or down == 1:
            self.down: nn.Module = nn.Identity()
        else:
            self.down = BlurPool2d(down) if use_blur else nn.AvgPool2d(down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.skip(x) + self.body(x))


class SpatialAttention(nn.Module):
    """Pre-norm multi-head self-attention over the H·W positions of a frame, residual."""

    def __init__(self, dim: int, num_heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * num_heads * dim_head, bias=False)
        self.out = nn.Linear(num_heads * dim_head, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        tokens = rearrange(x, "n c h w -> n (h w) c")
        q, k, v = rearrange(self.qkv(self.norm(tokens)), "n l (three g d) -> three n g l d",
                            three=3, g=self.heads)  # each (N, heads, H*W, dim_head)
        y = rearrange(F.scaled_dot_product_attention(q, k, v), "n g l d -> n l (g d)")  # (N, H*W, heads*dim_head)
        return x + rearrange(self.out(y), "n (h w) c -> n c h w", h=h, w=w)


class FrameDiscriminator(nn.Module):
    """Judges single frames: conv stem → one residual stage per `dim_mults` entry → linear logit.

    Stage i has width model_dim·dim_mults[i] and ends by down-sampling by down_step[i]
    (None: no down-sampling). With `use_attn`, stages whose output has at most
    `attn_max_tokens` positions (16×16 by default, as in lucidrains' MagViT-2) are followed by
    spatial self-attention; earlier, larger maps would cost attention quadratic in H·W.

    frames (N, inp_channels, *inp_size) float in [-1, 1] → logits (N,) (real > 0 > fake)
    """

    def __init__(self, inp_size: tuple[int, int] = (64, 64), model_dim: int = 64,
                 dim_mults: tuple[int, ...] = (1, 2, 4), down_step: tuple[int | None, ...] = (None, 2, 2),
                 inp_channels: int = 3, kernel_size: int = 3, num_groups: int = 8, act_fn: str = "leaky",
                 use_blur: bool = True, use_attn: bool = False, num_heads: int = 4, dim_head: int = 32,
                 attn_max_tokens: int = 256) -> None:
        super().__init__()
        if len(dim_mults) != len(down_step):
            raise ValueError(f"dim_mults {dim_mults} and down_step {down_step} need one entry per stage")
        self.inp_size, self.inp_channels = tuple(inp_size), inp_channels
        self.stem = nn.Conv2d(inp_channels, model_dim, kernel_size, padding=kernel_size // 2)
        layers: list[nn.Module] = []
        dim, (h, w) = model_dim, self.inp_size
        for mult, down in zip(dim_mults, down_step):
            out_dim = model_dim * mult
            layers.append(DiscBlock(dim, out_dim, down, kernel_size, num_groups, act_fn, use_blur))
            dim = out_dim
            if down and down > 1:
                if h % down or w % down:
                    raise ValueError(f"inp_size {inp_size} must be divisible by the down_step product")
                h, w = h // down, w // down
            if use_attn and h * w <= attn_max_tokens:
                layers.append(SpatialAttention(dim, num_heads, dim_head))
        self.stages = nn.Sequential(*layers)
        if min(h, w) < 2:
            raise ValueError(f"inp_size {inp_size} is down-sampled to {(h, w)}; the head needs at least 2×2")
        # A 4×4 stride-2 conv halves the final map before the linear head (fewer head weights).
        self.head = nn.Sequential(
            nn.GroupNorm(num_groups, dim), activation(act_fn),
            nn.Conv2d(dim, dim, 4, stride=2, padding=1), activation(act_fn),
            nn.Flatten(), nn.Linear(dim * (h // 2) * (w // 2), 1),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[1] != self.inp_channels or tuple(frames.shape[2:]) != self.inp_size:
            raise ValueError(f"expected frames (N, {self.inp_channels}, {self.inp_size[0]}, {self.inp_size[1]}) "
                             f"in [-1, 1], got {tuple(frames.shape)}")
        return self.head(self.stages(self.stem(frames))).squeeze(-1)  # (N,)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator: mean relu(1 - real) + mean relu(1 + fake); 0 once separated."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the generator: -mean fake logit (push fakes towards "real")."""
    return -fake_logits.mean()


def gradient_penalty(real_frames: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """R1 penalty (Mescheder et al. 2018): mean over frames of ||∂ D(x) / ∂ x||² at real x.

    `real_frames` must have had `requires_grad_()` set before computing `real_logits`. Add it to
    the discriminator loss with a small weight (e.g. 10 / 2) to keep D smooth around the data.
    """
    if not real_frames.requires_grad:
        raise ValueError("call real_frames.requires_grad_() before computing real_logits")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_frames, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
