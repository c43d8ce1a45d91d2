"""A synthetic world with known actions, for tests and sanity checks.

A square on a plain background moves by one of K moves per frame (stay, right, left, down, up,
...), and every move is recorded. By default the square stays inside the frame: each frame's
move is drawn from the moves that keep it there, so every move is visible as the same shift.
Whether a latent action model recovers the moves, and whether a dynamics model follows them
(`follows_actions`), can then be measured exactly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from opengenie.dynamics import DynamicsModel

# (dy, dx) in units of `step` pixels.
MOVES = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1))


def moving_square(num_clips: int, frames: int, *, size: int = 64, square: int = 16, step: int = 8,
                  num_moves: int = 5, seed: int = 0, plain: bool = False,
                  wrap: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clips of a square moved by random moves.

    Returns video (N, 3, T, size, size) float in [-1, 1], moves (N, T−1) int64 in
    [0, num_moves), where moves[:, t] carries frame t to frame t+1, and the world's exact state
    as tokens (N, T, size/step, size/step) int64: 1 where a cell is covered by the square, else 0.
    With `plain`, every clip has the same dark background and light square; otherwise each
    clip draws its own colours. With `wrap`, moves are drawn uniformly and the square wraps
    around the edges (a move across an edge then looks like a jump to the other side).
    """
    if not 1 <= num_moves <= len(MOVES):
        raise ValueError(f"num_moves must lie in 1..{len(MOVES)}, got {num_moves}")
    if size % step or square > size:
        raise ValueError(f"size={size} must be a multiple of step={step} and at least square={square}")
    rng = np.random.default_rng(seed)
    cells = size // step
    moves = np.zeros((num_clips, frames - 1), dtype=np.int64)
    last = cells - math.ceil(square / step)  # the last cell the square's corner may take inside the frame
    video = np.zeros((num_clips, frames, size, size, 3), dtype=np.float32)
    cells_covered = np.zeros((num_clips, frames, cells, cells), dtype=np.int64)
    for n in range(num_clips):
        background = np.full(3, 0.1) if plain else rng.uniform(0.0, 0.4, size=3)
        colour = np.array([1.0, 0.8, 0.2]) if plain else rng.uniform(0.6, 1.0, size=3)
        y, x = rng.integers(0, (cells if wrap else last + 1), size=2)
        for t in range(frames):
            if t > 0:
                allowed = [k for k, (dy, dx) in enumerate(MOVES[:num_moves])
                           if wrap or (0 <= y + dy <= last and 0 <= x + dx <= last)]
                moves[n, t - 1] = move = allowed[rng.integers(len(allowed))]
                dy, dx = MOVES[move]
                y, x = (y + dy) % cells, (x + dx) % cells
            frame = video[n, t]
            frame[:] = background
            rows = (np.arange(square) + y * step) % size
            cols = (np.arange(square) + x * step) % size
            frame[np.ix_(rows, cols)] = colour
            cells_covered[n, t][np.ix_(rows[::step] // step, cols[::step] // step)] = 1
    video = torch.from_numpy(video).permute(0, 4, 1, 2, 3) * 2 - 1  # (N, 3, T, H, W)
    return video.contiguous(), torch.from_numpy(moves), torch.from_numpy(cells_covered)


def follows_actions(dynamics: DynamicsModel, tokens: torch.Tensor, actions: torch.Tensor,
                    val_tokens: torch.Tensor, val_actions: torch.Tensor, *, steps: int = 300,
                    batch_size: int = 32, lr: float = 2e-3) -> tuple[float, float]:
    """Train `dynamics` on state tokens (N, T, h, w) and their actions (N, T−1), then predict the
    second state of held-out pairs (M, 2, h, w) from the first, fully masked, given their
    actions (M, 1) and given another action each.

    Returns the accuracy on the cells a move changes: (with the given actions, with others).
    How far the first exceeds the second is how much the model listens to its actions.
    """
    opt = torch.optim.AdamW(dynamics.parameters(), lr=lr)
    dynamics.train()
    for _ in range(steps):
        idx = torch.randint(0, len(tokens), (batch_size,))
        loss = dynamics.compute_loss(tokens[idx], actions[idx]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dynamics.eval()
    k = dynamics.config.num_actions
    others = (val_actions + torch.randint(1, k, val_actions.shape)) % k
    masked = val_tokens.clone()
    masked[:, 1] = dynamics.mask_id
    changed = val_tokens[:, 1] != val_tokens[:, 0]  # (M, h, w) the cells a move alters
    with torch.no_grad():
        hits = [(dynamics(masked, a).argmax(-1)[:, 1] == val_tokens[:, 1])[changed].float().mean().item()
                for a in (val_actions, others)]
    return hits[0], hits[1]
