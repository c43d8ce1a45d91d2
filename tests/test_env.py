"""The Gymnasium environment over a learned world."""

from __future__ import annotations

import numpy as np
import pytest
import torch

gym = pytest.importorskip("gymnasium")

from gymnasium.utils.env_checker import check_env  # noqa: E402

import opengenie.envs  # noqa: E402,F401  (registers opengenie/Genie-v0)
from opengenie import Genie, presets  # noqa: E402
from opengenie.envs import ENV_ID, GenieEnv  # noqa: E402


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(1)  # the machine is shared; one thread avoids oversubscription stalls
    torch.manual_seed(0)
    return Genie(presets.tiny()).eval()


def test_passes_gymnasium_env_checker(world):
    """GenieEnv satisfies gymnasium's check_env (spaces, seeding determinism, render)."""
    env = gym.make(ENV_ID, model=world, max_steps=5, maskgit_steps=2).unwrapped
    assert isinstance(env, GenieEnv)
    check_env(env, skip_render_check=False)
    assert env.observation_space.shape == (64, 64, 3) and env.action_space.n == 8


def test_registered_and_truncates_at_max_steps(world, tmp_path):
    """gym.make builds it from a saved folder; reward is 0, it never terminates and truncates at max_steps."""
    path = world.save_pretrained(tmp_path / "world")
    env = gym.make(ENV_ID, model=str(path), max_steps=3, maskgit_steps=2)
    obs, info = env.reset(seed=1)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and info["step"] == 0
    flags = []
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert reward == 0.0 and not terminated
        flags.append(truncated)
    assert flags == [False, False, True]
    assert (env.render() == obs).all()


def test_prompt_option_changes_the_start(world):
    """reset(options={"prompt": image}) starts from that image, and later resets keep it."""
    env = GenieEnv(world, maskgit_steps=2)
    grey, _ = env.reset(seed=0)
    white = np.full((100, 100, 3), 255, np.uint8)
    lit, _ = env.reset(seed=0, options={"prompt": white})
    again, _ = env.reset(seed=0)
    assert not (grey == lit).all() and (lit == again).all()


def test_rejects_bad_actions(world):
    """Out-of-range actions and stepping before reset raise errors that say what to do."""
    env = GenieEnv(world, maskgit_steps=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="0..7"):
        env.step(8)
