"""Every metric of a world model over held-out clips, each beside the baselines that give it meaning
(`opengenie eval`'s engine).

The same clips are turned into four videos and each is scored against the real clip:

    reconstruction  the tokenizer's reconstruction of the whole clip: the ceiling a rollout can reach
    copy            the reconstructed prompt frame repeated: a world that ignores every action
    inferred        the world rolled out from the prompt with the actions inferred from the real clip
    random          the world rolled out from the prompt with uniformly random latent actions

PSNR / SSIM / LPIPS per frame for each; ΔtPSNR (Genie §3) = inferred − random, split into
inferred − copy (how much the actions help over standing still) and copy − random (how much
random actions break the scene); FVD of each video against the real clips, and real against
real between two disjoint halves of the clips as the floor. Every mean carries a bootstrap 95 %
interval over clips (`uncertainty.py`).

Randomness is seeded: batch k rolls out with MaskGIT seed `seed + k`, random actions and
training masks come from generators seeded with `seed`. The same (seed, clips, batch size)
therefore always gives the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from opengenie.evaluation.controllability import PAPER_T, controllability
from opengenie.evaluation.image_metrics import psnr, ssim
from opengenie.evaluation.rollout import reconstruct, teacher_forced
from opengenie.evaluation.uncertainty import curve, summary
from opengenie.genie import Genie

SKIPPABLE = ("fvd", "lpips")  # the two that need pretrained networks (and most of the time)
FVD_MIN_FRAMES = 9  # I3D's temporal receptive field; FVD convention is 16
VIDEOS = ("reconstruction", "copy", "inferred", "random")
# I3D under bf16 autocast: 2.1x faster on a CPU with native bf16 and FVD within 0.4 % of fp32 on
# CoinRun clips (bench/fvd_precision.py: real vs real 419.3 against 417.7, real vs frozen 643.0
# against 641.9). A CPU without it (AVX2 only) emulates bf16 and is many times slower than fp32,
# so "auto" takes bf16 only where it is native.
FVD_PRECISIONS = ("auto", "bf16", "fp32")
FVD_VIDEOS = ("copy", "inferred")  # I3D is most of eval's time: ceiling and random rollouts are left to PSNR


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

    def __contains__(self, k: str) -> bool:
        return k in self.rows


def select_clips(num_available: int, num_clips: int, seed: int) -> list[int]:
    """`num_clips` distinct clip indices drawn with `seed` (sorted), or all when fewer exist."""
    if num_clips < 1:
        raise ValueError(f"--num-clips must be at least 1, got {num_clips}")
    order = torch.randperm(num_available, generator=torch.Generator().manual_seed(seed))
    return sorted(order[:num_clips].tolist())


def check_clips(clips, skip: tuple[str, ...]) -> int:
    """The clips' frame count, after refusing settings no metric can be computed at."""
    unknown = set(skip) - set(SKIPPABLE)
    if unknown:
        raise ValueError(f"--skip takes {', '.join(SKIPPABLE)}; got {', '.join(sorted(unknown))}")
    if not clips:
        raise ValueError("no clips to evaluate")
    frames = clips[0]["video"].shape[1]
    if frames < 2:
        raise ValueError(f"a rollout needs clips of at least 2 frames, got --frames {frames}")
    if "fvd" not in skip and frames < FVD_MIN_FRAMES:
        raise ValueError(f"FVD needs clips of at least {FVD_MIN_FRAMES} frames, got --frames {frames}; "
                         "use --frames 16 or --skip fvd")
    if "fvd" not in skip and len(clips) < 4:
        raise ValueError(f"FVD and its real-vs-real floor need at least 4 clips, got {len(clips)}; "
                         "raise --num-clips or --skip fvd")
    return frames


