"""A CoinRun expert that looks ahead: it tries a few key sequences on a saved copy of the game
and takes the one that gets farthest to the right without dying.

Genie App. E clones a policy from expert videos; the paper's expert was a trained agent. This
one is cheap instead: every `hold` steps it saves procgen's state, plays each plan (one key held
`hold` steps, then another held to the `horizon`), restores the state and presses the first key
of the best plan. A plan that collects the coin wins, one that dies loses (the later the death,
the less), and among the rest the one whose frames show the camera travelling farthest right
wins, ties going to the earlier plan (walking right first). Progress is read from the pixels:
the camera follows the agent, so the horizontal shift between consecutive frames is how far it
walked. Procgen is deterministic given its state, so what a plan did on the copy is what it does.
"""

from __future__ import annotations

import numpy as np

from opengenie.data.keys import LEFT, NOOP, RIGHT, RIGHT_UP, UP

FIRST_KEYS = (RIGHT, RIGHT_UP, UP, NOOP, LEFT)  # in order of preference when plans tie
THEN_KEYS = (RIGHT, RIGHT_UP)
MAX_SHIFT = 8  # px per step a profile comparison searches; CoinRun walks ~2 px a step


def horizontal_shift(first: np.ndarray, second: np.ndarray, max_shift: int = MAX_SHIFT) -> np.ndarray:
    """Camera dx (px, > 0 when the camera moved right) between frames (B, H, W, 3) uint8, from their
    column profiles (each column's mean colour): the integer shift that matches them best.

    Averaging over rows makes the profile almost blind to vertical motion (jumps, falls), so
    one 1-D search per pair suffices; it costs microseconds where a 2-D search costs a millisecond."""
    a, b = first.astype(np.float32).mean(1), second.astype(np.float32).mean(1)  # (B, W, 3)
    width = a.shape[1]
    errors = []
    for s in range(-max_shift, max_shift + 1):  # the scene moves left by s when the camera moves right by s
        lo, hi = max(0, s), min(width, width + s)
        errors.append(((a[:, lo:hi] - b[:, lo - s:hi - s]) ** 2).mean((1, 2)))
    return np.argmin(np.stack(errors, 1), 1) - max_shift  # (B,)


class LookaheadExpert:
    """The expert for one procgen env (a gym3 `ProcgenGym3Env` with num=1)."""

    def __init__(self, env, hold: int = 3, horizon: int = 24) -> None:
        if not 1 <= hold < horizon:
            raise ValueError(f"expected 1 <= hold < horizon, got hold={hold}, horizon={horizon}")
        self.env, self.hold, self.horizon = env, hold, horizon
        self.plans = [[a] * hold + [b] * (horizon - hold) for a in FIRST_KEYS for b in THEN_KEYS]
        self.queue: list[int] = []

    def _score(self, plan: list[int], frame: np.ndarray) -> float:
        """Play `plan` from the current state (which the caller restores): coin +1e4 − t,
        death −1e4 + t, else the camera's travel to the right in px."""
        frames = [frame]
        for t, key in enumerate(plan):
            self.env.act(np.array([key]))
            reward, obs, first = self.env.observe()
            if first[0]:  # the episode ended: at the coin if it paid, else dead (or out of time)
                return 1e4 - t if reward[0] > 0 else -1e4 + t
            frames.append(obs["rgb"][0])
        frames = np.stack(frames)
        return float(horizontal_shift(frames[:-1], frames[1:]).sum())

    def act(self, frame: np.ndarray) -> int:
        """The next key (procgen action id) from the current state, whose frame is `frame` (64, 64, 3)."""
        if not self.queue:
            state = self.env.get_state()
            scores = []
            for plan in self.plans:
                scores.append(self._score(plan, frame))
                self.env.set_state(state)
            self.queue = list(self.plans[int(np.argmax(scores))][:self.hold])
        return self.queue.pop(0)

    def reset(self) -> None:
        """Forget the plan under way (a new episode began)."""
        self.queue = []


def play_level(env, steps: int, expert: LookaheadExpert | None = None) -> dict[str, np.ndarray]:
    """Play `steps` steps of `env` with the expert, restarting as procgen does after each episode.
    Returns what `opengenie.data.coinrun.rollout_level` does: frames (steps, 64, 64, 3) uint8,
    actions (steps,) int64, rewards (steps,) float32, dones (steps,) bool."""
    expert = expert or LookaheadExpert(env)
    frames = np.empty((steps, 64, 64, 3), dtype=np.uint8)
    actions = np.empty(steps, dtype=np.int64)
    rewards, dones = np.empty(steps, dtype=np.float32), np.empty(steps, dtype=bool)
    _, obs, _ = env.observe()
    for t in range(steps):
        frames[t] = obs["rgb"][0]
        actions[t] = expert.act(frames[t])
        env.act(actions[t:t + 1])
        rew, obs, first = env.observe()
        rewards[t], dones[t] = rew[0], first[0]
        if first[0]:
            expert.reset()
    return {"frames": frames, "actions": actions, "rewards": rewards, "dones": dones}
