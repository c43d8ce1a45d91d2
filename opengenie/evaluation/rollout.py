"""A world model measured against real clips: reconstruction, inferred actions, rollouts and the
dynamics model's teacher-forced loss.

Every function takes real clips `video: (B, C, T, H, W) float in [-1, 1]` and a `Genie`.
Clips may be longer than the models were trained on (`max_frames` of each config): the
tokenizer and the action model then see the clip in windows of their training length, and the
rollout engine slides its context window, so a 16-frame evaluation works for any preset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from opengenie.dynamics import DynamicsModel
from opengenie.genie import Genie
from opengenie.maskgit import training_mask_rate


def _windows(frames: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """(start, stop) windows of at most `size` frames covering 0..frames, consecutive ones
    sharing `overlap` frames."""
    if size <= overlap:
        raise ValueError(f"a window of {size} frames cannot overlap by {overlap}")
    spans, start = [], 0
    while True:
        stop = min(start + size, frames)
        spans.append((start, stop))
        if stop == frames:
            return spans
        start = stop - overlap


@torch.no_grad()
def reconstruct(world: Genie, video: torch.Tensor) -> torch.Tensor:
    """Tokenize and decode: video (B, C, T, H, W) → reconstruction (B, C, T, H, W), roughly in [-1, 1].

    Windows of `tokenizer.max_frames` frames are coded independently: the tokenizer is
    trained on clips of that length, so this is the reconstruction it was trained to make.
    """
    size = world.config.tokenizer.max_frames
    parts = [world.tokenizer.decode_ids(world.tokenizer.tokenize(video[:, :, a:b])[1])
             for a, b in _windows(video.shape[2], size, 0)]
    return torch.cat(parts, dim=2)


@torch.no_grad()
def infer_actions(world: Genie, video: torch.Tensor) -> torch.Tensor:
    """Latent actions of a real clip: video (B, C, T, H, W) → ids (B, T−1) int64 in [0, num_actions).

    The encoder is causal and a_t needs x_t and x_t+1 (Genie §2.1), so windows of
    `action.max_frames` frames that overlap by one frame give every transition exactly once.
    """
    if video.shape[2] < 2:
        raise ValueError(f"inferring actions needs at least 2 frames, got video {tuple(video.shape)}")
    size = world.config.action.max_frames
    parts = [world.action_model.infer_actions(video[:, :, a:b]) for a, b in _windows(video.shape[2], size, 1)]
    return torch.cat(parts, dim=1)


def random_actions(world: Genie, batch: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """Actions drawn uniformly from the latent codebook (Genie §3, ΔtPSNR): (batch, count) int64."""
    return torch.randint(0, world.num_actions, (batch, count), generator=generator)


@torch.no_grad()
def play(world: Genie, video: torch.Tensor, actions: torch.Tensor, seed: int) -> torch.Tensor:
    """Roll the world out from the first real frame with `actions` (B, T−1):
    → video (B, C, T, H, W) = reconstructed prompt, then T−1 generated frames.

    Genie §3: one prompt frame. The MaskGIT draws come from a generator seeded with `seed`, so
    two calls that differ only in their actions draw from the same random stream.
    """
    if actions.shape != (video.shape[0], video.shape[2] - 1):
        raise ValueError(f"expected one action per transition, (B, T−1) = "
                         f"{(video.shape[0], video.shape[2] - 1)}, got {tuple(actions.shape)}")
    device = next(world.parameters()).device
    return world.rollout(video[:, :, :1], actions.to(device), seed=seed).to(video.device)


@dataclass
class TeacherForced:
    """Cross-entropy (nats) and accuracy of the dynamics model's token predictions, per clip (B,).

    masked_*: the training objective (Genie §2.1: mask rate ~ U(0.5, 1), Bernoulli masks, first
        frame given) with a seeded generator, over the masked tokens.
    next_frame_*: every token of the window's last frame masked, all earlier frames given: the
        first MaskGIT step of generating that frame.
    """

    masked_ce: torch.Tensor
    masked_accuracy: torch.Tensor
    next_frame_ce: torch.Tensor
    next_frame_accuracy: torch.Tensor


@torch.no_grad()
def teacher_forced(world: Genie, video: torch.Tensor, actions: torch.Tensor,
                   generator: torch.Generator) -> TeacherForced:
    """Dynamics token loss on the real clip's tokens and its inferred actions (B, T−1).

    The clip is cut into windows of `dynamics.max_frames` frames (overlapping by one frame);
    the per-clip results average the windows. Both measures use the TRUE tokens of the real
    clip as context (teacher forcing), unlike rollouts, which feed back their own frames.
    """
    dyn, size = world.dynamics, world.config.dynamics.max_frames
    rows: dict[str, list[torch.Tensor]] = {f: [] for f in TeacherForced.__dataclass_fields__}
    for a, b in _windows(video.shape[2], size, 1):
        if b - a < 2:
            continue
        tokens = world.tokenizer.tokenize(video[:, :, a:b])[1]  # (B, t, H', W')
        acts = actions[:, a:b - 1]  # (B, t−1): the transitions inside the window
        ce, acc = _masked(dyn, tokens, acts, generator)
        rows["masked_ce"].append(ce)
        rows["masked_accuracy"].append(acc)
        inputs = tokens.clone()
        inputs[:, -1] = dyn.mask_id
        logits = dyn(inputs, acts).float()[:, -1]  # (B, H', W', V)
        target = tokens[:, -1]  # (B, H', W')
        rows["next_frame_ce"].append(F.cross_entropy(logits.permute(0, 3, 1, 2), target, reduction="none").mean((1, 2)))
        rows["next_frame_accuracy"].append((logits.argmax(-1) == target).float().mean((1, 2)))
    return TeacherForced(**{k: torch.stack(v).mean(0).cpu() for k, v in rows.items()})


def _masked(dyn: DynamicsModel, tokens: torch.Tensor, actions: torch.Tensor,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip (B,) cross-entropy and accuracy under the training masks of `compute_loss`.

    Same draws as `DynamicsModel.compute_loss` (rate ~ U(min, 1) per clip, then Bernoulli),
    but reduced per clip so clips can be averaged across batches of any size.
    """
    b = tokens.shape[0]
    rate = training_mask_rate(b, dyn.config.mask_rate_min, generator, tokens.device)  # (B,)
    mask = torch.rand(tokens.shape, generator=generator, device=tokens.device) < rate[:, None, None, None]
    mask[:, 0] = False  # the first frame is always given
    logits = dyn(tokens.masked_fill(mask, dyn.mask_id), actions).float()  # (B, t, H', W', V)
    ce = F.cross_entropy(logits.permute(0, 4, 1, 2, 3), tokens, reduction="none")  # (B, t, H', W')
    hit = (logits.argmax(-1) == tokens).float()
    count = mask.flatten(1).sum(1).clamp(min=1)  # (B,)
    return (ce * mask).flatten(1).sum(1) / count, (hit * mask).flatten(1).sum(1) / count
