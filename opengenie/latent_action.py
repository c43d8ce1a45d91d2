"""The latent action model (Genie §2.1): learns, without labels, a tiny codebook of actions.

Encoder: an ST-transformer over the pixels of x_1..T (scaled to [0, 1], patch 16), causal in
time; its pooled output at frame t+1 — which has seen x_1..t+1 — is quantised into a_t. With
`encoder="pairs"` it reads each transition on its own instead, as the pair (x_t, x_t+1).
Decoder: sees x_1..t (its own embedding of their pixels, or with a blueprint decoder the
causal encoder's features, so nothing of x_t+1) and a_t, and must predict x_t+1. The only
way information about x_t+1 reaches the decoder is the action code, so the codebook has to
capture what changes between frames: the action.
At play time the model is dropped; it labels training clips for the dynamics model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from opengenie.config import LatentActionConfig
from opengenie.nn.blueprint import build
from opengenie.nn.checks import check_video
from opengenie.nn.patch import PatchEmbed, Unpatchify, sincos_2d
from opengenie.nn.quantize import VectorQuantizer


class ActionCodes(NamedTuple):
    """Latent actions of a clip: ids (B, T−1) int64 and their embeddings (B, T−1, code_dim)."""

    ids: torch.Tensor
    embeddings: torch.Tensor


class EncodedActions(NamedTuple):
    """`encode`'s result, unpackable as in the seed: `(ids, embeddings), quant_loss = model.encode(v)`."""

    actions: ActionCodes
    loss: torch.Tensor


@dataclass
class ActionLoss:
    """Parts of the latent action model's loss and its codebook health."""

    recon: torch.Tensor
    quant: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(vars(self))


class ActionOutput(NamedTuple):
    """`forward`'s result, unpackable as in the seed: `recon, loss, aux = model(video)`."""

    recon: torch.Tensor
    loss: torch.Tensor
    parts: ActionLoss


def _stack(depth: int, config: LatentActionConfig, cond_dim: int | None = None) -> tuple:
    """A blueprint of `depth` ST blocks of the config's width."""
    kw: dict[str, Any] = {"n_rep": depth, "n_embd": config.dim, "n_head": config.heads, "mlp_ratio": config.mlp_ratio}
    if cond_dim:
        kw.update(has_ext=True, time_attn_kw={"key_dim": cond_dim})
    return (("space-time_attn", kw),)


