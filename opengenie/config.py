"""Typed configs: one frozen dataclass per model and one for the whole world.

A config is saved with the weights (`config.json`), so loading needs only a path. Invariants
are checked in `__post_init__` with a message that says what to change.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from opengenie.config_checks import (
    MAX_CODE_DIM, MAX_CODES, MAX_DEPTH, MAX_DIM, MAX_FRAMES, MAX_GUIDANCE, MAX_SIDE, MAX_STEPS, MAX_TEMPERATURE,
    _check, _check_fields, _check_grid, _check_heads, _check_image, _check_range, _check_stack, _tuplify,
)


ARROWS = ("ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown")

# Fields that saved configs (config.json, checkpoints) may still carry but that no longer
# exist: reading a config drops them, so worlds and checkpoints written before keep loading.
# Any other unknown field is an error. A new field must never reuse one of these names.
RETIRED_FIELDS: dict[str, tuple[str, ...]] = {
    # Never read: the discriminator has only ever judged single frames (gan_frames_per_batch).
    "TokenizerConfig": ("gan_discriminate",),
}


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
    pixel_head_channels: int = 0
    """Width of a convolutional head that redraws the decoder's patches at full resolution,
    across patch edges (`opengenie.nn.patch.PixelHead`); 0: none, the paper's linear patches."""
    pixel_head_blocks: int = 2
    """Residual blocks (two 3×3 convolutions each) of that head."""
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
        _check_fields(self)
        _check_image("tokenizer", self.image_size, self.in_channels, self.patch_size)
        if self.kind == "st-vivit":
            _check_stack("tokenizer", self.dim, {"depth": self.depth, "decoder_depth": self.decoder_depth},
                         self.heads, self.mlp_ratio, self.max_frames)
            _check_grid("tokenizer", self.image_size, self.patch_size)
            _check_heads("tokenizer", self.dim, self.heads)
        else:
            _check(self.enc_desc is not None and self.dec_desc is not None,
                   "a magvit2 tokenizer needs enc_desc and dec_desc blueprints")
        _check_range("tokenizer: pixel_head_channels", self.pixel_head_channels, 0, MAX_DIM)
        _check_range("tokenizer: pixel_head_blocks", self.pixel_head_blocks, 0, MAX_DEPTH)
        _check(self.kind == "st-vivit" or self.pixel_head_channels == 0,
               "tokenizer: pixel_head_channels is for the st-vivit tokenizer (magvit2 decodes with convolutions)")
        _check_range("tokenizer: codebook_size", self.codebook_size, 2, MAX_CODES)
        _check_range("tokenizer: code_dim", self.code_dim, 1, MAX_CODE_DIM)
        _check_range("tokenizer: n_codebook", self.n_codebook, 1, self.code_dim)
        _check(0 < self.lfq_frac_sample <= 1, f"tokenizer: lfq_frac_sample must be in (0, 1], got {self.lfq_frac_sample}")
        _check_range("tokenizer: dead_code_steps", self.dead_code_steps, 0)
        _check_range("tokenizer: gan_frames_per_batch", self.gan_frames_per_batch, 1)
        for name in ("commitment_weight", "lfq_commit_weight", "lfq_entropy_weight", "lfq_diversity_weight",
                     "gan_loss_weight", "perc_loss_weight", "quant_loss_weight"):
            _check_range(f"tokenizer: {name}", getattr(self, name), 0)

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
        _check_fields(self)
        _check_image("latent action model", self.image_size, self.in_channels, self.patch_size)
        _check_stack("latent action model", self.dim, {"depth": self.depth, "decoder_depth": self.decoder_depth},
                     self.heads, self.mlp_ratio, self.max_frames)
        _check_range("latent action model: codebook_size", self.codebook_size, 2, MAX_CODES)
        _check_range("latent action model: code_dim", self.code_dim, 1, MAX_CODE_DIM)
        _check_range("latent action model: dead_code_steps", self.dead_code_steps, 0)
        _check_range("latent action model: commitment_weight", self.commitment_weight, 0)
        _check(self.codebook_warmup_steps >= 0, f"codebook_warmup_steps must be ≥ 0, got {self.codebook_warmup_steps}")
        _check_grid("latent action model", self.image_size, self.patch_size)
        _check_heads("latent action model", self.dim, self.heads)


