"""The dynamics model (Genie §2.1): a decoder-only MaskGIT transformer over video tokens.

Given the tokens of frames z_1..t and the latent actions a_1..t, it predicts z_t+1. The
ST-transformer is causal in time, so one pass trains every frame at once, and at play time the
keys/values of past frames are cached and each MaskGIT step computes only the new frame.

Action conditioning (config `action_conditioning`): 'token' (the default) gives frame t one
extra token holding a_t-1, which spatial attention reads (a later reimplementation found this
essential on CoinRun, and it follows its actions far better in `bench/action_conditioning.py`);
'additive' adds the embedding of a_t-1 to every token of frame t (the paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from opengenie.config import DynamicsConfig
from opengenie.maskgit import Generators, sample, training_mask_rate
from opengenie.nn.attention import KVCache, TwinFrames
from opengenie.nn.blueprint import normalize
from opengenie.nn.checks import check_ids
from opengenie.nn.patch import sincos_2d
from opengenie.nn.st_transformer import STTransformer


@dataclass
class DynamicsLoss:
    """Masked-token cross-entropy and accuracy on the masked positions."""

    loss: torch.Tensor
    accuracy: torch.Tensor
    mask_rate: torch.Tensor


def config_from_seed(desc: Any, tok_vocab: int, act_vocab: int, embed_dim: int, **kwargs: Any) -> DynamicsConfig:
    """A DynamicsConfig from the seed's `(desc, tok_vocab, act_vocab, embed_dim)`.

    A dynamics blueprint is a stack of `space-time_attn` blocks of one width.
    """
    blocks = normalize(desc)
    if any(name not in ("space-time_attn", "st_transformer") for name, _ in blocks):
        raise ValueError(f"a dynamics blueprint may hold only 'space-time_attn' blocks, got "
                         f"{[name for name, _ in blocks]}")
    widths = {kw.get("n_embd", embed_dim) for _, kw in blocks}
    if widths != {embed_dim}:
        raise ValueError(f"every block's n_embd must equal embed_dim={embed_dim}, got {sorted(widths)}")
    heads = {kw.get("n_head", 8) for _, kw in blocks}
    head_dims = {kw.get("d_head") for _, kw in blocks}
    if len(heads) > 1 or len(head_dims) > 1:
        raise ValueError("all space-time_attn blocks of a dynamics blueprint need the same n_head and d_head")
    return DynamicsConfig(vocab_size=tok_vocab, num_actions=act_vocab, grid=None, dim=embed_dim,
                          depth=sum(int(kw.get("n_rep", 1)) for _, kw in blocks), heads=heads.pop(),
                          head_dim=head_dims.pop(), **kwargs)


def guided(logits: torch.Tensor, action: torch.Tensor, weight: float, against: int | None = None) -> torch.Tensor:
    """Action guidance → (B, N, V) log p(z | a) + w (log p(z | a) − log q(z)), action (B, 1) the
    one taken: classifier-free guidance, q the mean over the actions, one action, or the model
    told no action (`DynamicsConfig.guidance_against`).

    `against` None: logits (A·B, N, V) of B rows under each of A actions (row a·B + i is row i
    under action a), q the mean of p(z | b) over them. An action id r: logits (2·B, N, V), rows
    0..B−1 under the actions taken and B..2B−1 under r, q = p(z | r)."""
    b = action.shape[0]
    logp = torch.log_softmax(logits.float().view(-1, b, *logits.shape[1:]), dim=-1)  # (A or 2, B, N, V)
    if against is not None:
        return logp[0] + weight * (logp[0] - logp[1])
    taken = logp.gather(0, action.view(1, b, 1, 1).expand(1, *logp.shape[1:])).squeeze(0)  # (B, N, V)
    mixture = torch.logsumexp(logp, dim=0) - math.log(logp.shape[0])  # (B, N, V)
    return taken + weight * (taken - mixture)


class DynamicsModel(nn.Module):
    """MaskGIT over tokens `(B, T, H', W')` int64 conditioned on actions `(B, T)` int64.

    `actions[:, t]` is the action taken after frame t, so it conditions frame t+1; the last
    action of a clip conditions the frame `generate` adds.
    """

    def __init__(self, config: DynamicsConfig | None = None, *, desc: Any = None, tok_vocab: int | None = None,
                 act_vocab: int | None = None, embed_dim: int | None = None) -> None:
        super().__init__()
        if config is None:
            if None in (desc, tok_vocab, act_vocab, embed_dim):
                raise ValueError("build DynamicsModel from a DynamicsConfig or from all of "
                                 "desc, tok_vocab, act_vocab and embed_dim")
            config = config_from_seed(desc, tok_vocab, act_vocab, embed_dim)
        if config.vocab_size is None or config.num_actions is None:
            raise ValueError("a DynamicsModel on its own needs vocab_size and num_actions (a GenieConfig fills "
                             f"them from its tokenizer and action model), got {config.vocab_size=}, "
                             f"{config.num_actions=}")
        self.config = c = config
        self.mask_id = c.vocab_size
        self.token_embed = nn.Embedding(c.vocab_size + 1, c.dim)  # + the mask token
        # Action id `num_actions` stands for "no action yet" (the first frame).
        self.action_embed = nn.Embedding(c.num_actions + 1, c.dim)
        self.transformer = STTransformer(c.dim, c.depth, c.heads, c.head_dim, mlp_ratio=c.mlp_ratio,
                                         qk_norm=c.qk_norm)
        self.head = nn.Linear(c.dim, c.vocab_size)

    # --- checks --------------------------------------------------------------------------

    def _check(self, tokens: torch.Tensor, actions: torch.Tensor) -> None:
        c = self.config
        if tokens.dim() != 4:
            raise ValueError(f"expected tokens (B, T, H', W') int64, got shape {tuple(tokens.shape)}")
        if c.grid is not None and tuple(tokens.shape[2:]) != tuple(c.grid):
            raise ValueError(f"expected tokens with a {tuple(c.grid)} grid, got {tuple(tokens.shape)}")
        check_ids(tokens, c.vocab_size + 1, f"tokens (codes 0..{c.vocab_size - 1}, {c.vocab_size} = mask)",
                  "(B, T, H', W')")
        if actions.dim() != 2 or actions.shape[0] != tokens.shape[0] or \
                actions.shape[1] not in (tokens.shape[1] - 1, tokens.shape[1]):
            raise ValueError(f"expected actions (B, T) or (B, T-1) for tokens {tuple(tokens.shape)}, "
                             f"got {tuple(actions.shape)}")
        check_ids(actions, c.num_actions, "actions", "(B, T)")

    # --- the network ---------------------------------------------------------------------

    def _logits(self, tokens: torch.Tensor, prev_actions: torch.Tensor, cache: KVCache | None = None,
                prev_weights: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, t, H', W') with masks, prev_actions (B, t) (action INTO each frame) → logits (B, t, H', W', V).

        prev_weights (B, t, num_actions + 1), when given, replaces the embedding lookup by a
        weighted sum of action embeddings: a straight-through one-hot of the ids lets the
        dynamics loss train the action model that chose them (`DynamicsModule(action_grad=True)`)."""
        b, t, h, w = tokens.shape
        x = self.token_embed(rearrange(tokens, "b t h w -> b t (h w)"))  # (B, t, N, D)
        x = x + sincos_2d(h, w, x.shape[-1]).to(x)
        if prev_weights is None:
            act = self.action_embed(prev_actions)[:, :, None, :]  # (B, t, 1, D)
        else:
            act = (prev_weights.to(x.dtype) @ self.action_embed.weight.to(x.dtype))[:, :, None, :]  # (B, t, 1, D)
        if self.config.action_conditioning == "additive":
            x = self.transformer(x + act, cache=cache)  # (B, t, N, D)
        else:
            x = self.transformer(torch.cat([x, act], dim=2), cache=cache)[:, :, :-1]  # (B, t, N, D)
        return rearrange(self.head(x), "b t (h w) v -> b t h w v", h=h)

    def _prev_actions(self, actions: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, ≥ frames−1) actions after each frame → (B, frames) the action INTO each frame."""
        start = actions.new_full((actions.shape[0], 1), self.config.num_actions)
        return torch.cat([start, actions[:, : frames - 1]], dim=1)

    def _prev_weights(self, onehot: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, ≥ frames−1, A) one-hots of the actions after each frame → (B, frames, A + 1) of the
        action INTO each frame, the first frame's being the "no action yet" id A."""
        b, _, a = onehot.shape
        start = F.one_hot(onehot.new_full((b, 1), a, dtype=torch.long), a + 1).to(onehot.dtype)  # (B, 1, A+1)
        rest = F.pad(onehot[:, : frames - 1], (0, 1))  # (B, frames−1, A+1): never the start id
        return torch.cat([start, rest], dim=1)

    def forward(self, tokens: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, H', W') (may hold the mask id), actions (B, T) → logits (B, T, H', W', V)."""
        self._check(tokens, actions)
        return self._logits(tokens, self._prev_actions(actions, tokens.shape[1]))

    def compute_loss(self, tokens: torch.Tensor, actions: torch.Tensor,
                     generator: torch.Generator | None = None,
                     action_onehot: torch.Tensor | None = None, context_noise: float = 0.0,
                     action_dropout: float = 0.0) -> DynamicsLoss:
        """Genie §2.1: mask rate ~ U(0.5, 1) per example, Bernoulli masks, first frame never
        masked, cross-entropy on masked positions against the ORIGINAL tokens.

        action_onehot (B, T−1 or T, num_actions): a differentiable one-hot of `actions` through
        which the loss reaches the action model (co-training); None: actions are plain ids.
        context_noise: each example replaces a share ~ U(0, context_noise) of its unmasked tokens
        after the prompt frame with uniformly random codes. A rollout reads its own samples as
        context, which are not the tokenizer's; training on corrupted context teaches the model
        not to trust every token it reads. 0 (Genie): clean context.
        action_dropout: the share of frames 2..T whose incoming action is replaced by the "no
        action" id (`num_actions`), so that the model also learns to predict a frame without its
        action: the unconditional model that classifier-free action guidance contrasts with
        (`DynamicsConfig.guidance_against`). 0 (Genie): every action given."""
        self._check(tokens, actions)
        t = tokens.shape[1]
        inputs, mask = self._training_inputs(tokens, generator, context_noise)
        if not 0.0 <= action_dropout <= 1.0:
            raise ValueError(f"action_dropout must lie in [0, 1], got {action_dropout}")
        if action_onehot is None and action_dropout == 0:
            logits = self.forward(inputs, actions)  # (B, T, H', W', V)
        else:
            prev = self._prev_actions(actions, t)  # (B, T)
            weights = None if action_onehot is None else self._prev_weights(action_onehot, t)  # (B, T, A+1)
            if action_dropout > 0:
                drop = torch.rand(prev.shape, generator=generator, device=prev.device) < action_dropout  # (B, T)
                prev = prev.masked_fill(drop, self.config.num_actions)  # the first frame's id already
                if weights is not None:
                    weights = torch.where(drop[..., None], F.one_hot(prev, weights.shape[-1]).to(weights), weights)
            logits = self._logits(inputs, prev, prev_weights=weights)  # (B, T, H', W', V)
        target = tokens  # not `inputs`: predicting the mask token would teach nothing
        ce = F.cross_entropy(logits[mask].float(), target[mask]) if mask.any() else logits.sum() * 0.0
        accuracy = (logits[mask].argmax(-1) == target[mask]).float().mean() if mask.any() else ce.detach()
        return DynamicsLoss(ce, accuracy.detach(), mask.float().mean().detach())

    def _training_inputs(self, tokens: torch.Tensor, generator: torch.Generator | None,
                         context_noise: float) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T, H', W') → what the model reads in training (masked, maybe corrupted)
        and the mask (B, T, H', W') bool of the positions it is scored on (`compute_loss`)."""
        b, t = tokens.shape[:2]
        if t < 2:
            raise ValueError(f"the dynamics loss needs at least 2 frames, got tokens {tuple(tokens.shape)}")
        rate = training_mask_rate(b, self.config.mask_rate_min, generator, tokens.device)  # (B,)
        draws = torch.rand(tokens.shape, generator=generator, device=tokens.device)  # (B, T, H', W')
        mask = draws < rate[:, None, None, None]
        mask[:, 0] = False  # the prompt frame is always given
        inputs = tokens.masked_fill(mask, self.mask_id)
        if not 0.0 <= context_noise <= 1.0:
            raise ValueError(f"context_noise must lie in [0, 1], got {context_noise}")
        if context_noise > 0:
            inputs = self._corrupt(inputs, mask, context_noise, generator)
        return inputs, mask

    def guided_logits(self, tokens: torch.Tensor, actions: torch.Tensor, weight: float,
                      against: int | None = None) -> torch.Tensor:
        """tokens (B, T, H', W') (may hold the mask id), actions (B, T) → (B, T, H', W', V) every
        frame's log p(z | a) + w (log p(z | a) − log p(z | r)) as a guided draw reads it against
        action r (None: no action, the unconditional model of `compute_loss(action_dropout=)`):
        frame t's r-run sees the same past with only its own incoming action changed. One twin
        pass over 2T frames (`TwinFrames`) instead of one per frame."""
        self._check(tokens, actions)
        t = tokens.shape[1]
        against = self.config.num_actions if against is None else against
        prev = self._prev_actions(actions, t)  # (B, T)
        other = prev.clone()
        other[:, 1:] = against  # the first frame has no action into it either way
        logits = self._logits(torch.cat([tokens, tokens], dim=1), torch.cat([prev, other], dim=1), TwinFrames(t))
        rows = torch.cat([logits[:, :t], logits[:, t:]]).flatten(1, 3)  # (2B, T·H'·W', V): frames, then twins
        return guided(rows, prev[:, :1], weight, against).view(logits[:, :t].shape)

    def distill_loss(self, teacher: "DynamicsModel", tokens: torch.Tensor, actions: torch.Tensor, weight: float,
                     against: int | None = None, generator: torch.Generator | None = None,
                     context_noise: float = 0.0) -> DynamicsLoss:
        """Guidance distillation: KL(teacher's guided draw ‖ this model's plain one) on the
        masked positions of `compute_loss`'s inputs, so that one pass draws what `teacher` draws
        with action guidance `weight` against `against` (`guided_logits`) in two. `accuracy`:
        how often this model's most likely token is the teacher's."""
        self._check(tokens, actions)
        inputs, mask = self._training_inputs(tokens, generator, context_noise)
        logits = self.forward(inputs, actions)  # (B, T, H', W', V)
        if not mask.any():  # nothing to learn from: a zero that still reaches the weights
            zero = logits.sum() * 0.0
            return DynamicsLoss(zero, zero.detach(), mask.float().mean())
        with torch.no_grad():
            target = torch.log_softmax(teacher.guided_logits(inputs, actions, weight, against)[mask], dim=-1)  # (M, V)
        logp = torch.log_softmax(logits[mask].float(), dim=-1)  # (M, V), M masked positions
        kl = (target.exp() * (target - logp)).sum(-1).mean()
        agree = (logp.argmax(-1) == target.argmax(-1)).float().mean()
        return DynamicsLoss(kl, agree.detach(), mask.float().mean().detach())

    def _corrupt(self, inputs: torch.Tensor, mask: torch.Tensor, noise: float,
                 generator: torch.Generator | None) -> torch.Tensor:
        """Replace a share ~ U(0, noise) per example of the unmasked tokens of frames 2..T with random codes."""
        b = inputs.shape[0]
        rate = torch.rand(b, generator=generator, device=inputs.device) * noise  # (B,)
        hit = torch.rand(inputs.shape, generator=generator, device=inputs.device) < rate[:, None, None, None]
        hit &= ~mask
        hit[:, 0] = False  # the prompt is a real frame at play time too
        codes = torch.randint(0, self.config.vocab_size, inputs.shape, generator=generator, device=inputs.device)
        return torch.where(hit, codes, inputs)

    # --- generation ----------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, actions: torch.Tensor, steps: int | None = None,
                 temperature: float | None = None, cache: KVCache | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Append one frame: tokens (B, T, H', W'), actions (B, T) → tokens (B, T+1, H', W').

        `steps`: MaskGIT iterations (the seed's keyword; `maskgit_steps` everywhere else).
        The new frame follows `actions[:, -1]`. With a `cache` that already holds frames 1..T,
        only the new frame is computed; the cache then holds it too.
        """
        c = self.config
        steps = steps or c.maskgit_steps
        temperature = c.temperature if temperature is None else temperature
        if actions.shape[1] != tokens.shape[1]:
            raise ValueError(f"generate needs one action per frame: tokens {tuple(tokens.shape)}, "
                             f"actions {tuple(actions.shape)}")
        self._check(tokens, actions)
        b, t, h, w = tokens.shape
        new = tokens.new_full((b, h * w), self.mask_id)  # (B, N)
        action_in = actions[:, -1:]  # (B, 1): the action into the new frame

        if cache is None:
            prev = self._prev_actions(actions, t + 1)  # (B, T+1)
            guidance, context = c.action_guidance, tokens
            if guidance > 0:  # every row once per action guidance reads, the new frame's action varied
                rows = self._guidance_actions(action_in)  # (R·B, 1)
                prev = torch.cat([prev[:, :-1].repeat(len(rows) // b, 1), rows], dim=1)  # (R·B, T+1)
                context = tokens.repeat(len(rows) // b, 1, 1, 1)  # (R·B, T, H', W')

            def logits_fn(frame: torch.Tensor) -> torch.Tensor:
                frame = frame.view(b, 1, h, w).repeat(len(context) // b, 1, 1, 1)
                logits = self._logits(torch.cat([context, frame], dim=1), prev)[:, -1].flatten(1, 2)  # (R·B or B, N, V)
                return guided(logits, action_in, guidance, c.guidance_against) if guidance > 0 else logits
        else:
            if len(cache) != min(t, cache.max_frames or t):
                raise ValueError(f"the cache holds {len(cache)} frames, expected the {t} given frames")
            return torch.cat([tokens, self.next_frame(action_in, cache, steps, temperature, generator, (h, w))], dim=1)

        new = sample(logits_fn, new, self.mask_id, steps, temperature, generator=generator)
        return torch.cat([tokens, new.view(b, 1, h, w)], dim=1)

    @torch.no_grad()
    def next_frame(self, action_in: torch.Tensor, cache: KVCache, maskgit_steps: int | None = None,
                   temperature: float | None = None, generator: Generators = None,
                   grid: tuple[int, int] | None = None, network: Callable | None = None) -> torch.Tensor:
        """The frame after the ones `cache` holds: action_in (B, 1) the action into it → tokens
        (B, 1, H', W'), whose keys/values the cache then holds too. Only the new frame is
        computed: each MaskGIT step reads the cached past (the engine's path, `Rollout.step`).
        `generator`: one, or one per row (`maskgit.uniform`); `network`: a stand-in for
        `_logits` with the same arithmetic (the compiled play pass)."""
        c = self.config
        maskgit_steps = maskgit_steps or c.maskgit_steps
        temperature = c.temperature if temperature is None else temperature
        h, w = grid if grid is not None else c.grid
        b = action_in.shape[0]
        network = network or self._logits
        # Fresh strides: a slice of a longer history would look like a new input to a compiled pass.
        action_in = action_in.clone(memory_format=torch.contiguous_format)

        if c.action_guidance > 0:  # every row once per action guidance reads, against a copy of its cache
            rows = self._guidance_actions(action_in)  # (R·B, 1)
            repeated = cache.repeat(len(rows) // b)

            def logits_fn(frame: torch.Tensor) -> torch.Tensor:
                frames = frame.view(b, 1, h, w).repeat(len(rows) // b, 1, 1, 1)
                logits = network(frames, rows, repeated)[:, 0].flatten(1, 2)  # (R·B, N, V)
                return guided(logits, action_in, c.action_guidance, c.guidance_against)
        else:
            def logits_fn(frame: torch.Tensor) -> torch.Tensor:
                return network(frame.view(b, 1, h, w), action_in, cache)[:, 0].flatten(1, 2)  # (B, N, V)

        new = sample(logits_fn, action_in.new_full((b, h * w), self.mask_id), self.mask_id, maskgit_steps,
                     temperature, generator=generator).view(b, 1, h, w)
        with cache.appending():
            network(new, action_in, cache)
        return new

    def _guidance_actions(self, action_in: torch.Tensor) -> torch.Tensor:
        """The (R·B, 1) action ids a guided draw runs B rows under, in the layout `guided` and
        `KVCache.repeat` read: every latent action (R = A, row a·B + i being row i under a), or,
        with `guidance_against` r, the actions taken and then r (R = 2)."""
        b, against = action_in.shape[0], self.config.guidance_against
        if against is None:
            return torch.arange(self.config.num_actions, device=action_in.device).repeat_interleave(b)[:, None]
        return torch.cat([action_in, torch.full_like(action_in, against)])

    def prefill(self, tokens: torch.Tensor, prev_actions: torch.Tensor, cache: KVCache) -> None:
        """Write the keys/values of final frames `tokens` (B, t, H', W') into `cache`.

        prev_actions (B, t): the action INTO each frame (`num_actions` for a first frame).
        """
        with cache.appending():
            self._logits(tokens, prev_actions, cache)

    def prompt_actions(self, actions: torch.Tensor, frames: int) -> torch.Tensor:
        """The actions INTO `frames` prompt frames given the actions after each (for `prefill`)."""
        return self._prev_actions(actions, frames)
