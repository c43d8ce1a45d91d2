"""CoinRun episodes for the Genie case study (Genie §4: procgen CoinRun, hard mode, a random
policy, level seeds 0-10,000, 1,000 steps per level, 64x64 frames).

One *level* is one procgen environment with num_levels=1 and start_level=seed, stepped
`steps_per_level` times by a policy. When the agent dies or reaches the coin, procgen restarts
the same level; `dones` marks those steps. Each level is written to `level_{seed:06d}.npz` (see
`episodes.py`); the folder gets a `manifest.json` that records the policy and its parameters.

Policies (`POLICIES`):
    random   the paper's: one of the 15 actions uniformly at random every step. The agent
             barely travels: most transitions move the camera less than half a pixel sideways.
    explore  a key held for a random number of steps (uniform in hold_min..hold_max), drawn
             from walking right, walking left, jumping (alone or while walking), standing
             still and ducking, with walking right the most likely: sustained walks and jumps,
             and agents that get into the level.
    wander   the same, keys held longer (4..20 steps), walking left as likely as walking right.
    expert   looks ahead on a saved copy of the game (`expert.py`).

Needs the `coinrun` extra: `pip install opengenie[coinrun]` (procgen-mirror).
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np

from opengenie.data.episodes import write_episode
from opengenie.data.keys import DOWN, LEFT, LEFT_UP, NOOP, NUM_ACTIONS, RIGHT, RIGHT_UP, UP
from opengenie.data.manifest import check_settings, describe_folder, write_manifest

DIFFICULTIES = ("easy", "hard")
# The explorer's keys and their odds: walking right leads into the level, jumping gets over
# walls and gaps, walking left and standing still keep those motions in the data too.
EXPLORE_KEYS = {RIGHT: 0.30, RIGHT_UP: 0.20, LEFT: 0.15, LEFT_UP: 0.07, UP: 0.10, NOOP: 0.13, DOWN: 0.05}
# The wanderer holds keys longer and walks left as often as right, so walking left is as common
# in its data as walking right (the explorer's data has little of it).
WANDER_KEYS = {RIGHT: 0.25, RIGHT_UP: 0.12, LEFT: 0.25, LEFT_UP: 0.12, UP: 0.08, NOOP: 0.13, DOWN: 0.05}
POLICIES = {
    "random": {"policy": "random", "description": "uniform random, no action repeats"},
    "explore": {"policy": "explore", "description": "a key held for a random number of steps, right-biased",
                "hold_min": 2, "hold_max": 12, "keys": {str(k): v for k, v in EXPLORE_KEYS.items()}},
    "wander": {"policy": "wander", "description": "a key held for a random number of steps, as often left as right",
               "hold_min": 4, "hold_max": 20, "keys": {str(k): v for k, v in WANDER_KEYS.items()}},
    "expert": {"policy": "expert", "description": "looks ahead on a saved copy of the game and takes the "
               "plan that gets farthest right without dying (opengenie.data.expert)", "hold": 3, "horizon": 24},
}


def procgen_env():
    """procgen's `ProcgenGym3Env`. procgen imports the unmaintained `gym`, which prints a banner
    to stderr on import; it says nothing about CoinRun, so the import runs with stderr held back."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            from procgen import ProcgenGym3Env
    except ImportError as err:
        raise ImportError("CoinRun needs procgen: pip install 'opengenie[coinrun]'") from err
    return ProcgenGym3Env


def level_env(level_seed: int, difficulty: str, seed: int = 0):
    """A procgen CoinRun env (num=1) that plays level `level_seed` only, from its start."""
    return procgen_env()(num=1, env_name="coinrun", start_level=level_seed, num_levels=1,
                         distribution_mode=difficulty, rand_seed=seed)


