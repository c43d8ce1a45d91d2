"""Typed configs: one frozen dataclass per model and one for the whole world.

A config is saved with the weights (`config.json`), so loading needs only a path. Invariants
are checked in `__post_init__` with a message that says what to change.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal


ARROWS = ("ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown")


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


def _check_grid(name: str, image_size: tuple[int, int], patch_size: int) -> None:
    h, w = image_size
    _check(h % patch_size == 0 and w % patch_size == 0,
           f"{name}: image_size {image_size} must be divisible by patch_size={patch_size}; "
           f"pick a patch size that divides both sides")


def _check_heads(name: str, dim: int, heads: int) -> None:
    _check(dim % heads == 0, f"{name}: dim={dim} must be divisible by heads={heads}")


@dataclass(frozen=True)
class TokenizerConfig:
    """The video tokenizer: ST-ViViT VQ-VAE (Genie §2.1) or the seed's MagViT-2 conv variant."""

    kind: Literal["st-vivit", "magvit2"] = "st-vivit"
    """Backbone: the paper's ST-transformer VQ-VAE, or MagViT-2 conv blocks with LFQ."""
    image_size: tuple[int, int] = (64, 64)
    """Frame height and width in pixels."""
    in_channels: int = 3
    """Channels of the input video."""
    patch_size: int = 4
    """Side of the square patch that becomes one token (Genie: 4)."""
    dim: int = 512
    """Width of the ST-transformer."""
    depth: int = 8
    """Encoder layers (ST blocks)."""
    decoder_depth: int = 8
    """Decoder layers (ST blocks)."""
    heads: int = 8
    """Attention heads."""
    mlp_ratio: float = 4.0
    """Feed-forward hidden width over `dim`."""
    max_frames: int = 16
    """Longest clip trained on; rollouts slide a window of this many frames."""
    codebook_size: int = 1024
    """Number of codes (Genie: 1024)."""
    code_dim: int = 32
    """Dimension of one code (Genie: 32)."""
    l2_codes: bool = True
    """Compare l2-normalised codes and encodings (cosine similarity): better codebook usage."""
    commitment_weight: float = 0.25
    """Weight of the commitment loss (encoder pulled towards its code)."""
    dead_code_steps: int = 100
    """Re-seed codes unused for this many training steps from recent encodings; 0 turns it off."""
    # --- the MagViT-2 variant (kind="magvit2"); see opengenie.nn.conv / lfq ---
    enc_desc: tuple | None = None
    """Encoder blueprint: a sequence of (block name, kwargs)."""
    dec_desc: tuple | None = None
    """Decoder blueprint."""
    disc_kwargs: dict | None = None
    """Frame discriminator keywords (None: no GAN loss)."""
    n_codebook: int = 1
    """LFQ: number of codebooks the code channels are split into."""
    lfq_bias: bool = True
    """LFQ: learnable bias before the sign."""
    lfq_frac_sample: float = 1.0
    """LFQ: fraction of positions used to estimate the entropy terms."""
    lfq_commit_weight: float = 0.25
    """LFQ: commitment weight."""
    lfq_entropy_weight: float = 0.1
    """LFQ: per-sample entropy weight (confident codes)."""
    lfq_diversity_weight: float = 1.0
    """LFQ: batch entropy weight (use every code)."""
    perceptual_model: str | None = None
    """Perceptual loss network ('vgg16'), or None for none."""
    perc_feat_layers: tuple[str, ...] = ("features.6", "features.13", "features.18", "features.25")
    """Layers whose features the perceptual loss compares."""
    gan_discriminate: Literal["frames", "video"] = "frames"
    """What the discriminator judges."""
    gan_frames_per_batch: int = 4
    """Frames drawn from each video for the frame discriminator."""
    gan_loss_weight: float = 0.0
    """Generator adversarial loss weight; 0 switches the GAN off."""
    perc_loss_weight: float = 1.0
    """Perceptual loss weight."""
    quant_loss_weight: float = 1.0
    """Quantizer loss weight."""

    def __post_init__(self) -> None:
        _check(self.kind in ("st-vivit", "magvit2"), f"tokenizer kind must be 'st-vivit' or 'magvit2', got {self.kind!r}")
        if self.kind == "st-vivit":
            _check_grid("tokenizer", self.image_size, self.patch_size)
            _check_heads("tokenizer", self.dim, self.heads)
        else:
            _check(self.enc_desc is not None and self.dec_desc is not None,
                   "a magvit2 tokenizer needs enc_desc and dec_desc blueprints")
        _check(self.codebook_size >= 2, f"codebook_size must be >= 2, got {self.codebook_size}")

    @property
    def grid(self) -> tuple[int, int]:
        """Tokens per frame along (H', W') for the ST-ViViT tokenizer."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size


@dataclass(frozen=True)
class LatentActionConfig:
    """The latent action model (Genie §2.1): pixels → a tiny codebook of actions."""

    image_size: tuple[int, int] = (64, 64)
    """Frame height and width in pixels."""
    in_channels: int = 3
    """Channels of the input video."""
    patch_size: int = 16
    """Patch side (Genie: 16)."""
    dim: int = 512
    """Width of the ST-transformers."""
    depth: int = 8
    """Encoder layers."""
    decoder_depth: int = 8
    """Decoder layers."""
    heads: int = 8
    """Attention heads."""
    mlp_ratio: float = 4.0
    """Feed-forward hidden width over `dim`."""
    max_frames: int = 16
    """Longest clip trained on."""
    codebook_size: int = 8
    """Number of latent actions (Genie: 8 on Platformers, 6 on CoinRun)."""
    code_dim: int = 32
    """Dimension of one action embedding."""
    l2_codes: bool = True
    """Compare l2-normalised codes and encodings (cosine similarity)."""
    commitment_weight: float = 0.25
    """Weight of the VQ commitment loss."""
    dead_code_steps: int = 100
    """Re-seed actions unused for this many training steps; 0 turns it off."""
    codebook_warmup_steps: int = 0
    """Train this many steps through a noisy continuous bottleneck, then place the codes by
    k-means over the latest encodings (see `VectorQuantizer`); 0 (Genie) quantises from the
    first step. On the synthetic moving-square world, 250 of 300 steps lift NMI with the
    "pairs" encoder from 0.72 to 0.895 (0.83–0.90 over five seeds)."""
    encoder: Literal["causal", "pairs"] = "causal"
    """How a_t is read. "causal" (Genie): one causal pass over x_1..T; a_t from how frame t+1's
    features differ from frame t's. "pairs": each transition on its own, the frames (x_t, x_t+1)
    stacked per patch and read against the still pair (x_t, x_t); about twice the encoder's cost.
    On the synthetic moving-square world "pairs" separates the moves faster: NMI 0.60–0.73 vs
    0.3–0.63 after 300 steps of the tiny preset, over seeds."""

    decoder_context: Literal["clip", "frame"] = "clip"
    """What the decoder sees besides a_t when it predicts x_t+1. "clip" (Genie): x_1..t, so it can
    carry on any motion under way and a_t need only say how the motion *changes*. "frame": x_t
    alone, so a_t must say the whole motion (walking right, rising): what a player holding one
    action expects. On CoinRun "clip" gave codes of vertical speed changes only (jumps, landings)."""

    def __post_init__(self) -> None:
        _check(self.encoder in ("causal", "pairs"), f"action encoder must be 'causal' or 'pairs', got {self.encoder!r}")
        _check(self.decoder_context in ("clip", "frame"),
               f"action decoder_context must be 'clip' or 'frame', got {self.decoder_context!r}")
        _check(self.codebook_warmup_steps >= 0, f"codebook_warmup_steps must be ≥ 0, got {self.codebook_warmup_steps}")
        _check_grid("latent action model", self.image_size, self.patch_size)
        _check_heads("latent action model", self.dim, self.heads)
        _check(self.codebook_size >= 2, f"codebook_size must be >= 2, got {self.codebook_size}")


@dataclass(frozen=True)
class DynamicsConfig:
    """The MaskGIT dynamics model (Genie §2.1) over tokenizer ids and latent actions."""

    vocab_size: int = 1024
    """Tokenizer codebook size (the mask token is id `vocab_size`)."""
    num_actions: int = 8
    """Latent action codebook size."""
    grid: tuple[int, int] | None = (16, 16)
    """Tokens per frame (H', W'); None accepts any grid (positions are fixed sine/cosine)."""
    dim: int = 512
    """Width of the ST-transformer."""
    depth: int = 12
    """Layers."""
    heads: int = 8
    """Attention heads."""
    head_dim: int | None = None
    """Width of one head; None means dim // heads."""
    mlp_ratio: float = 4.0
    """Feed-forward hidden width over `dim`."""
    max_frames: int = 16
    """Longest clip trained on; rollouts keep at most this many frames of context."""
    action_conditioning: Literal["additive", "token"] = "token"
    """'token': one extra action token per frame that spatial attention reads; 'additive': the
    action embedding is added to every token of its frame (the paper). The default is the one
    with the larger controllability gap in `bench/action_conditioning.py` (on the synthetic
    world: 0.84 for 'token', 0.28 for 'additive')."""
    qk_norm: bool = True
    """QK-norm in attention (Genie uses it for stable bfloat16 training)."""
    maskgit_steps: int = 25
    """MaskGIT sampling steps per frame (Genie: 25)."""
    temperature: float = 1.0
    """Sampling temperature (Genie: 2 on Platformers, 1 on CoinRun)."""
    mask_rate_min: float = 0.5
    """Training mask rate is drawn from U(mask_rate_min, 1) per example (Genie: 0.5)."""

    def __post_init__(self) -> None:
        if self.head_dim is None:
            _check_heads("dynamics", self.dim, self.heads)
        _check(self.action_conditioning in ("additive", "token"),
               f"action_conditioning must be 'additive' or 'token', got {self.action_conditioning!r}")
        _check(0.0 <= self.mask_rate_min <= 1.0, f"mask_rate_min must lie in [0, 1], got {self.mask_rate_min}")
        _check(self.maskgit_steps >= 1, f"maskgit_steps must be >= 1, got {self.maskgit_steps}")


