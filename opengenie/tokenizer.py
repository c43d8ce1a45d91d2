"""The video tokenizer (Genie §2.1): video → discrete tokens → video.

Default: the paper's ST-ViViT VQ-VAE — patches of 4×4 pixels, an ST-transformer encoder
(causal in time, so a frame's tokens never depend on later frames), a VQ codebook of 1024
codes × 32, and an ST-transformer decoder. Genie's ablation (Table 3) prefers it to a ViT
(per-frame) and to C-ViViT (full space-time attention) tokenizer.

Seed variant (`kind="magvit2"`): MagViT-2 conv encoder/decoder built from blueprints, a
lookup-free quantizer, and optional perceptual and GAN losses.

The perceptual network and the discriminator are training machinery (`TokenizerCriterion`):
a tokenizer built from a config holds neither, and its trainer passes them to `forward`
(`TokenizerModule`). Built from the seed's keywords, it is its own trainer, as in the seed's
`loss, aux = tokenizer(video)`, and holds the criterion its config asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from opengenie.config import TokenizerConfig
from opengenie.nn.attention import KVCache
from opengenie.nn.checks import check_video
from opengenie.nn.losses import TokenizerCriterion
from opengenie.nn.patch import PatchEmbed, PixelHead, Unpatchify
from opengenie.nn.quantize import Quantized, VectorQuantizer
from opengenie.nn.st_transformer import STTransformer

# Seed keyword → TokenizerConfig field, where the names differ.
_SEED_NAMES = {"d_codebook": "code_dim"}


def _seed_fields(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The seed's keywords as TokenizerConfig fields. `gan_discriminate` is the seed's choice of
    what the discriminator judges; 'frames' (the seed's example) is the only one built here, so
    it is accepted and has no field of its own."""
    kwargs = dict(kwargs)
    judged = kwargs.pop("gan_discriminate", "frames")
    if judged != "frames":
        raise ValueError(f"gan_discriminate={judged!r} is not supported: the discriminator judges single "
                         f"frames (gan_frames_per_batch per video); pass gan_discriminate='frames' or leave it out")
    return {_SEED_NAMES.get(k, k): v for k, v in kwargs.items()}


@dataclass
class TokenizerLoss:
    """The parts of the tokenizer's training loss (scalars) and codebook health."""

    recon: torch.Tensor
    quant: torch.Tensor
    perceptual: torch.Tensor
    gan: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(vars(self))


def _terms(config: TokenizerConfig) -> tuple[bool, bool]:
    """Whether `config` asks for a GAN term and for a perceptual term (a model named, weight > 0)."""
    return (config.disc_kwargs is not None and config.gan_loss_weight > 0,
            config.perceptual_model is not None and config.perc_loss_weight > 0)


def criterion_for(config: TokenizerConfig) -> TokenizerCriterion | None:
    """The perceptual and GAN terms `config` asks for, or None if it asks for neither."""
    gan, perceptual = _terms(config)
    if not (gan or perceptual):
        return None
    return TokenizerCriterion(disc_kwargs=config.disc_kwargs if gan else None,
                              perceptual_model=config.perceptual_model if perceptual else None,
                              perc_feat_layers=config.perc_feat_layers,
                              gan_frames_per_batch=config.gan_frames_per_batch)


# Fields that only shape how ids are drawn back into frames: a tokenizer that differs from
# another only in these gives the same ids (`same_tokens`), so a decoder can grow a head later.
DECODER_FIELDS = ("pixel_head_channels", "pixel_head_blocks")


def same_tokens(a: TokenizerConfig, b: TokenizerConfig) -> bool:
    """Whether two tokenizer configs build the same token side (all but DECODER_FIELDS equal)."""
    plain = dict.fromkeys(DECODER_FIELDS, 0)
    return replace(a, **plain) == replace(b, **plain)


