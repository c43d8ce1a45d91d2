"""Behavioural cloning from frames (Genie App. E): a small CNN policy π(action | frame).

The same network is trained two ways: on the latent actions a frozen action model assigns to
expert videos (the latent policy, which never sees a real action), or on the expert's true
actions (the oracle, the upper bound of the comparison).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def frames_to_input(frames: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1


class PolicyNet(nn.Module):
    """Frames (B, 3, H, W) in [-1, 1] → logits (B, num_actions).

    Stride-2 convolutions down to an 8×8 map, then two linear layers: the map is flattened,
    not pooled, because where things are in the frame is what decides the action."""

    def __init__(self, num_actions: int, image_size: int, width: int = 32) -> None:
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
        layers, channels, side = [], 3, image_size
        while side > 8:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU()]
            channels, side = width, side // 2
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.Flatten(),
                   nn.Linear(width * 8 * 8, 128), nn.ReLU(), nn.Linear(128, num_actions)]
        self.net = nn.Sequential(*layers)
        self.num_actions = num_actions

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)  # (B, num_actions)

    @torch.no_grad()
    def act(self, frames: np.ndarray) -> np.ndarray:
        """The most likely action of each frame (B, H, W, 3) uint8 → (B,) int64."""
        return self(frames_to_input(frames)).argmax(-1).numpy()


def train_policy(frames: np.ndarray, labels: np.ndarray, num_actions: int, *, steps: int = 300,
                 batch_size: int = 64, lr: float = 1e-3, width: int = 32, seed: int = 0) -> PolicyNet:
    """Fit a `PolicyNet` by cross-entropy to `labels` (N,) int64 in [0, num_actions) of
    `frames` (N, H, W, 3) uint8; returned in eval mode. Frames stay uint8 until a batch is drawn,
    so a large dataset costs a quarter of its float size."""
    if len(frames) != len(labels) or len(frames) == 0:
        raise ValueError(f"expected as many labels as frames (at least one), got {len(frames)} and {len(labels)}")
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if labels.min() < 0 or labels.max() >= num_actions:
        raise ValueError(f"labels must lie in [0, {num_actions}), got {labels.min()}..{labels.max()}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    policy = PolicyNet(num_actions, frames.shape[1], width)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=1e-4)
    policy.train()
    for _ in range(steps):
        idx = rng.integers(0, len(frames), size=batch_size)
        loss = nn.functional.cross_entropy(policy(frames_to_input(frames[idx])), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return policy.eval()