@dataclass(frozen=True)
class DynamicsConfig:
    """The MaskGIT dynamics model (Genie §2.1) over tokenizer ids and latent actions."""

    vocab_size: int | None = None
    """Token ids the model reads and predicts (the mask token is id `vocab_size`). Inside a
    GenieConfig, None means the tokenizer's `codebook_size` (`world_fields`)."""
    num_actions: int | None = None
    """Latent actions; inside a GenieConfig, None means the action model's `codebook_size`."""
    grid: tuple[int, int] | None = None
    """Tokens per frame (H', W'); None accepts any grid (positions are fixed sine/cosine), and
    inside a GenieConfig means the tokenizer's grid."""
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
    action_guidance: float = 0.0
    """Action guidance w of MaskGIT's draws (not in Genie): log p(z | a) + w (log p(z | a) −
    log p̄(z)), p̄ the mean of p(z | b) over every latent action b, so what sets action a apart
    from the others counts 1 + w times. 0: plain draws. Each draw then runs the network for
    every action at once (`DynamicsModel.next_frame`)."""
    guidance_against: int | None = None
    """What action guidance contrasts with, q in log p(z | a) + w (log p(z | a) − log q(z)):
    None, the mean of p(z | b) over every latent action b (a draw runs the network under each);
    `num_actions`, the model told no action, for a model trained with action dropout
    (`DynamicsModule(action_dropout=...)`): classifier-free guidance proper, two runs a draw;
    another id r, p(z | r) (two runs a draw)."""
    mask_rate_min: float = 0.5
    """Training mask rate is drawn from U(mask_rate_min, 1) per example (Genie: 0.5)."""

    def __post_init__(self) -> None:
        _check_fields(self)
        _check_stack("dynamics", self.dim, {"depth": self.depth}, self.heads, self.mlp_ratio, self.max_frames)
        _check_range("dynamics: max_frames", self.max_frames, 2, MAX_FRAMES,
                     "a frame is generated from at least one frame of context")
        if self.vocab_size is not None:
            _check_range("dynamics: vocab_size", self.vocab_size, 2, MAX_CODES)
        if self.num_actions is not None:
            _check_range("dynamics: num_actions", self.num_actions, 1, MAX_CODES)
        _check(self.grid is None or all(1 <= s <= MAX_SIDE for s in self.grid),
               f"dynamics: grid sides must be in 1..{MAX_SIDE}, got {self.grid}")
        if self.head_dim is None:
            _check_heads("dynamics", self.dim, self.heads)
        else:
            _check_range("dynamics: head_dim", self.head_dim, 1, MAX_DIM)
        _check_range("dynamics: temperature", self.temperature, 0, MAX_TEMPERATURE)
        _check_range("dynamics: action_guidance", self.action_guidance, 0, MAX_GUIDANCE)
        if self.guidance_against is not None:
            _check_range("dynamics: guidance_against", self.guidance_against, 0,
                         self.num_actions or MAX_CODES, "an action id, or num_actions for none")
        _check_range("dynamics: maskgit_steps", self.maskgit_steps, 1, MAX_STEPS)
        _check(self.action_conditioning in ("additive", "token"),
               f"action_conditioning must be 'additive' or 'token', got {self.action_conditioning!r}")
        _check(0.0 <= self.mask_rate_min <= 1.0, f"mask_rate_min must lie in [0, 1], got {self.mask_rate_min}")


def world_fields(tokenizer: "TokenizerConfig", action: "LatentActionConfig") -> dict[str, Any]:
    """The dynamics fields a world derives from its other parts: the one place they are derived.
    `GenieConfig` fills the ones a DynamicsConfig leaves None; a training run's resolved config
    (`training.checkpoints.resolve_config`) the ones no override sets."""
    fields: dict[str, Any] = {"vocab_size": tokenizer.codebook_size, "num_actions": action.codebook_size}
    if tokenizer.kind == "st-vivit":  # a per-frame grid exists only for the per-frame tokenizer
        fields["grid"] = tokenizer.grid
    return fields


# The parts of a GenieConfig, by field name.
_PARTS = {"tokenizer": TokenizerConfig, "action": LatentActionConfig, "dynamics": DynamicsConfig}


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
        for name, kind in _PARTS.items():
            _check(isinstance(getattr(self, name), kind), f"GenieConfig.{name} must be a {kind.__name__}, "
                                                          f"got {type(getattr(self, name)).__name__}")
        _check_fields(self)
        t, a, d = self.tokenizer, self.action, self.dynamics
        unset = {k: v for k, v in world_fields(t, a).items() if getattr(d, k) is None}
        if unset:  # frozen, so filled in once here
            object.__setattr__(self, "dynamics", d := dataclasses.replace(d, **unset))
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
        if not isinstance(d, dict):
            raise ValueError(f"expected a GenieConfig mapping with tokenizer, action and dynamics, "
                             f"got {type(d).__name__}")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown GenieConfig fields {sorted(unknown)}")
        for name, kind in _PARTS.items():
            if not isinstance(d.get(name), dict):
                raise ValueError(f"GenieConfig needs a {name!r} mapping of {kind.__name__} fields, "
                                 f"got {d.get(name)!r}")
        return cls(**{name: from_dict(kind, d[name]) for name, kind in _PARTS.items()},
                   **{k: _tuplify(v) for k, v in d.items() if k not in _PARTS})


def from_dict(cls: type, d: dict[str, Any]):
    """Build config `cls` from a JSON-style dict (lists become tuples; RETIRED_FIELDS are dropped;
    any other unknown key is an error)."""
    names = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(d, dict):
        raise ValueError(f"expected a mapping of {cls.__name__} fields, got {type(d).__name__}")
    d = {k: v for k, v in d.items() if k not in RETIRED_FIELDS.get(cls.__name__, ())}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; known: {sorted(names)}")
    return cls(**{k: _tuplify(v) for k, v in d.items()})


def without_retired(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config dict of parts (`{"tokenizer": {...}, "action": {...}, ...}`) without its
    RETIRED_FIELDS, so it compares equal to the config it loads as."""
    def part(name: str, value: Any) -> Any:
        retired = RETIRED_FIELDS.get(_PARTS[name].__name__, ()) if name in _PARTS else ()
        return {k: v for k, v in value.items() if k not in retired} if isinstance(value, dict) else value

    return {name: part(name, value) for name, value in config.items()}
