"""Controllability (Genie §3, "Metrics"): how much the latent actions steer the generated video.

    ΔtPSNR = PSNR(x_t, x̂_t) − PSNR(x_t, x̂'_t)

x_t is frame t of a real clip; x̂_t is generated from the clip's first frame with the latent
actions the action model infers from the real clip; x̂'_t is generated from the same first
frame with actions drawn uniformly at random from the latent codebook. The paper reports t = 4
(one prompt frame, then the actions of the transitions up to frame index 4). A world whose
actions do nothing scores 0; the more the inferred actions reproduce the real clip compared
with random ones, the larger ΔtPSNR.

One rollout of T−1 actions gives ΔtPSNR at every t at once: frame t depends only on the
actions before it and on MaskGIT draws made before later frames are generated, so it equals
the frame a rollout stopped at t would produce.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from opengenie.evaluation.image_metrics import psnr
from opengenie.evaluation.rollout import infer_actions, play, random_actions
from opengenie.genie import Genie

PAPER_T = 4  # Genie §3: ΔtPSNR is reported at t = 4


@dataclass
class Controllability:
    """Two rollouts of the same clips from the same prompt and random stream, and their PSNRs.

    actions, random: (B, T−1) int64 the inferred and the random actions.
    inferred_video, random_video: (B, C, T, H, W) the two rollouts (frame 0 is the prompt).
    psnr_inferred, psnr_random: (B, T) float64 dB against the real clip, per frame.
    """

    actions: torch.Tensor
    random: torch.Tensor
    inferred_video: torch.Tensor
    random_video: torch.Tensor
    psnr_inferred: torch.Tensor
    psnr_random: torch.Tensor

    @property
    def delta(self) -> torch.Tensor:
        """ΔtPSNR per clip and frame: (B, T) float64 dB (frame 0, the prompt, is 0 by construction)."""
        return self.psnr_inferred - self.psnr_random


def controllability(world: Genie, video: torch.Tensor, seed: int, generator: torch.Generator,
                    actions: torch.Tensor | None = None) -> Controllability:
    """Roll out real clips video (B, C, T, H, W) in [-1, 1] twice from their first frame: with
    their inferred actions (or `actions` (B, T−1) if given) and with uniform random actions.

    Both rollouts use the MaskGIT seed `seed`, so they differ only in their actions. Random
    actions are drawn from `generator` (a CPU `torch.Generator`).
    """
    if video.shape[2] < 2:
        raise ValueError(f"controllability needs clips of at least 2 frames, got {tuple(video.shape)}")
    actions = infer_actions(world, video) if actions is None else actions
    rand = random_actions(world, video.shape[0], video.shape[2] - 1, generator).to(actions.device)
    inferred_video = play(world, video, actions, seed)
    random_video = play(world, video, rand, seed)
    real = video.to(inferred_video.device)
    return Controllability(actions.cpu(), rand.cpu(), inferred_video, random_video,
                           psnr(inferred_video.clamp(-1, 1), real).cpu(),
                           psnr(random_video.clamp(-1, 1), real).cpu())


def delta_t_psnr(psnr_inferred: torch.Tensor, psnr_random: torch.Tensor, t: int = PAPER_T) -> float:
    """ΔtPSNR at frame index t over clips: mean over clips of PSNR_inferred[:, t] − PSNR_random[:, t].

    psnr_*: (N, T) float64 dB per clip and frame. Identical frames give +inf PSNR; the mean is
    then inf (or nan for inf − inf), which is what such a degenerate case should report.
    """
    if not 1 <= t < psnr_inferred.shape[1]:
        raise ValueError(f"t must index a generated frame, 1..{psnr_inferred.shape[1] - 1}, got {t}; "
                         f"evaluate clips of at least {t + 1} frames")
    return float((psnr_inferred[:, t] - psnr_random[:, t]).mean())


@torch.no_grad()
def action_grid(world: Genie, prompt: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
    """Every latent action held for `steps` frames from one prompt frame (Genie Fig. 1 style):
    prompt (1, C, 1, H, W) in [-1, 1] → (A, C, 1 + steps, H, W); row a repeats action a.

    All rows share the MaskGIT seed, so rows differ only where the actions differ.
    """
    a = world.num_actions
    actions = torch.arange(a, device=prompt.device)[:, None].expand(a, steps)  # (A, steps)
    return world.rollout(prompt.expand(a, -1, -1, -1, -1), actions, seed=seed)
