"""What each action would do next: one step of every latent action from a rollout's current
frame, each on its own copy of the rollout, so the player's history and random stream stay as
they were (the play page's action preview).

    frames = preview_frames(rollout)   # (N, H, W, 3) uint8, row a = the frame after action a

Each copy starts from the rollout's own random state, so row a is exactly the frame that taking
action a next will produce.
"""

from __future__ import annotations

import numpy as np
import torch

from opengenie.engine import Rollout
from opengenie.images import to_frames


@torch.no_grad()
def preview_frames(state: Rollout) -> np.ndarray:
    """One step of each of the world's N latent actions from a one-row rollout → (N, H, W, 3)
    uint8, row a the frame after action a; `state` is left as it was. The N steps run one after
    another at batch size one (the cost of N cached steps): a batch would draw other random
    numbers than the player's next step, and the preview would no longer be what that step shows."""
    if state.tokens.shape[0] != 1:
        raise ValueError(f"expected a one-row rollout to preview, got {state.tokens.shape[0]} rows")
    frames = []
    for a in range(state.num_actions):
        video = state.branch().step(torch.tensor([a]))  # (1, C, 1, H, W), at the rollout's MaskGIT settings
        frames.append(to_frames(video[0])[0])  # (H, W, 3)
    return np.stack(frames)  # (N, H, W, 3)