@dataclass(frozen=True)
class GenieConfig:
    """A whole world: tokenizer, latent action model and dynamics, consistent with each other."""

    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    action: LatentActionConfig = field(default_factory=LatentActionConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    action_labels: tuple[str, ...] = ()
    """What each latent action does, measured on held-out prompts (`opengenie label`, or
    `opengenie export --label-data`): "walk right", "jump", "still", ...; empty if unmeasured."""
    arrow_keys: dict[str, int] = field(default_factory=dict)
    """The latent action each arrow key plays by default ({"ArrowRight": 3, ...}), chosen with
    the labels: the action that moves the camera furthest that way."""
    frame_skip: int = 1
    """Frames of the source video per world step: the `data.frame_skip` stage 2 was trained at
    (`opengenie export --frame-skip`). Evaluation reads clips, and holds real keys, at this step."""

    def __post_init__(self) -> None:
        t, a, d = self.tokenizer, self.action, self.dynamics
        _check(not self.action_labels or len(self.action_labels) == d.num_actions,
               f"action_labels has {len(self.action_labels)} labels for {d.num_actions} actions; "
               "label every action or none (measure them again with `opengenie label`)")
        _check(isinstance(self.frame_skip, int) and self.frame_skip >= 1, f"frame_skip must be an integer >= 1, got {self.frame_skip!r}")
        _check(all(k in ARROWS and isinstance(v, int) and 0 <= v < d.num_actions for k, v in self.arrow_keys.items()),
               f"arrow_keys must map keys of {ARROWS} to actions in 0..{d.num_actions - 1}, got {self.arrow_keys}")
        _check(d.vocab_size == t.codebook_size,
               f"dynamics.vocab_size={d.vocab_size} must equal tokenizer.codebook_size={t.codebook_size}")
        _check(d.num_actions == a.codebook_size,
               f"dynamics.num_actions={d.num_actions} must equal action.codebook_size={a.codebook_size}")
        _check(t.kind == "st-vivit", "Genie needs a per-frame tokenizer: use kind='st-vivit'")
        _check(d.grid is not None and tuple(d.grid) == t.grid, f"dynamics.grid={d.grid} must equal the tokenizer's grid {t.grid}")
        _check(t.image_size == a.image_size,
               f"tokenizer.image_size={t.image_size} and action.image_size={a.image_size} must match")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GenieConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown GenieConfig fields {sorted(unknown)}")
        return cls(tokenizer=from_dict(TokenizerConfig, d["tokenizer"]),
                   action=from_dict(LatentActionConfig, d["action"]),
                   dynamics=from_dict(DynamicsConfig, d["dynamics"]),
                   action_labels=tuple(d.get("action_labels", ())), arrow_keys=dict(d.get("arrow_keys", {})),
                   frame_skip=d.get("frame_skip", 1))


def from_dict(cls: type, d: dict[str, Any]):
    """Build config `cls` from a JSON-style dict (lists become tuples; unknown keys are an error)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; known: {sorted(names)}")
    return cls(**{k: _tuplify(v) for k, v in d.items()})


def _tuplify(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    if isinstance(v, dict):
        return {k: _tuplify(x) for k, x in v.items()}
    return v
