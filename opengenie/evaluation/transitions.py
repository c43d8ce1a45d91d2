"""What the latent actions mean, measured over every transition of a split (not a sample of clips).

For each episode of the split: the latent action of every transition (the action model in
windows, `rollout.infer_actions`), the camera motion the frames show (`motion.py`), and where
the episodes record them, the true actions. NMI is reported against

    true_action     the full recorded action (CoinRun: 15 procgen combos)
    horizontal_key  left / none / right (CoinRun: the LEFT or RIGHT part of the combo)
    jump            UP pressed or not (CoinRun)
    camera_dx       visible sideways camera motion, binned left / still / right at ±0.5 px
    camera_dy       visible vertical camera motion, binned up / still / down at ±0.5 px

each beside its chance value: the NMI of the same latent actions against shuffled labels at the
same number of transitions. The same pass gives the 1st percentile of the shift-aligned PSNR of
real consecutive frames (restarts of a level excluded): the playability report's threshold for a
visibly broken generated frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from opengenie.data.keys import horizontal_key, jump_key
from opengenie.data.episodes import load_episode
from opengenie.evaluation.actions import codebook_usage, nmi_with_chance
from opengenie.evaluation.motion import camera_shift, max_shift_for, motion_bins
from opengenie.evaluation.rollout import infer_actions
from opengenie.genie import Genie
from opengenie.images import to_video

BROKEN_PERCENTILE = 1.0


@torch.no_grad()
def pooled_transitions(world: Genie, paths: list[Path], coinrun: bool, progress: bool = True,
                       chunk: int = 256, frame_skip: int = 1) -> dict[str, np.ndarray]:
    """Every transition of the episodes at `paths` → arrays (M,): latent, dx, dy, aligned_psnr,
    restart (the next frame begins a new life), and true / horizontal / jump where recorded.
    With `frame_skip` k a transition joins frames t and t + k (t = 0, k, 2k, ...), as the world
    was trained; its true action is the one taken at t and it restarts if any step within does."""
    device = next(world.parameters()).device
    rows: dict[str, list[np.ndarray]] = {}
    for path in tqdm(paths, desc="transitions", unit="episode", disable=not progress):
        ep = load_episode(path)
        frames = ep["frames"][::frame_skip]  # (T, H, W, 3) uint8
        if len(frames) < 2:
            continue
        m = len(frames) - 1  # transitions
        dones = ep["dones"][:m * frame_skip].reshape(m, frame_skip).any(1) if "dones" in ep else np.zeros(m, bool)
        latent = []
        for a in range(0, len(frames) - 1, chunk):  # chunks overlap by one frame: every transition once
            video = to_video(frames[a:a + chunk + 1]).to(device)  # (1, C, t, H, W)
            latent.append(infer_actions(world, video)[0].cpu().numpy())
        s = camera_shift(frames[:-1], frames[1:], max_shift_for(frame_skip, frames.shape[1]))
        got = {"latent": np.concatenate(latent), "dx": s.dx.numpy(), "dy": s.dy.numpy(),
               "aligned_psnr": s.aligned_psnr.numpy(), "restart": dones}
        if "actions" in ep:
            got["true"] = ep["actions"][::frame_skip][:m].astype(np.int64)
            if coinrun:
                got["horizontal"], got["jump"] = horizontal_key(got["true"]), jump_key(got["true"])
        for k, v in got.items():
            rows.setdefault(k, []).append(v)
    if not rows:
        raise ValueError("no episode of the split has two frames or more")
    # labels only some episodes record would not pair up with the latent actions: keep them only if all do
    return {k: np.concatenate(v) for k, v in rows.items() if len(v) == len(rows["latent"])}


def action_diagnostics(t: dict[str, np.ndarray], num_actions: int, true_actions: int | None) -> dict:
    """NMI of the latent actions against every label the transitions have, each with its chance value."""
    keep = ~t["restart"]  # a restart's "motion" is a cut back to the level's start, not a move
    latent = t["latent"][keep]
    if true_actions is not None and "true" in t and t["true"].size and int(t["true"].max()) >= true_actions:
        raise ValueError(f"the episodes record actions up to {int(t['true'].max())}, but the data's manifest "
                         f"says there are {true_actions}; the episodes and the manifest disagree")
    labels = {"camera_dx": motion_bins(torch.from_numpy(t["dx"][keep])).numpy(),
              "camera_dy": motion_bins(torch.from_numpy(t["dy"][keep])).numpy()}
    for name, key in (("true_action", "true"), ("horizontal_key", "horizontal"), ("jump", "jump")):
        if key in t:
            labels[name] = t[key][keep]
    return {"transitions": int(keep.sum()), "num_actions": num_actions,
            **codebook_usage(latent, num_actions),
            "nmi": {name: nmi_with_chance(latent, y) for name, y in labels.items()},
            "latent_motion": latent_motion(latent, t["dx"][keep], t["dy"][keep], num_actions)}


def latent_motion(latent: np.ndarray, dx: np.ndarray, dy: np.ndarray, num_actions: int) -> list[dict]:
    """Per latent action: how often the action model assigns it and the real camera motion of those transitions."""
    rows = []
    for a in range(num_actions):
        m = latent == a
        rows.append({"action": a, "share": float(m.mean()),
                     "dx": float(dx[m].mean()) if m.any() else None, "dy": float(dy[m].mean()) if m.any() else None})
    return rows


def broken_threshold(t: dict[str, np.ndarray], percentile: float = BROKEN_PERCENTILE) -> float:
    """The `percentile`-th percentile (dB) of real consecutive frames' aligned PSNR, restarts excluded."""
    values = t["aligned_psnr"][~t["restart"]]
    if values.size == 0:
        raise ValueError("no real consecutive frames to set the broken-frame threshold from")
    return float(np.percentile(values[np.isfinite(values)], percentile)) if np.isfinite(values).any() else float("inf")
