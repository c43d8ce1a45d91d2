"""Gymnasium environments. Importing this module registers `opengenie/Genie-v0`:

    import gymnasium as gym, opengenie.envs
    env = gym.make("opengenie/Genie-v0", model="worlds/coinrun", max_steps=500)
"""

import gymnasium

from opengenie.envs.genie_env import GenieEnv

ENV_ID = "opengenie/Genie-v0"

if ENV_ID not in gymnasium.registry:  # importing twice (or reloading) must not warn
    gymnasium.register(id=ENV_ID, entry_point="opengenie.envs.genie_env:GenieEnv")

__all__ = ["ENV_ID", "GenieEnv"]