def fvd_precision_for(device: torch.device) -> str:
    """"bf16" on a GPU or a CPU that computes bf16 natively (AVX-512 BF16 or AMX), else "fp32"."""
    if device.type == "cuda":
        return "bf16"
    if device.type != "cpu":
        return "fp32"
    cpu = torch.cpu  # private probes: a torch without them is treated as having no native bf16
    native = (getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
              or getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    return "bf16" if native else "fp32"


@torch.no_grad()
def evaluate_world(world: Genie, clips, seed: int = 0, batch_size: int = 8,
                   skip: tuple[str, ...] = (), progress: bool = True,
                   fvd_precision: str = "auto") -> tuple[dict, Samples, dict]:
    """All clip metrics over `clips`, a sequence of dataset items {"video": (C, T, H, W), "actions"?: (T,)}.
    fvd_precision: I3D's precision, "bf16", "fp32" or "auto" (`fvd_precision_for` the world's device).

    Returns (metrics, samples, per_clip): metrics is a JSON-ready dict (see `docs/eval_report.md`),
    samples the first batch's videos for figures, per_clip the per-clip values behind every mean.
    """
    frames = check_clips(clips, skip)
    if fvd_precision not in FVD_PRECISIONS:
        raise ValueError(f"--fvd-precision takes {' or '.join(FVD_PRECISIONS)}, got {fvd_precision!r}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    device = next(world.parameters()).device
    if fvd_precision == "auto":
        fvd_precision = fvd_precision_for(device)
    world.eval()
    lpips = i3d = None
    if "lpips" not in skip:
        from opengenie.features.lpips import load_lpips

        lpips = load_lpips("alexnet", device)
    if "fvd" not in skip:
        from opengenie.features.i3d import i3d_features, load_i3d

        i3d = load_i3d(device)

    masks = torch.Generator(device=device).manual_seed(seed)  # training masks of the dynamics loss
    draws = torch.Generator().manual_seed(seed)  # random actions of ΔtPSNR
    totals, samples = _Totals(), None
    bar = tqdm(total=len(clips), unit="clip", desc="eval", disable=not progress)
    for k, start in enumerate(range(0, len(clips), batch_size)):
        batch = clips[start:start + batch_size]
        video = torch.stack([c["video"] for c in batch]).to(device)  # (b, C, T, H, W)
        recon = reconstruct(world, video).clamp(-1, 1)
        ctrl = controllability(world, video, seed + k, draws)
        inferred, rand = ctrl.inferred_video.clamp(-1, 1), ctrl.random_video.clamp(-1, 1)
        # The copy baseline starts from the same reconstructed prompt as both rollouts (frame 0).
        videos = {"reconstruction": recon, "copy": inferred[:, :, :1].expand_as(inferred),
                  "inferred": inferred, "random": rand}
        for name, fake in videos.items():
            totals.add(**{f"{name}_psnr": psnr(fake, video), f"{name}_ssim": ssim(fake, video)})
            if lpips is not None:
                totals.add(**{f"{name}_lpips": lpips(fake, video)})
        totals.add(latent=ctrl.actions)
        tf = teacher_forced(world, video, ctrl.actions.to(device), masks)
        totals.add(**{k_: v for k_, v in vars(tf).items()})
        if i3d is not None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fvd_precision == "bf16"):
                totals.add(fvd_real=i3d_features(i3d, video).float())
                totals.add(**{f"fvd_{name}": i3d_features(i3d, videos[name]).float() for name in FVD_VIDEOS})
        if samples is None:
            samples = Samples(video.cpu(), recon.cpu(), inferred.cpu(), rand.cpu(), ctrl.actions, ctrl.random)
        bar.update(len(batch))
    bar.close()
    per_clip = {k: totals[k].tolist() for k in totals.rows if not k.startswith("fvd_")}
    return _summarise(totals, len(clips), frames, skip, world), samples, per_clip


def _summarise(t: _Totals, n: int, frames: int, skip: tuple[str, ...], world: Genie) -> dict:
    """Per-clip results → the metrics dict: means with 95 % intervals, per-frame curves."""
    gen = slice(1, None)  # frame 0 is the (reconstructed) prompt, not generated
    videos = {}
    for name in VIDEOS:
        row = {}
        for metric in ("psnr", "ssim", "lpips"):
            key = f"{name}_{metric}"
            if key not in t:
                row[metric], row[f"{metric}_per_frame"] = None, None
                continue
            first = 0 if name == "reconstruction" else 1  # the ceiling is scored on every frame
            row[metric] = summary(t[key][:, first:].mean(1))
            row[f"{metric}_per_frame"] = curve(t[key])
        videos[name] = row
    inf, cop, rnd = (t[f"{v}_psnr"] for v in ("inferred", "copy", "random"))
    parts = {"delta": inf - rnd, "inferred_minus_copy": inf - cop, "copy_minus_random": cop - rnd}
    at = PAPER_T if frames > PAPER_T else None
    control = {"t": PAPER_T,
               **{k: (summary(v[:, at]) if at is not None else None) for k, v in parts.items()},
               "per_frame": {k: curve(v[:, gen]) for k, v in parts.items()}}  # entry i is frame t = i + 1
    out = {
        "clips": n, "frames": frames, "videos": videos, "controllability": control,
        "verdict": verdict(videos, control), "fvd": None,
        "dynamics": {k: summary(t[k]) for k in ("masked_ce", "masked_accuracy", "next_frame_ce", "next_frame_accuracy")},
    }
    out["dynamics"]["window"] = min(frames, world.config.dynamics.max_frames)
    if "fvd" not in skip:
        out["fvd"] = fvd_with_floor(t, n, frames)
    return out


def fvd_with_floor(t: _Totals, n: int, frames: int) -> dict:
    """FVD of each video against all real clips, and the real-vs-real floor between two disjoint
    halves of the clips, with the world's rollouts of one half against the other half's real clips
    beside it: FVD is biased upwards at small sample sizes, so only equal sizes compare."""
    from opengenie.evaluation.fvd import frechet_distance

    real = t["fvd_real"]
    a, b = torch.arange(0, n, 2), torch.arange(1, n, 2)  # even and odd clips: disjoint halves
    out = {"clips": n, "frames": frames, **{name: frechet_distance(real, t[f"fvd_{name}"]) for name in FVD_VIDEOS},
           "half_clips": [len(a), len(b)], "real_vs_real": frechet_distance(real[a], real[b])}
    out.update({f"{name}_half": frechet_distance(real[a], t[f"fvd_{name}"][b]) for name in ("copy", "inferred")})
    return out


def verdict(videos: dict, control: dict) -> dict:
    """Frames at which the world's rollout (inferred actions) beats copying the prompt, in PSNR:
    those whose 95 % interval of (inferred − copy) lies above 0, and those where it lies below."""
    per = control["per_frame"]["inferred_minus_copy"]
    better = [i + 1 for i, low in enumerate(per["ci95"][0]) if low > 0]
    worse = [i + 1 for i, high in enumerate(per["ci95"][1]) if high < 0]
    rnd = control["per_frame"]["copy_minus_random"]
    return {"inferred_beats_copy_at": better, "inferred_loses_to_copy_at": worse,
            "random_loses_to_copy_at": [i + 1 for i, low in enumerate(rnd["ci95"][0]) if low > 0],
            "generated_frames": len(per["mean"])}


def finite_or_text(value):
    """JSON has no inf/nan: write them as the strings "inf", "-inf", "nan"; recurse into containers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: finite_or_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_text(v) for v in value]
    return value
