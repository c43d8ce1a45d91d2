"""Success rates of agents, with 95 % intervals, and the whole of Genie App. E on the square world.

A policy here is a callable `policy(frames, rng) -> actions`: frames (B, H, W, 3) uint8 in,
real actions (B,) int64 out. `latent_agent` turns a latent policy and a `LatentToReal`
dictionary into one.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch

from opengenie.agents import square
from opengenie.agents.cloning import PolicyNet, train_policy
from opengenie.agents.mapping import LatentToReal

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson 95 % interval of a success rate: sound near 0 and 1, where the normal one is not."""
    if trials < 1:
        raise ValueError(f"a success rate needs at least one trial, got {trials}")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(success: np.ndarray) -> dict:
    """{"rate", "ci95", "n"} of per-episode outcomes (N,) bool."""
    success = np.asarray(success, dtype=bool)
    return {"rate": float(success.mean()), "ci95": list(wilson(int(success.sum()), len(success))),
            "n": int(len(success))}


def latent_agent(policy: PolicyNet, mapping: LatentToReal) -> Policy:
    """The agent of Genie App. E: the latent policy picks a latent action, the dictionary a real one."""
    return lambda frames, rng: mapping.sample(policy.act(frames), rng)


def random_agent(actions: np.ndarray) -> Policy:
    """Real actions drawn uniformly from `actions`, whatever the frame."""
    actions = np.asarray(actions)
    return lambda frames, rng: actions[rng.integers(0, len(actions), size=len(frames))]


def play_square(policy: Policy, episodes: int, seed: int, max_steps: int = square.MAX_STEPS) -> np.ndarray:
    """Play `episodes` square-world episodes (level seed `seed`); → (episodes,) bool, won within `max_steps`."""
    env, rng = square.SquareGoal(episodes, seed), np.random.default_rng([seed, 3])
    for _ in range(max_steps):
        if env.success.all():
            break
        env.step(policy(env.render(), rng))
    return env.success


def label_transitions(action_model, frames: np.ndarray, next_frames: np.ndarray, batch: int = 256) -> np.ndarray:
    """Latent actions (N,) int64 that a frozen pairs action model assigns to transitions
    frames[i] → next_frames[i], both (N, H, W, 3) uint8."""
    with torch.no_grad():
        return torch.cat([action_model.infer_actions(square.to_video(frames[i:i + batch], next_frames[i:i + batch]))
                          for i in range(0, len(frames), batch)]).ravel().numpy()


def run_square(*, expert_episodes: int = 300, labels: tuple[int, ...] = (0, 10, 50, 200),
               eval_episodes: int = 500, action_steps: int = 200, policy_steps: int = 300,
               seed: int = 0, action_model=None) -> dict:
    """Genie App. E on the square world, end to end.

    1. a latent action model trained on random, unlabelled frame pairs (or `action_model`, frozen);
    2. `expert_episodes` expert episodes, labelled with its latent actions;
    3. a latent policy cloned on those labels and an oracle of the same network on the true moves;
    4. for each N in `labels`, the dictionary from N labelled transitions of further expert play;
    5. success rates on `eval_episodes` held-out episodes: latent agent per N, oracle, random, expert.

    Returns a dict of results (rates with Wilson 95 % intervals) and what the test bed knows to be true:
    `truth`, the move each latent action stands for most often on all the expert's transitions.
    """
    started = time.perf_counter()
    if action_model is None:
        action_model = square.train_action_model(steps=action_steps, seed=seed)
    num_latents = action_model.config.codebook_size
    demo = square.expert_episodes(expert_episodes, seed=1000 + seed)
    latents = label_transitions(action_model, demo["frames"], demo["next_frames"])
    latent_policy = train_policy(demo["frames"], latents, num_latents, steps=policy_steps, seed=seed)
    oracle = train_policy(demo["frames"], demo["moves"], square.NUM_MOVES, steps=policy_steps, seed=seed)
    labelled = square.expert_episodes(max(max(labels), 1), seed=2000 + seed)  # the few labelled transitions
    order = np.random.default_rng(seed).permutation(len(labelled["moves"]))
    labelled_latents = label_transitions(action_model, labelled["frames"], labelled["next_frames"])
    moves = np.arange(square.NUM_MOVES)
    truth = LatentToReal(latents, demo["moves"], num_latents, moves).majority()
    test_seed = 3000 + seed
    results = {"latent": {}, "mappings": {}}
    for n in labels:
        pick = order[:n]
        mapping = LatentToReal(labelled_latents[pick], labelled["moves"][pick], num_latents, moves)
        results["mappings"][n] = mapping.majority().tolist()
        results["latent"][n] = rate(play_square(latent_agent(latent_policy, mapping), eval_episodes, test_seed))
    results["oracle"] = rate(play_square(lambda f, rng: oracle.act(f), eval_episodes, test_seed))
    results["random"] = rate(play_square(random_agent(moves), eval_episodes, test_seed))
    env, rng = square.SquareGoal(eval_episodes, test_seed), np.random.default_rng(0)
    for _ in range(square.MAX_STEPS):  # the expert reads the state, not the frame
        env.step(square.expert_moves(env.pos, env.target, rng))
    results["expert"] = rate(env.success)
    results.update(truth=truth.tolist(), expert_transitions=int(len(latents)),
                   latent_usage=np.bincount(latents, minlength=num_latents).tolist(),
                   seconds=round(time.perf_counter() - started, 1))
    return results


def coinrun_episode(agent, level_seed: int, difficulty: str, seed: int = 0, max_steps: int = 1000) -> dict:
    """Play the first episode of one CoinRun level: `agent(env)` builds a step function
    `frame (64, 64, 3) uint8 -> procgen action` for that env (an expert may look ahead in it).
    Returns {"success": the coin was collected, "steps": steps taken}; procgen ends an episode
    at the coin, at a death or after 1,000 steps."""
    from opengenie.data.coinrun import level_env

    env = level_env(level_seed, difficulty, seed)
    step = agent(env)
    _, obs, _ = env.observe()
    for t in range(max_steps):
        env.act(np.array([step(obs["rgb"][0])]))
        reward, obs, first = env.observe()
        if first[0]:
            env.close()
            return {"success": bool(reward[0] > 0), "steps": t + 1}
    env.close()
    return {"success": False, "steps": max_steps}
