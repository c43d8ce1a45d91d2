"""Playability: what each latent action does when a player holds it, beside what the real game does.

From N prompt frames, every latent action is held for k steps (Genie's "pressing the same key
again and again"). Each generated frame is compared with the one before it (`motion.py`):

    dx, dy        mean camera motion per step (px; dx > 0 right, dy < 0 up)
    consistency   share of prompts whose k-step displacement points the way the mean one does
                  (None when the action barely moves the camera: nothing to agree on)
    broken        share of generated frames whose shift-aligned PSNR to the frame before falls
                  under the 1st percentile of real consecutive frames: frames that are no longer
                  their predecessor moved, but something else (block mosaics, a new scene)
    label         "walk right", "jump left", "still", ... from the mean k-step displacement

Where the prompts come from recorded CoinRun episodes and procgen is installed, the real game
is replayed to the very state of each prompt and each real key (RIGHT, LEFT, UP, none) is held
for the same k steps: the reference a walkable world is held against, from the same states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from opengenie.data.coinrun import level_env
from opengenie.data.keys import LEFT, NOOP, RIGHT, UP
from opengenie.evaluation.motion import MAX_SHIFT, camera_shift, max_shift_for
from opengenie.evaluation.uncertainty import bootstrap_ci
from opengenie.genie import Genie

HOLD_STEPS = 12
MOVE_PX = 2.0  # a k-step displacement below this (px) is standing still, for labels
MINOR_SHARE = 1 / 3  # a label names the smaller of dx, dy only from this share of the larger on
COINRUN_KEYS = {"RIGHT": RIGHT, "LEFT": LEFT, "UP": UP, "none": NOOP}  # procgen combos() indices


@dataclass
class Held:
    """k-step motion of held actions (or keys) from N prompts.

    dx, dy: (A, N, k) camera motion per step (px); aligned_psnr: (A, N, k) dB of each frame
    against the frame before it, after the best shift.
    """

    dx: torch.Tensor
    dy: torch.Tensor
    aligned_psnr: torch.Tensor


def held_motion(frames: torch.Tensor, max_shift: int = MAX_SHIFT) -> Held:
    """Frames (A, N, 1 + k, H, W, 3) uint8 or videos (A, N, C, 1 + k, H, W) in [-1, 1] → `Held`.
    `max_shift`: the search range per step (`motion.max_shift_for` a frame skip)."""
    if frames.dtype == torch.uint8:
        frames = frames.permute(0, 1, 5, 2, 3, 4).float() / 127.5 - 1  # (A, N, C, 1 + k, H, W) in [-1, 1]
    a, n, _, steps = frames.shape[:4]
    x = frames.permute(0, 1, 3, 2, 4, 5)  # (A, N, 1 + k, C, H, W)
    first, second = x[:, :, :-1].reshape(-1, *x.shape[3:]), x[:, :, 1:].reshape(-1, *x.shape[3:])  # (A·N·k, C, H, W)
    s = camera_shift(first, second, max_shift)
    return Held(*(v.reshape(a, n, steps - 1) for v in (s.dx, s.dy, s.aligned_psnr)))


@torch.no_grad()
def hold_actions(world: Genie, prompts: torch.Tensor, steps: int = HOLD_STEPS, seed: int = 0,
                 batch_size: int = 32, actions: list[int] | None = None, desc: str | None = None) -> torch.Tensor:
    """Every latent action (or those in `actions`) held for `steps` frames from each prompt:
    prompts (N, C, 1, H, W) in [-1, 1] → videos (A, N, C, 1 + steps, H, W), the reconstructed
    prompt first.

    The A·N rollouts run in batches of `batch_size`; batch j uses MaskGIT seed `seed + j`.
    `desc`: show a progress bar over the rollouts with this name (None: none).
    """
    held = torch.arange(world.num_actions) if actions is None else torch.as_tensor(actions, dtype=torch.long)
    a, n = len(held), prompts.shape[0]
    action = held.repeat_interleave(n)  # (A·N,): action-major
    prompt = prompts.repeat(a, 1, 1, 1, 1)  # (A·N, C, 1, H, W)
    device = next(world.parameters()).device
    parts = []
    bar = tqdm(total=a * n, desc=desc, unit="rollout", disable=desc is None)
    for j, start in enumerate(range(0, a * n, batch_size)):
        acts = action[start:start + batch_size, None].expand(-1, steps).to(device)  # (b, steps)
        parts.append(world.rollout(prompt[start:start + batch_size].to(device), acts, seed=seed + j).cpu())
        bar.update(len(acts))
    bar.close()
    video = torch.cat(parts)  # (A·N, C, 1 + steps, H, W)
    return video.reshape(a, n, *video.shape[1:])


def held_rows(world: Genie, prompts: torch.Tensor, steps: int = HOLD_STEPS, seed: int = 0, batch_size: int = 32,
              broken_below: float = 0.0, desc: str | None = None) -> tuple[torch.Tensor, list[dict]]:
    """Hold every latent action from `prompts` (N, C, 1, H, W) and measure it at the world's frame
    step → (videos (A, N, C, 1 + steps, H, W), one `summarise` row per action)."""
    video = hold_actions(world, prompts, steps, seed, batch_size, desc=desc)
    reach = max_shift_for(world.config.frame_skip, world.image_size[0])
    return video, summarise(held_motion(video, reach), broken_below, range(world.num_actions))


def label(dx_total: float, dy_total: float) -> str:
    """A name for a mean k-step camera displacement: "walk right", "jump", "fall left", "still", ...
    Each axis counts beyond MOVE_PX and from MINOR_SHARE of the other axis on: the real game's
    RIGHT held from CoinRun states moves the camera (+14.4, -3.3) px, a walk, not a jump."""
    least = max(MOVE_PX, MINOR_SHARE * max(abs(dx_total), abs(dy_total)))
    side = "right" if dx_total > least else "left" if dx_total < -least else ""
    up = "jump" if dy_total < -least else "fall" if dy_total > least else ""
    if up:
        return f"{up} {side}".strip()
    return f"walk {side}" if side else "still"


def summarise(held: Held, broken_below: float, names) -> list[dict]:
    """Per action (or key): mean motion per step, k-step displacement, consistency, broken rate, label."""
    rows = []
    for i, name in enumerate(names):
        total = torch.stack([held.dx[i].sum(-1), held.dy[i].sum(-1)], -1)  # (N, 2) k-step displacement
        mean = total.mean(0)
        moving = float(mean.norm()) >= MOVE_PX
        agree = float(((total @ mean) > 0).double().mean()) if moving else None
        rows.append({"action": name, "dx_per_step": float(held.dx[i].mean()), "dy_per_step": float(held.dy[i].mean()),
                     "dx_total": float(mean[0]), "dy_total": float(mean[1]),
                     "dx_total_ci95": _ci(total[:, 0]), "dy_total_ci95": _ci(total[:, 1]),
                     "consistency": agree, "broken": float((held.aligned_psnr[i] < broken_below).double().mean()),
                     "label": label(float(mean[0]), float(mean[1]))})
    return rows


def _ci(values: torch.Tensor) -> list[float]:
    return list(bootstrap_ci(values))


def episode_state(episode: dict, start: int, settings: dict) -> dict:
    """The state `coinrun_reference` replays: frame `start` of a recorded CoinRun episode (its
    arrays, `load_episode`) with the settings of its manifest (difficulty, seed)."""
    return {"level_seed": int(episode["level_seed"]), "start": int(start), "actions": episode["actions"],
            "difficulty": settings["difficulty"], "seed": settings["seed"], "frame": episode["frames"][start]}


def coinrun_reference(prompts: list[dict], steps: int = HOLD_STEPS, keys: dict[str, int] = COINRUN_KEYS,
                      frame_skip: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The real game from the states of the prompts, each key held `steps` world steps of
    `frame_skip` game frames each (every `frame_skip`-th frame is kept, as the world saw its data).

    prompts: one dict per prompt (`episode_state`), {"level_seed", "start", "actions" (recorded,
    at least `start`), "difficulty", "seed"} of a CoinRun episode (`data/coinrun.py`); the level is
    replayed with its recorded actions to frame `start` (procgen is deterministic given the level
    and its seed). Returns frames (K, N, 1 + steps, 64, 64, 3) uint8, keys in the order of `keys`,
    and ended (K, N) bool: the episode ended while the key was held. When the agent
    reaches the coin or dies, procgen restarts the level, and a camera-shift search would read
    the jump to the level's start as motion: from the step the episode ends on, the frames repeat
    its last frame (the camera stops where the episode stopped).
    """
    out = np.empty((len(keys), len(prompts), steps + 1, 64, 64, 3), dtype=np.uint8)
    ended = np.zeros((len(keys), len(prompts)), dtype=bool)
    for n, p in enumerate(prompts):
        env = _replayed(p)
        state = env.get_state()
        for k, key in enumerate(keys.values()):
            env.set_state(state)
            out[k, n], ended[k, n] = _press(env, [key] * steps, frame_skip)
        env.close()
    return torch.from_numpy(out), torch.from_numpy(ended)


