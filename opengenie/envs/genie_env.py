"""A learned world as a Gymnasium environment: observations are frames, actions latent actions.

    import gymnasium as gym, opengenie.envs
    env = gym.make("opengenie/Genie-v0", model="worlds/coinrun", prompt="level.png", max_steps=200)
    obs, info = env.reset(seed=0)                 # (H, W, 3) uint8
    obs, reward, terminated, truncated, info = env.step(3)

A learned world predicts frames, not rewards or episode ends: the reward is always 0.0, the
episode never terminates, and it is truncated after `max_steps` steps. Without a prompt the
world starts from a plain mid-grey frame (what the tokenizer makes of it is the first
observation); pass `prompt=` or `reset(options={"prompt": image})` for a real start.
A labelled world names its actions: `env.unwrapped.action_labels` ("walk right", "jump", ...)
and `env.unwrapped.arrow_keys` ({"ArrowRight": 3, ...}).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from opengenie.engine import Rollout, check_sampling, play_graphs
from opengenie.genie import Genie
from opengenie.images import ImageLike, load_frames, to_frames, to_video
from opengenie.nn.checks import is_int


class GenieEnv(gym.Env):
    """One world being played. `model`: a saved world's folder or a loaded `Genie` (shared
    weights: many environments may wrap one model, each keeps its own rollout state).
    `compiled`: compile the world's play step first (`Genie.compile_play`, about 20 s once per
    loaded world; environments over one world share it), for about twice the steps per second."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, model: str | Path | Genie, prompt: ImageLike | None = None, max_steps: int = 1000,
                 render_mode: str | None = "rgb_array", maskgit_steps: int | None = None,
                 temperature: float | None = None, device: str = "cpu", compiled: bool = False):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        if not is_int(max_steps) or max_steps < 1:
            raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
        check_sampling(maskgit_steps, temperature)
        self.world = model if isinstance(model, Genie) else Genie.from_pretrained(model, device=device)
        if compiled and play_graphs(self.world.tokenizer, self.world.dynamics) is None:
            self.world.compile_play()
        self.render_mode, self.max_steps = render_mode, max_steps
        self.maskgit_steps, self.temperature = maskgit_steps, temperature
        h, w = self.world.image_size
        self.observation_space = spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.action_space = spaces.Discrete(self.world.num_actions)
        # What each action does, where the world was labelled (`opengenie label`): "walk right", ...
        self.action_labels: tuple[str, ...] = self.world.config.action_labels
        self.arrow_keys: dict[str, int] = dict(self.world.config.arrow_keys)
        self.prompt = self._load(prompt) if prompt is not None else np.full((1, h, w, 3), 127, np.uint8)
        self._state: Rollout | None = None
        self._frame: np.ndarray | None = None
        self._t = 0

    def _load(self, prompt: ImageLike) -> np.ndarray:
        return load_frames(prompt, self.world.image_size)  # (T, H, W, 3) uint8

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start from `options["prompt"]` (kept for later resets) or the current prompt →
        (first frame (H, W, 3) uint8, info)."""
        super().reset(seed=seed)
        if options and options.get("prompt") is not None:
            self.prompt = self._load(options["prompt"])
        # MaskGIT draws from a generator seeded by the env's own stream, so a seeded reset
        # replays the same rollout for the same actions.
        world_seed = int(self.np_random.integers(2**62))
        self._state, recon = self.world.start(to_video(self.prompt), world_seed, maskgit_steps=self.maskgit_steps,
                                              temperature=self.temperature)
        self._frame, self._t = to_frames(recon[0, :, -1:])[0], 0
        return self._frame, {"step": 0}

    def step(self, action):
        """Take latent action `action` in [0, num_actions) → (frame, 0.0, False, truncated, info)."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if isinstance(action, (bool, np.bool_)) or not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in 0..{self.action_space.n - 1}, got {action!r}")
        video = self._state.step(torch.tensor([int(action)]))
        self._frame, self._t = to_frames(video[0])[0], self._t + 1
        # A learned world has no reward and no terminal state; only the step budget ends it.
        return self._frame, 0.0, False, self._t >= self.max_steps, {"step": self._t}

    def render(self) -> np.ndarray | None:
        """The current frame (H, W, 3) uint8 (render_mode "rgb_array")."""
        return None if self.render_mode is None else self._frame

    def close(self) -> None:
        self._state = None
