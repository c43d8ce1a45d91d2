"""Training terms of a tokenizer beyond reconstruction: a perceptual distance between frozen
ImageNet VGG16 features of two videos, and a frame GAN (`TokenizerCriterion` holds both).

    perceptual = PerceptualLoss("vgg16", layers=("features.6", "features.13", "features.18", "features.25"))
    loss = perceptual(recon, video)      # videos (B, 3, T, H, W) in [-1, 1] → scalar

    criterion = TokenizerCriterion(disc_kwargs={...}, perceptual_model="vgg16")
    perceptual, gan = criterion(recon, video)           # the tokenizer's side
    criterion.discriminator_loss(recon.detach(), video)  # the discriminator's side

The VGG16 is the LPIPS trunk of `opengenie.features.lpips` (torchvision layer names), with
weights from `opengenie weights fetch`. It is loaded on first use, onto the input's device,
and is not a registered submodule: it never enters the tokenizer's state_dict, parameters or
optimiser, and a tokenizer can be built (and used to encode/decode) without the weights.

The GAN losses live beside the discriminator in `opengenie.nn.discriminator`. This is training
machinery: a world's tokenizer holds none of it; whoever trains one does (TokenizerModule, or
the seed's stand-alone `VideoTokenizer(disc_kwargs=..., perceptual_model=...)`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from einops import rearrange
from torch import nn

from opengenie.features.weights import FETCH_COMMAND


def _unit_normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    # eps inside the root: a position where every channel is 0 after a ReLU gets a zero
    # gradient instead of 0 · inf = NaN.
    return feat * torch.rsqrt(feat.pow(2).sum(dim=1, keepdim=True) + eps)


class PerceptualLoss(nn.Module):
    """Mean over `layers` of the squared distance between channel-normalised VGG16 features.

    Features are unit-normalised along channels first (as LPIPS does, without its learned
    per-channel weights) so layers of different scale count alike; the distance is summed
    over channels and averaged over positions and frames, so each layer's term lies in [0, 4].
    Videos are compared frame by frame (time folded into the batch).
    """

    def __init__(self, model: str = "vgg16",
                 layers: Sequence[str] = ("features.6", "features.13", "features.18", "features.25")) -> None:
        super().__init__()
        if model != "vgg16":
            raise ValueError(f"perceptual model must be 'vgg16', got {model!r}")
        if not layers:
            raise ValueError("perceptual loss needs at least one layer, e.g. ('features.6',)")
        self.model, self.layers = model, tuple(layers)
        self._trunk: list[nn.Module] = []  # a list, so the frozen net stays out of state_dict

    def trunk(self, device: torch.device | str | None = None) -> nn.Module:
        """The frozen VGG16, loaded on first call and moved to `device`.

        Raises:
            FileNotFoundError: the weights are not in the cache; run `opengenie weights fetch`.
        """
        if not self._trunk:
            from opengenie.features.lpips import load_vgg16

            try:
                vgg = load_vgg16()
            except FileNotFoundError as err:
                raise FileNotFoundError(f"the perceptual loss needs the ImageNet VGG16 weights: "
                                        f"run `{FETCH_COMMAND}` first ({err})") from err
            self._trunk.append(vgg)
        if device is not None and next(self._trunk[0].buffers()).device != torch.device(device):
            self._trunk[0] = self._trunk[0].to(device)
        return self._trunk[0]

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """recon, target: (B, 3, T, H, W) videos or (N, 3, H, W) frames in [-1, 1] → scalar ≥ 0.

        Gradients flow to `recon`; `target` is treated as a constant.
        """
        if recon.shape != target.shape or recon.ndim not in (4, 5) or recon.shape[1] != 3:
            raise ValueError(f"expected recon and target of one shape (B, 3, T, H, W) or (N, 3, H, W), "
                             f"got {tuple(recon.shape)} and {tuple(target.shape)}")
        if recon.ndim == 5:
            recon = rearrange(recon, "b c t h w -> (b t) c h w")  # (B*T, 3, H, W)
            target = rearrange(target, "b c t h w -> (b t) c h w")  # (B*T, 3, H, W)
        vgg = self.trunk(recon.device)
        with torch.no_grad():
            ref = vgg.extract(target, self.layers)
        out = vgg.extract(recon, self.layers)
        total = recon.new_zeros(())
        for name in self.layers:
            diff = _unit_normalize(out[name]) - _unit_normalize(ref[name])  # (N, C, H', W')
            total = total + diff.pow(2).sum(dim=1).mean()
        return total / len(self.layers)


class TokenizerCriterion(nn.Module):
    """The perceptual and GAN terms of a tokenizer's loss, and the discriminator's own loss.

    disc_kwargs: the `FrameDiscriminator`'s arguments (None: no GAN term);
    perceptual_model / perc_feat_layers: as `PerceptualLoss` (None: no perceptual term);
    gan_frames_per_batch: frames of each video the discriminator judges (drawn at random).
    The discriminator is a registered submodule (it is trained, and checkpointed with its
    trainer); the VGG16 is not (see `PerceptualLoss`).
    """

    def __init__(self, *, disc_kwargs: dict | None = None, perceptual_model: str | None = None,
                 perc_feat_layers: Sequence[str] = ("features.6", "features.13", "features.18", "features.25"),
                 gan_frames_per_batch: int = 4) -> None:
        super().__init__()
        if gan_frames_per_batch < 1:
            raise ValueError(f"gan_frames_per_batch must be ≥ 1, got {gan_frames_per_batch}")
        self.frames_per_batch = gan_frames_per_batch
        self.discriminator: nn.Module | None = None
        self.perceptual: PerceptualLoss | None = None
        if disc_kwargs is not None:
            from opengenie.nn.discriminator import FrameDiscriminator

            self.discriminator = FrameDiscriminator(**disc_kwargs)
        if perceptual_model is not None:
            self.perceptual = PerceptualLoss(perceptual_model, perc_feat_layers)

    def frames(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """`gan_frames_per_batch` random frames of each video (B, C, T, H, W): (B·k, C, H, W)."""
        b, _, t = video.shape[:3]
        k = min(self.frames_per_batch, t)
        idx = torch.rand(b, t, generator=generator, device=video.device).argsort(dim=1)[:, :k]  # (B, k)
        frames = rearrange(video, "b c t h w -> b t c h w")[torch.arange(b, device=video.device)[:, None], idx]
        return rearrange(frames, "b k c h w -> (b k) c h w")

    def forward(self, recon: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(perceptual, gan) terms of the tokenizer's loss for reconstructions of `video`, each a
        scalar with gradient to `recon` (0 where that term is not built)."""
        zero = recon.new_zeros(())
        perceptual = self.perceptual(recon, video) if self.perceptual is not None else zero
        gan = zero
        if self.discriminator is not None:
            from opengenie.nn.discriminator import generator_loss

            gan = generator_loss(self.discriminator(self.frames(recon)))
        return perceptual, gan

    def discriminator_loss(self, recon: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss on real frames of `video` vs the same frames of `recon`
        (detached: no gradient reaches the tokenizer)."""
        if self.discriminator is None:
            raise ValueError("this criterion has no discriminator (set disc_kwargs and gan_loss_weight > 0)")
        from opengenie.nn.discriminator import discriminator_loss

        gen = torch.Generator(device=video.device).manual_seed(int(torch.randint(0, 2**31, ()).item()))
        state = gen.get_state()
        real = self.frames(video, gen)
        gen.set_state(state)  # the same frames of the reconstruction as of the real video
        fake = self.frames(recon.detach(), gen)
        return discriminator_loss(self.discriminator(real), self.discriminator(fake))