def config_from_seed(**kwargs: Any) -> TokenizerConfig:
    """A TokenizerConfig from the seed README's keywords (enc_desc, dec_desc, d_codebook, ...)."""
    fields = _seed_fields(kwargs)
    if "enc_desc" in fields:
        fields.setdefault("kind", "magvit2")
        code_dim, n_codebook = fields.get("code_dim", 18), fields.get("n_codebook", 1)
        fields.setdefault("codebook_size", 2 ** (code_dim // n_codebook))
    return TokenizerConfig(**fields)


class VideoTokenizer(nn.Module):
    """Video `(B, C, T, H, W)` float in [-1, 1] ⇄ codes `(B, D, T', H', W')` / ids `(B, T', H', W')`.

    Build it from a config (`VideoTokenizer(presets.tiny().tokenizer)`) or from the seed's
    keywords (`VideoTokenizer(enc_desc=..., dec_desc=..., d_codebook=18, ...)`).
    """

    # The modules that decide a clip's token ids; the rest (from_code, decoder_pos, decoder,
    # unpatch, pixel_head) only turn ids back into frames, so a decoder trained further keeps every id.
    TOKEN_SIDE = ("embed", "encoder", "to_code", "quantizer")

    def __init__(self, config: TokenizerConfig | None = None, **seed_kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = config_from_seed(**seed_kwargs)
        elif seed_kwargs:
            config = replace(config, **_seed_fields(seed_kwargs))
        self.config = c = config
        # The seed's stand-alone tokenizer trains itself; one built from a config leaves it to its trainer.
        self.criterion = criterion_for(c) if seed_kwargs else None
        self.pixel_head: PixelHead | None = None
        if c.kind == "st-vivit":
            self.embed = PatchEmbed(c.in_channels, c.patch_size, c.dim, c.grid)
            self.encoder = STTransformer(c.dim, c.depth, c.heads, mlp_ratio=c.mlp_ratio)
            self.to_code = nn.Linear(c.dim, c.code_dim)
            self.quantizer = VectorQuantizer(c.codebook_size, c.code_dim, commitment_weight=c.commitment_weight,
                                             l2_codes=c.l2_codes, dead_code_steps=c.dead_code_steps)
            self.from_code = nn.Linear(c.code_dim, c.dim)
            self.decoder_pos = nn.Parameter(torch.randn(c.grid[0] * c.grid[1], c.dim) * 0.02)  # (N, D)
            self.decoder = STTransformer(c.dim, c.decoder_depth, c.heads, mlp_ratio=c.mlp_ratio)
            self.unpatch = Unpatchify(c.dim, c.in_channels, c.patch_size, c.grid)
            if c.pixel_head_channels:
                self.pixel_head = PixelHead(c.dim, c.in_channels, c.patch_size, c.grid, c.pixel_head_channels,
                                            c.pixel_head_blocks)
        else:
            self._build_magvit2(c)

    def _build_magvit2(self, c: TokenizerConfig) -> None:
        from opengenie.nn.blueprint import build
        from opengenie.nn.lfq import LookupFreeQuantizer

        self.encoder = build(c.enc_desc)
        self.decoder = build(c.dec_desc)
        self.quantizer = LookupFreeQuantizer(
            c.code_dim, n_codebook=c.n_codebook, bias=c.lfq_bias, frac_sample=c.lfq_frac_sample,
            commitment_weight=c.lfq_commit_weight, entropy_weight=c.lfq_entropy_weight,
            diversity_weight=c.lfq_diversity_weight)

    # --- the verbs -----------------------------------------------------------------------

    def _check(self, video: torch.Tensor) -> None:
        c = self.config
        if c.kind == "st-vivit":
            check_video(video, c.in_channels, c.patch_size, c.image_size)
        else:
            check_video(video, c.in_channels)

    def quantize(self, video: torch.Tensor) -> Quantized:
        """Encode and quantise: `Quantized` with codes (B, T', H', W', D) channel-last."""
        self._check(video)
        c = self.config
        if c.kind == "st-vivit":
            z = self.to_code(self.encoder(self.embed(video)))  # (B, T, N, D_code)
            z = rearrange(z, "b t (h w) d -> b t h w d", h=c.grid[0])
        else:
            z = rearrange(self.encoder(video), "b d t h w -> b t h w d")
        return self.quantizer(z)

    def tokenize(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, C, T, H, W) in [-1, 1] → (codes (B, D, T', H', W'), ids (B, T', H', W') int64)."""
        q = self.quantize(video)
        return rearrange(q.codes, "b t h w d -> b d t h w"), q.ids

    def decode(self, codes: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """codes (B, D, T', H', W') → video (B, C, T, H, W), roughly in [-1, 1].

        With a `cache`, only the given (newest) frames are decoded; earlier frames are read from
        the cache. Decoding is causal in time: frame t depends on codes of frames ≤ t.
        """
        if self.config.kind != "st-vivit":
            if cache is not None:
                raise ValueError("cached decoding needs the st-vivit tokenizer")
            return self.decoder(codes)
        if codes.dim() != 5 or codes.shape[1] != self.config.code_dim:
            raise ValueError(f"expected codes (B, {self.config.code_dim}, T, H', W'), got {tuple(codes.shape)}")
        x = self.from_code(rearrange(codes, "b d t h w -> b t (h w) d")) + self.decoder_pos  # (B, T, N, D)
        tokens = self.decoder(x, cache=cache)
        patches = self.unpatch(tokens)
        return patches if self.pixel_head is None else self.pixel_head(tokens, patches)

    def decode_ids(self, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """ids (B, T', H', W') int64 → video (B, C, T, H, W)."""
        codes = self.quantizer.embed(ids)  # (B, T', H', W', D)
        return self.decode(rearrange(codes, "b t h w d -> b d t h w"), cache=cache)

    def reconstruct(self, video: torch.Tensor) -> torch.Tensor:
        """video → its reconstruction through the codes, (B, C, T, H, W)."""
        return self.decode(self.tokenize(video)[0])

    def forward(self, video: torch.Tensor, criterion: TokenizerCriterion | None = None
                ) -> tuple[torch.Tensor, TokenizerLoss]:
        """Training loss of a batch: (loss, TokenizerLoss with its parts).

        criterion: the perceptual and GAN terms (default: the tokenizer's own, which only the
        seed's keywords build); a config that asks for them needs one.
        """
        c = self.config
        criterion = criterion if criterion is not None else self.criterion
        if criterion is None and any(_terms(c)):
            raise ValueError("this tokenizer's config asks for perceptual or GAN terms, which are its trainer's: "
                             "pass criterion=opengenie.tokenizer.criterion_for(config), or train it with "
                             "TokenizerModule")
        q = self.quantize(video)
        recon = self.decode(rearrange(q.codes, "b t h w d -> b d t h w"))
        zero = video.new_zeros(())
        parts = TokenizerLoss(recon=F.mse_loss(recon.float(), video.float()), quant=q.loss,
                              perceptual=zero, gan=zero, perplexity=q.perplexity, usage=q.usage)
        if criterion is not None:
            parts.perceptual, parts.gan = criterion(recon, video)
        loss = (parts.recon + c.quant_loss_weight * parts.quant + c.perc_loss_weight * parts.perceptual
                + c.gan_loss_weight * parts.gan)
        return loss, parts

    def discriminator_loss(self, video: torch.Tensor, criterion: TokenizerCriterion | None = None) -> torch.Tensor:
        """The discriminator's loss on real frames vs the current reconstructions (no gradient to
        the tokenizer). criterion: as in `forward` (default: the seed-built tokenizer's own)."""
        criterion = criterion if criterion is not None else self.criterion
        if criterion is None or criterion.discriminator is None:
            raise ValueError("this tokenizer has no discriminator (build it from the seed's keywords with "
                             "disc_kwargs and gan_loss_weight > 0, or train it with TokenizerModule)")
        with torch.no_grad():
            recon = self.reconstruct(video)
        return criterion.discriminator_loss(recon, video)