def policy_actions(policy: str, steps: int, rng: np.random.Generator) -> np.ndarray:
    """`steps` actions (int64 in [0, 15)) of the named policy (see `POLICIES`), drawn from `rng`."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {sorted(POLICIES)}")
    if policy == "random":
        return rng.integers(0, NUM_ACTIONS, size=steps, dtype=np.int64)
    if policy == "expert":
        raise ValueError("the expert reads each frame, so it has no actions in advance: use rollout_level")
    p = POLICIES[policy]
    keys = np.array([int(k) for k in p["keys"]])
    odds = np.array(list(p["keys"].values()))
    out, t = np.empty(steps, dtype=np.int64), 0
    while t < steps:
        hold = int(rng.integers(p["hold_min"], p["hold_max"] + 1))
        out[t:t + hold] = rng.choice(keys, p=odds / odds.sum())
        t += hold
    return out


def level_filename(level_seed: int) -> str:
    return f"level_{level_seed:06d}.npz"


def rollout_level(level_seed: int, steps: int, difficulty: str = "hard", seed: int = 0,
                  policy: str = "random") -> dict[str, np.ndarray]:
    """Play one CoinRun level with `policy` (see `POLICIES`; the paper's is "random").

    Returns frames (steps, 64, 64, 3) uint8, actions (steps,) int64 in [0, 15),
    rewards (steps,) float32 and dones (steps,) bool, where actions[t] is taken after frames[t],
    rewards[t] follows it and dones[t] says frames[t+1] starts a new episode of the same level.
    Deterministic given (level_seed, seed, policy).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {sorted(POLICIES)}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"expected difficulty one of {DIFFICULTIES}, got {difficulty!r}")
    if steps < 1:
        raise ValueError(f"expected steps >= 1, got {steps}")
    env = level_env(level_seed, difficulty, seed)
    if policy == "expert":  # closed loop: it reads the frames and plays ahead in this env
        from opengenie.data.expert import LookaheadExpert, play_level

        episode = play_level(env, steps, LookaheadExpert(env, POLICIES["expert"]["hold"], POLICIES["expert"]["horizon"]))
        env.close()
        return episode
    # The policy's generator depends on the level too, so levels never share action sequences.
    rng = np.random.default_rng([seed, level_seed])
    actions = policy_actions(policy, steps, rng)
    frames = np.empty((steps, 64, 64, 3), dtype=np.uint8)
    rewards = np.empty(steps, dtype=np.float32)
    dones = np.empty(steps, dtype=bool)
    _, obs, _ = env.observe()
    for t in range(steps):
        frames[t] = obs["rgb"][0]
        env.act(actions[t : t + 1])
        # gym3: observe() after act() gives the reward of that action and `first`, which is
        # True when this observation begins a new episode, i.e. the previous one just ended.
        rew, obs, first = env.observe()
        rewards[t], dones[t] = rew[0], first[0]
    env.close()
    return {"frames": frames, "actions": actions, "rewards": rewards, "dones": dones}


def _make_level(job: tuple[Path, int, int, str, int, bool, str]) -> tuple[int, int]:
    """Worker: roll out one level and write its file; returns (level_seed, frames)."""
    out, level_seed, steps, difficulty, seed, compress, policy = job
    ep = rollout_level(level_seed, steps, difficulty, seed, policy)
    write_episode(out / level_filename(level_seed), **ep, level_seed=level_seed, compress=compress)
    return level_seed, steps


def generate(
    out: str | os.PathLike,
    levels: int,
    steps_per_level: int,
    *,
    start_level: int = 0,
    workers: int = 1,
    difficulty: str = "hard",
    seed: int = 0,
    compress: bool = False,
    policy: str = "random",
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    progress: bool = True,
) -> dict:
    """Write CoinRun levels start_level .. start_level+levels-1 to `out`; return the manifest.

    Levels whose file already exists are skipped, so an interrupted run resumes where it
    stopped. `workers` processes each roll out whole levels. The split is by level seed.
    """
    from tqdm import tqdm

    if levels < 1 or steps_per_level < 1 or workers < 1 or start_level < 0:
        raise ValueError(
            f"expected levels, steps_per_level, workers >= 1 and start_level >= 0, got "
            f"levels={levels}, steps_per_level={steps_per_level}, workers={workers}, start_level={start_level}"
        )
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"expected difficulty one of {DIFFICULTIES}, got {difficulty!r}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {sorted(POLICIES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "env": "coinrun", "difficulty": difficulty, "steps_per_level": steps_per_level,
        "policy": POLICIES[policy], "seed": seed, "num_actions": NUM_ACTIONS,
        "val_fraction": val_fraction, "test_fraction": test_fraction, "compress": compress,
    }
    _upgrade_policy(out)
    check_settings(out, settings, ["env", "difficulty", "steps_per_level", "policy", "seed",
                                  "val_fraction", "test_fraction"])
    for stale in out.glob(".level_*.partial"):  # left by an interrupted run; never complete
        stale.unlink(missing_ok=True)

    seeds = range(start_level, start_level + levels)
    todo = [s for s in seeds if not (out / level_filename(s)).exists()]
    jobs = [(out, s, steps_per_level, difficulty, seed, compress, policy) for s in todo]
    bar = tqdm(total=len(todo) * steps_per_level, unit="frame", desc="coinrun", disable=not progress,
               postfix={"skipped (done)": levels - len(todo)})
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            bar.update(_make_level(job)[1])
    else:
        # fork: each worker creates its own procgen env after the fork, so nothing is shared.
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(min(workers, len(jobs))) as pool:
            for _, frames in pool.imap_unordered(_make_level, jobs):
                bar.update(frames)
    bar.close()
    return write_manifest(out, source="coinrun", settings=settings, episodes=_describe(out, settings))


def _upgrade_policy(out: Path) -> None:
    """Folders written before policies had names record the random policy as a sentence; name it."""
    from opengenie.data.manifest import MANIFEST, read_manifest

    manifest = read_manifest(out)
    if manifest and manifest.get("settings", {}).get("policy") == POLICIES["random"]["description"]:
        manifest["settings"]["policy"] = POLICIES["random"]
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _describe(out: Path, settings: dict) -> list[dict]:
    """Manifest entries for every level file in `out`; the group is the level seed."""
    seed_of = lambda path: int(path.stem.split("_")[1])  # level_000007.npz -> 7
    return describe_folder(
        out, "level_*.npz", lambda p: str(seed_of(p)), settings["val_fraction"],
        settings["test_fraction"], extra=lambda p: {"level_seed": seed_of(p)},
    )
