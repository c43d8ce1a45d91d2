"""Every metric of a world model over held-out clips, batch by batch (`opengenie eval`'s engine).

    tokenizer   reconstruction PSNR / SSIM / LPIPS per frame
    rollout     PSNR / SSIM per frame of rollouts from the first real frame with inferred actions
    control     ΔtPSNR per frame (t = 4 in the paper) against random-action rollouts
    fvd         FVD of those rollouts against the real clips (I3D, clips of >= 9 frames)
    dynamics    teacher-forced token cross-entropy and accuracy
    actions     latent codebook usage, and NMI with the true actions where the data has them

Randomness is seeded: batch k rolls out with MaskGIT seed `seed + k`, random actions and
training masks come from generators seeded with `seed`. The same (seed, clips, batch size)
therefore always gives the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from opengenie.evaluation.actions import codebook_usage, nmi
from opengenie.evaluation.controllability import PAPER_T, controllability
from opengenie.evaluation.image_metrics import psnr, ssim
from opengenie.evaluation.rollout import reconstruct, teacher_forced
from opengenie.genie import Genie

SKIPPABLE = ("fvd", "lpips")  # the two that need pretrained networks (and most of the time)
FVD_MIN_FRAMES = 9  # I3D's temporal receptive field; FVD convention is 16


@dataclass
class Samples:
    """The first batch's clips, kept for the report's figures: videos (b, C, T, H, W)."""

    real: torch.Tensor
    recon: torch.Tensor
    inferred: torch.Tensor
    random: torch.Tensor
    actions: torch.Tensor  # (b, T−1) inferred
    random_actions: torch.Tensor  # (b, T−1)


@dataclass
class _Totals:
    """Per-clip results gathered over batches, concatenated at the end."""

    rows: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def add(self, **values: torch.Tensor) -> None:
        for k, v in values.items():
            self.rows.setdefault(k, []).append(v.detach().double().cpu())

    def __getitem__(self, k: str) -> torch.Tensor:
        return torch.cat(self.rows[k])


def select_clips(num_available: int, num_clips: int, seed: int) -> list[int]:
    """`num_clips` distinct clip indices drawn with `seed` (sorted), or all when fewer exist."""
    if num_clips < 1:
        raise ValueError(f"--num-clips must be at least 1, got {num_clips}")
    order = torch.randperm(num_available, generator=torch.Generator().manual_seed(seed))
    return sorted(order[:num_clips].tolist())


@torch.no_grad()
def evaluate_world(world: Genie, clips, seed: int = 0, batch_size: int = 8,
                   skip: tuple[str, ...] = (), progress: bool = True) -> tuple[dict, Samples]:
    """All metrics over `clips`, a sequence of dataset items {"video": (C, T, H, W), "actions"?: (T,)}.

    Returns (metrics, samples): metrics is a JSON-ready dict (see `docs/eval_report.md`),
    samples the first batch's videos for figures.
    """
    unknown = set(skip) - set(SKIPPABLE)
    if unknown:
        raise ValueError(f"--skip takes {', '.join(SKIPPABLE)}; got {', '.join(sorted(unknown))}")
    frames = clips[0]["video"].shape[1]
    if "fvd" not in skip and frames < FVD_MIN_FRAMES:
        raise ValueError(f"FVD needs clips of at least {FVD_MIN_FRAMES} frames, got --frames {frames}; "
                         "use --frames 16 or --skip fvd")
    if "fvd" not in skip and len(clips) < 2:
        raise ValueError("FVD needs at least 2 clips; raise --num-clips or --skip fvd")
    device = next(world.parameters()).device
    world.eval()
    lpips = i3d = None
    if "lpips" not in skip:
        from opengenie.evaluation.lpips import load_lpips

        lpips = load_lpips("alexnet", device)
    if "fvd" not in skip:
        from opengenie.evaluation.i3d import load_i3d

        i3d = load_i3d(device)

    masks = torch.Generator(device=device).manual_seed(seed)  # training masks of the dynamics loss
    draws = torch.Generator().manual_seed(seed)  # random actions of ΔtPSNR
    totals, samples = _Totals(), None
    bar = tqdm(total=len(clips), unit="clip", desc="eval", disable=not progress)
    for k, start in enumerate(range(0, len(clips), batch_size)):
        batch = clips[start:start + batch_size]
        video = torch.stack([c["video"] for c in batch]).to(device)  # (b, C, T, H, W)
        recon = reconstruct(world, video).clamp(-1, 1)
        totals.add(recon_psnr=psnr(recon, video), recon_ssim=ssim(recon, video))
        if lpips is not None:
            totals.add(recon_lpips=lpips(recon, video))
        ctrl = controllability(world, video, seed + k, draws)
        inferred = ctrl.inferred_video.clamp(-1, 1)
        totals.add(psnr_inferred=ctrl.psnr_inferred, psnr_random=ctrl.psnr_random,
                   ssim_inferred=ssim(inferred, video), latent=ctrl.actions)
        if all("actions" in c for c in batch):
            totals.add(true=torch.stack([c["actions"][:-1] for c in batch]))  # actions[t]: after frame t
        tf = teacher_forced(world, video, ctrl.actions.to(device), masks)
        totals.add(**{k_: v for k_, v in vars(tf).items()})
        if i3d is not None:
            from opengenie.evaluation.i3d import i3d_features

            totals.add(fvd_real=i3d_features(i3d, video), fvd_fake=i3d_features(i3d, inferred))
        if samples is None:
            samples = Samples(video.cpu(), recon.cpu(), inferred.cpu(), ctrl.random_video.clamp(-1, 1).cpu(),
                              ctrl.actions, ctrl.random)
        bar.update(len(batch))
    bar.close()
    return _summarise(world, totals, len(clips), frames, skip), samples


def _mean(x: torch.Tensor) -> float:
    return float(x.mean())


def _curve(x: torch.Tensor) -> list[float]:
    return [float(v) for v in x.mean(0)]


def _summarise(world: Genie, t: _Totals, n: int, frames: int, skip: tuple[str, ...]) -> dict:
    """Per-clip results → the metrics dict (means over clips; per-frame curves over clips)."""
    delta = t["psnr_inferred"] - t["psnr_random"]  # (N, T)
    gen = slice(1, None)  # frame 0 is the (reconstructed) prompt, not generated
    out = {
        "tokenizer": {"psnr": _mean(t["recon_psnr"]), "ssim": _mean(t["recon_ssim"]),
                      "lpips": None if "lpips" in skip else _mean(t["recon_lpips"]),
                      "psnr_per_frame": _curve(t["recon_psnr"])},
        "rollout": {"psnr": _mean(t["psnr_inferred"][:, gen]), "ssim": _mean(t["ssim_inferred"][:, gen]),
                    "psnr_per_frame": _curve(t["psnr_inferred"]), "ssim_per_frame": _curve(t["ssim_inferred"])},
        "controllability": {
            "t": PAPER_T,
            "delta_t_psnr": float(delta[:, PAPER_T].mean()) if frames > PAPER_T else None,
            "delta_psnr_per_frame": _curve(delta)[1:],  # t = 1 .. T−1
            "psnr_random_per_frame": _curve(t["psnr_random"]),
        },
        "fvd": None,
        "dynamics": {k: _mean(t[k]) for k in ("masked_ce", "masked_accuracy", "next_frame_ce", "next_frame_accuracy")},
        "actions": {"num_actions": world.num_actions, **codebook_usage(t["latent"].long(), world.num_actions),
                    "nmi": float(nmi(t["latent"].long(), t["true"].long())) if "true" in t.rows else None},
    }
    out["dynamics"]["window"] = min(frames, world.config.dynamics.max_frames)
    if "fvd" not in skip:
        from opengenie.evaluation.fvd import frechet_distance

        out["fvd"] = {"fvd": frechet_distance(t["fvd_real"], t["fvd_fake"]), "clips": n, "frames": frames}
    return out


def finite_or_text(value):
    """JSON has no inf/nan: write them as the strings "inf", "-inf", "nan"; recurse into containers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: finite_or_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_text(v) for v in value]
    return value