class LatentActionModel(nn.Module):
    """Video `(B, C, T, H, W)` float in [-1, 1] → latent actions `(B, T−1)` in [0, codebook_size).

    Build it from a config, or from the seed's keywords (`enc_desc`, `dec_desc`, `d_codebook`
    = number of actions, `inp_channels`, `inp_shape`, `n_embd`). In a blueprint, the decoder's
    conditioning width (`time_attn_kw={'key_dim': K}`) is the action embedding's width.
    """

    def __init__(self, config: LatentActionConfig | None = None, *, enc_desc: Any = None,
                 dec_desc: Any = None, **seed_kwargs: Any) -> None:
        super().__init__()
        own_decoder = dec_desc is None
        config, enc_desc, dec_desc = self._resolve(config, enc_desc, dec_desc, seed_kwargs)
        self.config = c = config
        grid = (c.image_size[0] // c.patch_size, c.image_size[1] // c.patch_size)
        # "pairs": a transition is the frames (x_t, x_t+1) stacked per patch, so whether and
        # where something moved is a function of each patch's own pixels from the first layer.
        pairs = c.encoder == "pairs"
        self.embed = PatchEmbed(c.in_channels * (2 if pairs else 1), c.patch_size, c.dim, grid)
        self.encoder = build(enc_desc)
        self.encoder_norm = nn.LayerNorm(c.dim)
        self.to_action = nn.Linear(c.dim, c.code_dim)
        self.quantizer = VectorQuantizer(c.codebook_size, c.code_dim, commitment_weight=c.commitment_weight,
                                         l2_codes=c.l2_codes, dead_code_steps=c.dead_code_steps,
                                         warmup_steps=c.codebook_warmup_steps)
        # A decoder built from the config reads its own embedding of the pixels of x_1..t, so
        # the encoder's features serve the action alone (its codes separate faster that way);
        # a blueprint decoder (the seed's, which up-samples) reads the encoder's features at
        # the encoder's resolution.
        self.decoder_embed = PatchEmbed(c.in_channels, c.patch_size, c.dim, grid) if own_decoder else None
        self.decoder = build(dec_desc)
        self.decoder_norm = nn.LayerNorm(c.dim)
        self.unpatch = Unpatchify(c.dim, c.in_channels, c.patch_size, grid)
        # The decoder predicts the change from x_t, so it starts at "nothing changes": a random
        # output layer would start it far from that and spend its first few hundred steps
        # unlearning the noise, while the codes, given no use, collapse.
        nn.init.zeros_(self.unpatch.proj.weight)
        nn.init.zeros_(self.unpatch.proj.bias)

    @staticmethod
    def _resolve(config, enc_desc, dec_desc, seed: dict) -> tuple[LatentActionConfig, Any, Any]:
        names = {"d_codebook": "codebook_size", "inp_channels": "in_channels", "inp_shape": "image_size",
                 "n_embd": "dim"}
        fields = {names.get(k, k): v for k, v in seed.items()}
        if "image_size" in fields:
            fields["image_size"] = tuple(fields["image_size"])
        if dec_desc is not None:  # the decoder's conditioning width is the action embedding's
            keys = {kw.get("time_attn_kw", {}).get("key_dim") for _, kw in dec_desc if kw.get("has_ext")}
            keys.discard(None)
            if len(keys) == 1:
                fields.setdefault("code_dim", keys.pop())
        config = replace(config, **fields) if config is not None else LatentActionConfig(**fields)
        enc_desc = enc_desc if enc_desc is not None else _stack(config.depth, config)
        dec_desc = dec_desc if dec_desc is not None else _stack(config.decoder_depth, config, config.code_dim)
        return config, enc_desc, dec_desc

    def _embed(self, embed: PatchEmbed, video: torch.Tensor) -> torch.Tensor:
        """Pixels (B, C, T, H, W) in [-1, 1] → tokens (B, D, T, h, w)."""
        pixels = (video + 1) / 2  # Genie §2.1: the action model sees pixels in [0, 1]
        h, w = embed.grid
        # Fixed sine/cosine positions on top of the learned ones: an action is where things
        # moved, and mean-pooled features can only tell where if position is strong from step 0.
        x = embed(pixels) + sincos_2d(h, w, self.config.dim).to(pixels)  # (B, T, N, D), N = h·w
        return rearrange(x, "b t (h w) d -> b d t h w", h=h)

    def _features(self, video: torch.Tensor) -> torch.Tensor:
        """Encoder features of every frame, (B, D, T, h', w'): causal over x_1..T, or with
        `encoder="pairs"` each frame on its own as the still pair (x_t, x_t)."""
        c = self.config
        check_video(video, c.in_channels, c.patch_size, c.image_size, min_frames=2)
        if c.encoder == "pairs":
            return self._pair_features(video, video)
        return self.encoder(self._embed(self.embed, video))

    def _pair_features(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Features of frame pairs, each on its own: (B, C, T', H, W) twice → (B, D, T', h', w')."""
        pairs = rearrange(torch.cat([first, second], dim=1), "b c t h w -> (b t) c 1 h w")
        feats = self.encoder(self._embed(self.embed, pairs))  # (B·T', D, 1, h', w')
        return rearrange(feats, "(b t) d 1 h w -> b d t h w", b=first.shape[0])

    def encode(self, video: torch.Tensor) -> EncodedActions:
        """video (B, C, T, H, W) in [-1, 1] → ((ids (B, T−1), embeddings (B, T−1, code_dim)), quant loss)."""
        actions, loss, _ = self._encode(video, self._features(video))
        return EncodedActions(actions, loss)

    def _pool(self, feats: torch.Tensor) -> torch.Tensor:
        """Features (B, D, T, h, w) → one normalised vector per frame (B, T, D)."""
        return self.encoder_norm(reduce(feats, "b d t h w -> b t d", "mean"))

    def _encode(self, video: torch.Tensor, feats: torch.Tensor):
        pooled = self._pool(feats)  # (B, T, D)
        if self.config.encoder == "pairs":
            # a_t is how the pair (x_t, x_t+1) reads against the still pair (x_t, x_t).
            after = self._pool(self._pair_features(video[:, :, :-1], video[:, :, 1:]))  # (B, T−1, D)
        else:
            after = pooled[:, 1:]  # frame t+1's features, which (causally) have seen x_1..x_t+1
        # Against frame t's features, what stays the same — the level, the colours — cancels, so
        # the tiny codebook is spent on what changed rather than on what the scene looks like.
        q = self.quantizer(self.to_action(after - pooled[:, :-1]))  # codes (B, T−1, code_dim)
        return ActionCodes(q.ids, q.codes), q.loss, q

    def infer_actions(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, C, T, H, W) in [-1, 1] → action ids (B, T−1) int64."""
        return self.encode(video).actions.ids

    def decode(self, feats: torch.Tensor, embeddings: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Predict x_2..T: encoder features (B, D, T−1, h', w') of x_1..T−1 (read only by a
        blueprint decoder), action embeddings (B, T−1, code_dim) and the frames x_1..T−1
        (B, C, T−1, H, W) → frames (B, C, T−1, H, W).

        The decoder predicts the change from x_t to x_t+1 (in the [0, 1] pixel scale the model
        sees). Most of a frame carries over; predicting the change puts the decoder's capacity,
        and so the pressure on the action code, on what the action did.
        """
        if self.decoder_embed is not None:
            feats = self._embed(self.decoder_embed, previous)
        if self.config.decoder_context == "frame":  # each x_t on its own: no motion to carry on
            b = feats.shape[0]
            x = self.decoder(rearrange(feats, "b d t h w -> (b t) d 1 h w"),
                             cond=rearrange(embeddings, "b t c -> (b t) 1 c"))  # (B·(T−1), D, 1, h, w)
            x = rearrange(x, "(b t) d 1 h w -> b d t h w", b=b)  # (B, D, T−1, h, w)
        else:
            x = self.decoder(feats, cond=embeddings)  # (B, D, T−1, h, w)
        x = self.decoder_norm(rearrange(x, "b d t h w -> b t (h w) d"))  # (B, T−1, N, D)
        return previous + 2 * self.unpatch(x)  # change in [0, 1] scale → [-1, 1] scale

    def forward(self, video: torch.Tensor) -> ActionOutput:
        """Training pass: (recon (B, C, T, H, W), loss, ActionLoss).

        recon[:, :, 0] is the input's first frame unchanged (nothing predicts it);
        recon[:, :, t] for t ≥ 1 is the decoder's prediction of x_t from x_<t and a_t−1.
        """
        feats = self._features(video)
        actions, quant_loss, q = self._encode(video, feats)
        pred = self.decode(feats[:, :, :-1], actions.embeddings, video[:, :, :-1])  # (B, C, T−1, H, W)
        recon_loss = F.mse_loss(pred.float(), video[:, :, 1:].float())
        loss = recon_loss + quant_loss
        parts = ActionLoss(recon_loss, quant_loss, q.perplexity, q.usage)
        return ActionOutput(torch.cat([video[:, :, :1], pred], dim=2), loss, parts)


# The seed's name.
LatentAction = LatentActionModel
