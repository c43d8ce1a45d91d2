"""`opengenie eval`: evaluate a saved world on held-out episodes; write metrics.json (every number
with its baseline and interval), per_clip.json (the values behind every mean), report.md (the
same in words and tables) and the report's PNG figures into one folder.

    from opengenie.evaluation.report import run_eval
    metrics = run_eval("worlds/coinrun-small", "data/coinrun", split="test", num_clips=256, out="out/eval")
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from opengenie.card import CARD_FILE, guidance_name, weights_digest, write_card
from opengenie.engine import check_sampling
from opengenie.evaluation.evaluate import (SKIPPABLE, check_clips, evaluate_world, finite_or_text, fvd_precision_for,
                                         select_clips)
from opengenie.evaluation.figures import (action_grid_rows, motion_chart, psnr_chart, reconstruction_rows,
                                          rollout_rows, save_grid)
from opengenie.evaluation.markdown import markdown
from opengenie.evaluation.motion import max_shift_for
from opengenie.evaluation.playability import (HOLD_STEPS, coinrun_reference, episode_state, held_motion, held_rows,
                                              summarise)
from opengenie.evaluation.transitions import action_diagnostics, broken_threshold, pooled_transitions
from opengenie.genie import Genie

WEIGHTS_OF = {"lpips": "alexnet", "fvd": "i3d"}  # metric -> offline weights it needs
FIGURES = {"reconstruction": "reconstruction.png", "rollout": "rollout.png", "action_grid": "action_grid.png",
           "psnr": "psnr.png", "motion": "motion.png"}


def _shown(path: Path) -> str:
    """`path` as settings record it: relative to the working directory when it lies under it (a
    world's card then names `worlds/...`, not one machine's home), else absolute."""
    path = path.resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _check_inputs(model: Path, data: Path, skip: tuple[str, ...], numbers: dict[str, int]) -> None:
    """Fail before any work on inputs a user must fix."""
    for name, value in numbers.items():
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if not model.is_dir():
        raise FileNotFoundError(f"model folder {model} does not exist; save a world there with "
                                "Genie.save_pretrained(path) or `opengenie export`")
    if not data.is_dir():
        raise FileNotFoundError(f"data folder {data} does not exist; make episodes with "
                                "`opengenie data coinrun --out DIR ...` or `opengenie data videos`")
    unknown = set(skip) - set(SKIPPABLE)
    if unknown:
        raise ValueError(f"--skip takes {', '.join(SKIPPABLE)}; got {', '.join(sorted(unknown))}")


def _check_weights(skip: tuple[str, ...]) -> None:
    from opengenie.features.weights import weights_path

    for metric, name in WEIGHTS_OF.items():
        if metric not in skip:
            try:
                weights_path(name)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"{metric} needs offline weights: {err}; "
                                        f"or leave it out with --skip {metric}") from None


def _check_actions(paths: list[Path], num_actions: int | None) -> None:
    """Refuse recorded actions outside 0..num_actions-1 (the manifest's action count) before any
    work: NMI against them would be computed over a wrong alphabet, or fail after every clip ran."""
    from opengenie.data.episodes import EpisodeFile

    for path in paths:
        ep = EpisodeFile(path)
        if not ep.has("actions") or not len(ep):
            continue
        actions = ep.read("actions")
        low, high = int(actions.min()), int(actions.max())
        if low < 0 or (num_actions is not None and high >= num_actions):
            allowed = f"0..{num_actions - 1}" if num_actions is not None else "ids >= 0"
            raise ValueError(f"{path} records action {low if low < 0 else high}, but its manifest allows {allowed}; "
                             "remake the episodes, or fix settings.num_actions in manifest.json")


def _episode_clips(ds, seed: int) -> list[int]:
    """Dataset indices of back-to-back clips, none across an episode's end, at offsets into each
    episode's spare frames drawn with `seed` and the file's place in the split (`ds`: stride 1,
    so that every start is an item)."""
    from opengenie.data.clips import episode_clip_starts

    return [ds.index_of(e, start) for e, length in enumerate(ds.lengths)
            for start in episode_clip_starts(ds.dones(e), length, ds.span, np.random.default_rng([seed, e]))]


def _load_clips(data: Path, split: str | None, frames: int, num_clips: int, seed: int, image_size,
                frame_skip: int = 1, across_episode_ends: bool = False):
    """The dataset and the chosen clips. By default no clip crosses the end of an episode (a coin
    or a death restarts a CoinRun level mid-file: a jump to the level's start that nothing in the
    prompt or the actions can foretell); `across_episode_ends` cuts the files into clips blindly."""
    from opengenie.data import EpisodeClipDataset, episode_paths, read_manifest

    if not episode_paths(data):
        raise ValueError(f"no episodes in {data}; make some with `opengenie data coinrun --out {data} ...` "
                         "or `opengenie data videos`")
    if split is not None and read_manifest(data) is None:
        raise ValueError(f"{data} has no manifest.json, so it has no {split!r} split; "
                         "evaluate every episode with --split all")
    try:
        ds = EpisodeClipDataset(data, seq_len=frames, frame_skip=frame_skip, split=split, seed=seed, with_actions=True,
                                stride=None if across_episode_ends else 1)
    except ValueError as err:
        if "needs" in str(err) and "frames" in str(err):  # episodes shorter than one clip
            raise ValueError(f"--frames {frames} is too long for the episodes in {data}: {err}") from None
        raise
    candidates = list(range(len(ds))) if across_episode_ends else _episode_clips(ds, seed)
    if not candidates:
        raise ValueError(f"no episode in {data} lasts the {ds.span} frames of one clip; lower --frames, "
                         "or cut clips across episode ends (--across-episode-ends)")
    clips = [ds[candidates[i]] for i in select_clips(len(candidates), num_clips, seed)]
    size = tuple(clips[0]["video"].shape[-2:])
    if size != tuple(image_size):
        raise ValueError(f"the episodes in {data} have {size} frames but the world expects {tuple(image_size)}; "
                         "convert the data at the world's size (`opengenie data videos --size`)")
    return ds, clips


def _prompts(ds, clips: list[dict], count: int) -> list[dict]:
    """`count` prompt frames for playability: clip starts, one per episode first, spread over the clips."""
    seen, first, rest = set(), [], []
    for c in clips:
        (rest if c["episode"] in seen else first).append(c)
        seen.add(c["episode"])
    chosen = (first + rest)[:count]
    return [{"video": c["video"][:, :1], "episode": c["episode"], "start": int(c["start"]),
             "path": ds.paths[c["episode"]]} for c in chosen]


def _coinrun_states(data: Path, prompts: list[dict]) -> list[dict] | None:
    """The recorded CoinRun state of each prompt (level, actions so far), or None when the data
    is not procgen CoinRun or procgen is not installed: then there is no real-game reference."""
    from opengenie.data import load_episode, read_manifest

    manifest = read_manifest(data)
    if manifest is None or manifest.get("source") != "coinrun":
        return None
    try:
        from opengenie.data.coinrun import procgen_env

        procgen_env()
    except ImportError:
        return None
    return [episode_state(load_episode(p["path"]), p["start"], manifest["settings"]) for p in prompts]


def playability(world: Genie, data: Path, ds, clips, prompts: int, steps: int, seed: int,
                broken_below: float, batch_size: int, progress: bool = False) -> tuple[dict, torch.Tensor]:
    """Hold every latent action from `prompts` held-out states; the real game from the same states."""
    chosen = _prompts(ds, clips, prompts)
    video = torch.stack([p["video"] for p in chosen])  # (N, C, 1, H, W)
    held, rows = held_rows(world, video, steps, seed, batch_size, broken_below,
                           desc="playability" if progress else None)  # held: (A, N, C, 1 + k, H, W)
    skip = world.config.frame_skip
    out = {"prompts": len(chosen), "steps": steps, "frame_skip": skip, "broken_below_db": broken_below,
           "actions": rows, "real": None}
    states = _coinrun_states(data, chosen)
    if states is not None:
        from opengenie.evaluation.playability import COINRUN_KEYS

        real, ended = coinrun_reference(states, steps, frame_skip=skip)  # (K, N, 1 + k, 64, 64, 3), (K, N)
        reach = max_shift_for(skip, world.image_size[0])
        out["real"] = summarise(held_motion(real, reach), broken_below, list(COINRUN_KEYS))
        out["real_episode_ended"] = {key: int(ended[k].sum()) for k, key in enumerate(COINRUN_KEYS)}
        out["real_matches_data"] = bool(all((real[0, n, 0].numpy() == s["frame"]).all() for n, s in enumerate(states)))
    return out, held


def run_eval(model: str | Path, data: str | Path, *, split: str | None = "test", num_clips: int = 256,
             frames: int = 16, seed: int = 0, batch_size: int = 16, out: str | Path = "out/eval",
             skip: tuple[str, ...] = (), device: str | None = None, prompts: int = 16,
             hold_steps: int = HOLD_STEPS, fvd_precision: str = "auto", maskgit_steps: int | None = None,
             action_guidance: float | None = None, guidance_against: int | str | None = None,
             across_episode_ends: bool = False, progress: bool = True) -> dict:
    """Evaluate the world saved in `model` on `num_clips` clips of `frames` frames from the
    `split` episodes of `data` (None: every episode); write metrics.json, per_clip.json,
    report.md and the figures to `out`. `maskgit_steps`: MaskGIT iterations per generated frame
    (None: the world's own), to measure what fewer steps cost; `action_guidance`, `guidance_against`: the
    guidance of every draw (`Genie.set_sampling`; None: the world's own). `across_episode_ends`: let clips
    run across the end of an episode (by default every clip stays within one). With `out` the
    world's own folder or its `eval/`, the world's generated card (README.md), where it has one,
    is rewritten with this evaluation.

    Returns the metrics dict (as written to metrics.json, non-finite floats as strings).
    """
    model, data, out, skip = Path(model), Path(data), Path(out), tuple(skip)
    _check_inputs(model, data, skip, {"num_clips": num_clips, "frames": frames, "batch_size": batch_size,
                                      "prompts": prompts, "hold_steps": hold_steps})
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    digest = weights_digest(model)  # of the weights loaded now, whatever is written over them meanwhile
    world = Genie.from_pretrained(model, device=device)
    if fvd_precision == "auto":  # resolved here so that settings record what ran
        fvd_precision = fvd_precision_for(torch.device(device))
    if maskgit_steps is not None:
        check_sampling(maskgit_steps, None)
    world.set_sampling(maskgit_steps=maskgit_steps, action_guidance=action_guidance, guidance_against=guidance_against)
    ds, clips = _load_clips(data, split, frames, num_clips, seed, world.image_size, world.config.frame_skip,
                            across_episode_ends)
    from opengenie.data import read_manifest

    manifest = read_manifest(data)
    coinrun = manifest is not None and manifest.get("source") == "coinrun"
    true_actions = manifest.get("settings", {}).get("num_actions") if manifest else None
    _check_actions(ds.paths, true_actions)
    check_clips(clips, skip)  # settings no metric can run at are named before missing weights are
    _check_weights(skip)
    started = time.perf_counter()
    metrics, samples, per_clip = evaluate_world(world, clips, seed=seed, batch_size=batch_size, skip=skip,
                                                progress=progress, fvd_precision=fvd_precision)
    parts = {"clips": time.perf_counter() - started}
    pooled = pooled_transitions(world, ds.paths, coinrun, progress, frame_skip=world.config.frame_skip)
    metrics["actions"] = action_diagnostics(pooled, world.num_actions, true_actions)
    threshold = broken_threshold(pooled)
    parts["transitions"] = time.perf_counter() - started - sum(parts.values())
    metrics["playability"], held = playability(world, data, ds, clips, prompts, hold_steps, seed, threshold, batch_size,
                                                progress)
    parts["playability"] = time.perf_counter() - started - sum(parts.values())
    out.mkdir(parents=True, exist_ok=True)
    save_grid(out / FIGURES["reconstruction"], reconstruction_rows(samples.real, samples.recon))
    save_grid(out / FIGURES["rollout"], rollout_rows(samples.real, samples.inferred, samples.random,
                                                     samples.actions, samples.random_actions))
    save_grid(out / FIGURES["action_grid"], action_grid_rows(held[:, 0]))
    psnr_chart(metrics).save(out / FIGURES["psnr"])
    motion_chart(metrics["playability"]).save(out / FIGURES["motion"])
    c = world.config
    metrics["settings"] = {
        "model": _shown(model), "weights_sha256": digest, "data": _shown(data),
        "split": split or "all",
        "num_clips": len(clips), "num_clips_requested": num_clips, "frames": frames,
        "clips_across_episode_ends": across_episode_ends,
        "frame_skip": world.config.frame_skip,
        "image_size": list(world.image_size), "seed": seed, "rollout_seeds": f"{seed} + batch index",
        "batch_size": batch_size, "skip": list(skip), "device": str(device),
        "maskgit_steps": c.dynamics.maskgit_steps, "temperature": c.dynamics.temperature,
        "action_guidance": c.dynamics.action_guidance,
        "guidance_against": guidance_name(c.dynamics.guidance_against, c.dynamics.num_actions),
        "prompt_frames": 1, "lpips_net": "alexnet", "fvd_resize": "224x224 bilinear (I3D input)",
        "fvd_precision": fvd_precision, "playability_prompts": prompts, "hold_steps": hold_steps,
        "episodes": len(ds.paths), "seconds": round(time.perf_counter() - started, 1),
        "seconds_per_part": {k: round(v, 1) for k, v in parts.items()},
        "clips": [[ds.paths[c_["episode"]].name, int(c_["start"])] for c_ in clips],
    }
    metrics["figures"] = dict(FIGURES)
    metrics = finite_or_text(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "per_clip.json").write_text(json.dumps(finite_or_text(per_clip)) + "\n")
    (out / "report.md").write_text(markdown(metrics))
    if out.resolve() in (model.resolve(), (model / "eval").resolve()) and (model / CARD_FILE).is_file():
        write_card(model)  # kept with the world: its generated card shows this evaluation
    return metrics
