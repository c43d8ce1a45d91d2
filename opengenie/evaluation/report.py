"""`opengenie eval`: evaluate a saved world on held-out episodes; write metrics.json, report.md
and the report's PNG figures into one folder.

    from opengenie.evaluation.report import run_eval
    metrics = run_eval("worlds/coinrun", "data/coinrun", split="test", num_clips=64, out="out/eval")
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from opengenie.evaluation.controllability import action_grid
from opengenie.evaluation.evaluate import SKIPPABLE, evaluate_world, finite_or_text, select_clips
from opengenie.evaluation.figures import action_grid_rows, reconstruction_rows, rollout_rows, save_grid
from opengenie.genie import Genie

WEIGHTS_OF = {"lpips": "alexnet", "fvd": "i3d"}  # metric -> offline weights it needs
FIGURES = {"reconstruction": "reconstruction.png", "rollout": "rollout.png", "action_grid": "action_grid.png"}


def _check_inputs(model: Path, data: Path, skip: tuple[str, ...]) -> None:
    """Fail before any work on inputs a user must fix."""
    if not model.is_dir():
        raise FileNotFoundError(f"model folder {model} does not exist; save a world there with "
                                "Genie.save_pretrained(path) or `opengenie export`")
    if not data.is_dir():
        raise FileNotFoundError(f"data folder {data} does not exist; make episodes with "
                                "`opengenie data coinrun --out DIR ...` or `opengenie data videos`")
    unknown = set(skip) - set(SKIPPABLE)
    if unknown:
        raise ValueError(f"--skip takes {', '.join(SKIPPABLE)}; got {', '.join(sorted(unknown))}")
    from opengenie.evaluation.weights import weights_path

    for metric, name in WEIGHTS_OF.items():
        if metric not in skip:
            try:
                weights_path(name)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"{metric} needs offline weights: {err}; "
                                        f"or leave it out with --skip {metric}") from None


def _load_clips(data: Path, split: str | None, frames: int, num_clips: int, seed: int, image_size) -> tuple:
    from opengenie.data import EpisodeClipDataset, episode_paths, read_manifest

    if not episode_paths(data):
        raise ValueError(f"no episodes in {data}; make some with `opengenie data coinrun --out {data} ...` "
                         "or `opengenie data videos`")
    if split is not None and read_manifest(data) is None:
        raise ValueError(f"{data} has no manifest.json, so it has no {split!r} split; "
                         "evaluate every episode with --split all")
    try:
        ds = EpisodeClipDataset(data, seq_len=frames, split=split, seed=seed, with_actions=True)
    except ValueError as err:
        if "needs" in str(err) and "frames" in str(err):  # episodes shorter than one clip
            raise ValueError(f"--frames {frames} is too long for the episodes in {data}: {err}") from None
        raise
    index = select_clips(len(ds), num_clips, seed)
    clips = [ds[i] for i in index]
    size = tuple(clips[0]["video"].shape[-2:])
    if size != tuple(image_size):
        raise ValueError(f"the episodes in {data} have {size} frames but the world expects {tuple(image_size)}; "
                         "convert the data at the world's size (`opengenie data videos --size`)")
    where = [[ds.paths[c["episode"]].name, int(c["start"])] for c in clips]
    return clips, where


def run_eval(model: str | Path, data: str | Path, *, split: str | None = "test", num_clips: int = 64,
             frames: int = 16, seed: int = 0, batch_size: int = 8, out: str | Path = "out/eval",
             skip: tuple[str, ...] = (), device: str | None = None, grid_steps: int = 6,
             progress: bool = True) -> dict:
    """Evaluate the world saved in `model` on `num_clips` clips of `frames` frames from the
    `split` episodes of `data`; write `out/metrics.json`, `out/report.md` and the figures.

    Returns the metrics dict (as written to metrics.json, non-finite floats as strings).
    """
    model, data, out, skip = Path(model), Path(data), Path(out), tuple(skip)
    _check_inputs(model, data, skip)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    world = Genie.from_pretrained(model, device=device)
    clips, where = _load_clips(data, split, frames, num_clips, seed, world.image_size)
    started = time.perf_counter()
    metrics, samples = evaluate_world(world, clips, seed=seed, batch_size=batch_size, skip=skip, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    prompt = samples.real[:1, :, :1].to(device)  # (1, C, 1, H, W)
    save_grid(out / FIGURES["reconstruction"], reconstruction_rows(samples.real, samples.recon))
    save_grid(out / FIGURES["rollout"], rollout_rows(samples.real, samples.inferred, samples.random,
                                                     samples.actions, samples.random_actions))
    save_grid(out / FIGURES["action_grid"], action_grid_rows(action_grid(world, prompt, grid_steps, seed).cpu()))
    c = world.config
    metrics["settings"] = {
        "model": str(model.resolve()), "data": str(data.resolve()), "split": split,
        "num_clips": len(clips), "num_clips_requested": num_clips, "frames": frames, "frame_skip": 1,
        "image_size": list(world.image_size), "seed": seed, "rollout_seeds": f"{seed} + batch index",
        "batch_size": batch_size, "skip": list(skip), "device": str(device),
        "maskgit_steps": c.dynamics.maskgit_steps, "temperature": c.dynamics.temperature,
        "prompt_frames": 1, "lpips_net": "alexnet", "fvd_resize": "224x224 bilinear (I3D input)",
        "action_grid_steps": grid_steps, "seconds": round(time.perf_counter() - started, 1), "clips": where,
    }
    metrics["figures"] = dict(FIGURES)
    metrics = finite_or_text(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.md").write_text(markdown(metrics))
    return metrics


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "skipped"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(m: dict) -> str:
    """The report: settings, a table of every metric, per-frame curves, and the figures."""
    s, tok, rol, ctl, dyn, act = (m[k] for k in ("settings", "tokenizer", "rollout", "controllability",
                                                 "dynamics", "actions"))
    fvd = m["fvd"]["fvd"] if m["fvd"] else None
    lines = [
        "# World-model evaluation", "",
        f"Model `{s['model']}` on the `{s['split']}` split of `{s['data']}`: {s['num_clips']} clips of "
        f"{s['frames']} frames at {s['image_size'][0]}×{s['image_size'][1]}, seed {s['seed']}, "
        f"batch size {s['batch_size']}, MaskGIT {s['maskgit_steps']} steps at temperature {s['temperature']}, "
        f"device {s['device']} ({s['seconds']} s).", "",
        "| metric | value | how |", "|---|---|---|",
        f"| tokenizer PSNR (dB) | {_fmt(tok['psnr'], 2)} | reconstruction vs real, mean over clips and frames |",
        f"| tokenizer SSIM | {_fmt(tok['ssim'])} | Gaussian 11×11, σ 1.5 |",
        f"| tokenizer LPIPS | {_fmt(tok['lpips'])} | LPIPS-{s['lpips_net']} v0.1 |",
        f"| rollout PSNR (dB) | {_fmt(rol['psnr'], 2)} | "
        "generated frames 1..T−1 from one prompt frame, inferred actions |",
        f"| rollout SSIM | {_fmt(rol['ssim'])} | same frames |",
        f"| ΔtPSNR, t = {ctl['t']} (dB) | {_fmt(ctl['delta_t_psnr'], 3)} | "
        f"PSNR(inferred actions) − PSNR(random actions) at frame {ctl['t']} |",
        f"| FVD | {_fmt(fvd, 1)} | I3D logits, {s['frames']}-frame rollouts vs the real clips, {s['fvd_resize']} |",
        f"| dynamics masked CE (nats) | {_fmt(dyn['masked_ce'])} | "
        f"training masks (rate ~ U(0.5, 1)), seeded, windows of {dyn['window']} frames |",
        f"| dynamics masked accuracy | {_fmt(dyn['masked_accuracy'])} | same tokens |",
        f"| dynamics next-frame CE (nats) | {_fmt(dyn['next_frame_ce'])} | last frame of each window fully masked |",
        f"| dynamics next-frame accuracy | {_fmt(dyn['next_frame_accuracy'])} | same tokens |",
        f"| action codebook usage | {_fmt(act['usage'], 2)} | "
        f"fraction of the {act['num_actions']} latent actions inferred at least once |",
        f"| action perplexity | {_fmt(act['perplexity'], 2)} | exp(entropy) of inferred actions |",
        f"| NMI(latent, true action) | {_fmt(act['nmi'])} | where the episodes record actions |",
        "",
        "FVD is biased upwards with fewer than ~400 clips; compare FVDs only at equal clip counts.",
        "", "## Per frame", "",
        "| t | rollout PSNR | random-action PSNR | ΔPSNR | rollout SSIM | reconstruction PSNR |",
        "|---|---|---|---|---|---|",
    ]
    for t in range(1, len(rol["psnr_per_frame"])):
        lines.append(f"| {t} | {_fmt(rol['psnr_per_frame'][t], 2)} | {_fmt(ctl['psnr_random_per_frame'][t], 2)} | "
                     f"{_fmt(ctl['delta_psnr_per_frame'][t - 1], 3)} | {_fmt(rol['ssim_per_frame'][t])} | "
                     f"{_fmt(tok['psnr_per_frame'][t], 2)} |")
    f = m["figures"]
    lines += [
        "", "## Reconstructions", "", "Real clips (top) over the tokenizer's reconstructions.", "",
        f"![reconstructions]({f['reconstruction']})", "",
        "## Rollouts", "",
        "From the first real frame: the real clip, the rollout with the actions inferred from it, and "
        "the rollout with random actions (same MaskGIT seed). Captions name the latent action that led "
        "into each frame.", "",
        f"![rollouts]({f['rollout']})", "",
        "## Action grid", "",
        f"Each latent action held for {s['action_grid_steps']} frames from the same prompt frame.", "",
        f"![action grid]({f['action_grid']})", "",
    ]
    return "\n".join(lines)