def coinrun_play(prompt: dict, keys: list[int], frame_skip: int = 1) -> tuple[torch.Tensor, bool]:
    """The real game from one prompt's state (`episode_state`), the procgen keys `keys` pressed
    in turn, each for one world step of `frame_skip` game frames: what a world played with the same
    key sequence is held against. Returns frames (1 + len(keys), 64, 64, 3) uint8 and whether the
    episode ended on the way (from then on the frames repeat, as in `coinrun_reference`)."""
    env = _replayed(prompt)
    frames, ended = _press(env, keys, frame_skip)
    env.close()
    return torch.from_numpy(frames), ended


def _replayed(prompt: dict):
    """A CoinRun env replayed with the prompt's recorded actions to its frame `start`."""
    env = level_env(int(prompt["level_seed"]), prompt["difficulty"], int(prompt["seed"]))
    for t in range(int(prompt["start"])):
        env.act(np.asarray(prompt["actions"][t:t + 1], dtype=np.int64))
    return env


def _press(env, keys: list[int], frame_skip: int) -> tuple[np.ndarray, bool]:
    """Frames (1 + len(keys), 64, 64, 3) uint8 of `env` from where it stands, each key held
    `frame_skip` game frames (every `frame_skip`-th frame kept), and whether the episode ended."""
    out = np.empty((len(keys) + 1, 64, 64, 3), dtype=np.uint8)
    out[0], ended = env.observe()[1]["rgb"][0], False
    for t, key in enumerate(keys):
        for _ in range(frame_skip):
            if not ended:
                env.act(np.array([key]))
                ended = bool(env.observe()[2][0])  # gym3's `first`: a new episode began
        out[t + 1] = out[t] if ended else env.observe()[1]["rgb"][0]
    return out, ended
