"""Genie App. E on real CoinRun: a world's frozen action model labels the expert's videos, a
policy is cloned on those latent actions, N labelled transitions map them to procgen keys, and
the agent plays held-out levels of the real game.

Evaluation plays many levels side by side (one procgen env per level, stepped in lockstep) so
the policy network sees one batch per step.
"""

from __future__ import annotations

import time

import numpy as np

from opengenie.agents.cloning import train_policy
from opengenie.agents.evaluate import label_transitions, latent_agent, random_agent, rate
from opengenie.agents.mapping import LatentToReal
from opengenie.data.coinrun import level_env, rollout_level
from opengenie.data.keys import NUM_ACTIONS


def expert_transitions(levels: range, steps: int, difficulty: str) -> dict[str, np.ndarray]:
    """The expert's transitions on `levels` (`steps` steps each, the jumps back to a level's start
    after a coin or a death dropped): frames and next_frames (N, 64, 64, 3) uint8, actions (N,) int64."""
    frames, nxt, actions, keep = [], [], [], []
    for level in levels:
        ep = rollout_level(level, steps, difficulty, policy="expert")
        frames.append(ep["frames"][:-1]), nxt.append(ep["frames"][1:]), actions.append(ep["actions"][:-1])
        keep.append(~ep["dones"][:-1])  # frames[t+1] after a done is the level's start again: no transition
    keep = np.concatenate(keep)
    return {"frames": np.concatenate(frames)[keep], "next_frames": np.concatenate(nxt)[keep],
            "actions": np.concatenate(actions)[keep]}


def label(world, frames: np.ndarray, next_frames: np.ndarray, batch: int = 256) -> np.ndarray:
    """Latent actions (N,) int64 of a world's frozen action model for frames[i] → next_frames[i]."""
    return label_transitions(world.action_model, frames, next_frames, batch)


def play_levels(policy, levels: range, difficulty: str, seed: int = 0, max_steps: int = 1000) -> np.ndarray:
    """First episode of each level, all side by side → (L,) bool: the coin was collected."""
    envs = [level_env(level, difficulty, seed) for level in levels]
    rng = np.random.default_rng([seed, 4])
    live, won = np.ones(len(envs), dtype=bool), np.zeros(len(envs), dtype=bool)
    frames = np.stack([env.observe()[1]["rgb"][0] for env in envs])
    for _ in range(max_steps):
        idx = np.flatnonzero(live)
        if not len(idx):
            break
        keys = policy(frames[idx], rng)
        for i, key in zip(idx, keys):
            envs[i].act(np.array([key]))
            reward, obs, first = envs[i].observe()
            frames[i] = obs["rgb"][0]
            if first[0]:
                live[i], won[i] = False, reward[0] > 0
    for env in envs:
        env.close()
    return won


def run_coinrun(world, *, train_levels: range, label_levels: range, eval_levels: range,
                labels: tuple[int, ...] = (0, 50, 200, 1000), difficulty: str = "easy", steps: int = 100,
                policy_steps: int = 600, seed: int = 0, data: dict | None = None) -> dict:
    """One seed of the comparison: latent agent per N, oracle, random; success rates with Wilson
    intervals over `eval_levels`. `data` reuses expert transitions made before (their labelling too)."""
    started = time.perf_counter()
    data = data or make_data(world, train_levels, label_levels, steps, difficulty)
    demo, few = data["demo"], data["few"]
    num_latents = world.action_model.config.codebook_size
    latent_policy = train_policy(demo["frames"], demo["latents"], num_latents, steps=policy_steps, seed=seed)
    oracle = train_policy(demo["frames"], demo["actions"], NUM_ACTIONS, steps=policy_steps, seed=seed)
    order = np.random.default_rng(seed).permutation(len(few["actions"]))
    everything = np.arange(NUM_ACTIONS)
    out = {"latent": {}, "mappings": {}}
    for n in labels:
        pick = order[:n]
        mapping = LatentToReal(few["latents"][pick], few["actions"][pick], num_latents, everything)
        out["mappings"][n] = mapping.majority().tolist()
        out["latent"][n] = rate(play_levels(latent_agent(latent_policy, mapping), eval_levels, difficulty, seed))
    out["oracle"] = rate(play_levels(lambda f, rng: oracle.act(f), eval_levels, difficulty, seed))
    out["random"] = rate(play_levels(random_agent(everything), eval_levels, difficulty, seed))
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def make_data(world, train_levels: range, label_levels: range, steps: int, difficulty: str) -> dict:
    """Expert transitions to clone from (`demo`) and to label by hand (`few`), both with latents."""
    demo, few = expert_transitions(train_levels, steps, difficulty), expert_transitions(label_levels, steps, difficulty)
    for part in (demo, few):
        part["latents"] = label(world, part["frames"], part["next_frames"])
    return {"demo": demo, "few": few}
