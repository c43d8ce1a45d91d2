"""A goal task in the moving-square world, where every answer is known.

A light square and a target on a dark 32×32 frame; each step moves the square one cell
(4 px) by one of five moves (`opengenie.data.synthetic.MOVES[:5]`: stay, right, left, down, up).
An episode succeeds when the square covers the target. The expert walks straight to it, so
its videos hold the moves but (as in Genie App. E) an agent learning from them is not shown
which move was taken: a latent action model has to name them.

Frames handed to policies are (B, H, W, 3) uint8, as everywhere a person would see them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from opengenie.data.synthetic import MOVES

NUM_MOVES = 5  # stay, right, left, down, up
SIZE, STEP, SQUARE = 32, 4, 8  # frame side, px per cell, square side
LAST = (SIZE - SQUARE) // STEP  # the last cell the square's corner can take: 6, so 7×7 positions
BACKGROUND, SQUARE_RGB, TARGET_RGB = (25, 25, 25), (255, 204, 51), (60, 140, 255)
MAX_STEPS = 24  # per episode; the farthest target is 12 moves away


class SquareGoal:
    """`num` episodes played side by side: square corners `pos` and targets `target`, (num, 2)
    int cells (row, column) in 0..LAST. Moves that would leave the frame leave the square where it is."""

    def __init__(self, num: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.pos = rng.integers(0, LAST + 1, size=(num, 2))
        self.target = rng.integers(0, LAST + 1, size=(num, 2))
        same = (self.pos == self.target).all(1)  # start somewhere else: every episode needs a move
        self.target[same, 1] = (self.target[same, 1] + 1 + rng.integers(0, LAST, size=same.sum())) % (LAST + 1)
        self.steps = np.zeros(num, dtype=np.int64)

    @property
    def success(self) -> np.ndarray:
        """(num,) bool: the square covers its target."""
        return (self.pos == self.target).all(1)

    def render(self) -> np.ndarray:
        """(num, SIZE, SIZE, 3) uint8: the target under the square."""
        frames = np.empty((len(self.pos), SIZE, SIZE, 3), dtype=np.uint8)
        frames[:] = BACKGROUND
        for frame, (y, x), (ty, tx) in zip(frames, self.pos * STEP, self.target * STEP):
            frame[ty:ty + SQUARE, tx:tx + SQUARE] = TARGET_RGB
            frame[y:y + SQUARE, x:x + SQUARE] = SQUARE_RGB
        return frames

    def step(self, moves: np.ndarray) -> None:
        """Apply one move (num,) int64 in [0, NUM_MOVES) to every episode not yet won."""
        delta = np.array(MOVES[:NUM_MOVES])[np.asarray(moves)]  # (num, 2) (dy, dx)
        live = ~self.success
        self.pos[live] = np.clip(self.pos[live] + delta[live], 0, LAST)
        self.steps[live] += 1


def expert_moves(pos: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The expert: one move (num,) toward each target along an axis where it is still off,
    chosen at random when both are; stay (0) once there."""
    dy, dx = (target - pos).T
    vertical = np.where(dy > 0, 3, 4)  # down, up
    horizontal = np.where(dx > 0, 1, 2)  # right, left
    pick_vertical = (dx == 0) | ((dy != 0) & (rng.random(len(pos)) < 0.5))
    return np.where((dy == 0) & (dx == 0), 0, np.where(pick_vertical, vertical, horizontal))


def expert_episodes(num: int, seed: int) -> dict[str, np.ndarray]:
    """Transitions of `num` expert episodes: frames (N, H, W, 3) uint8, next_frames (N, H, W, 3)
    uint8 and moves (N,) int64, one row per move (step by step, the episodes interleaved)."""
    env, rng = SquareGoal(num, seed), np.random.default_rng([seed, 1])
    frames, next_frames, moves = [], [], []
    while not env.success.all():
        live = ~env.success
        before, move = env.render(), expert_moves(env.pos, env.target, rng)
        env.step(move)
        frames.append(before[live]), next_frames.append(env.render()[live]), moves.append(move[live])
    return {"frames": np.concatenate(frames), "next_frames": np.concatenate(next_frames),
            "moves": np.concatenate(moves)}


def random_pairs(num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unlabelled training video for the action model: `num` random frame pairs, each carried
    by a move that keeps the square in the frame (as `moving_square` does), as video
    (num, 3, 2, SIZE, SIZE) float in [-1, 1], with their moves (num, 1) for checking only."""
    env, rng = SquareGoal(num, seed), np.random.default_rng([seed, 2])
    allowed = np.array([[0 <= y + dy <= LAST and 0 <= x + dx <= LAST for dy, dx in MOVES[:NUM_MOVES]]
                        for y, x in env.pos])  # (num, NUM_MOVES)
    moves = np.array([rng.choice(np.flatnonzero(a)) for a in allowed])
    first = env.render()
    env.pos = np.clip(env.pos + np.array(MOVES[:NUM_MOVES])[moves], 0, LAST)  # success does not stop it
    return to_video(first, env.render()), torch.from_numpy(moves)[:, None]


def to_video(first: np.ndarray, second: np.ndarray) -> torch.Tensor:
    """Two frame batches (B, H, W, 3) uint8 → video (B, 3, 2, H, W) float in [-1, 1]."""
    pair = torch.from_numpy(np.stack([first, second], axis=1))  # (B, 2, H, W, 3)
    return pair.permute(0, 4, 1, 2, 3).float() / 127.5 - 1


def train_action_model(steps: int = 200, batch: int = 32, seed: int = 0):
    """The tiny latent action model (pairs encoder, 8 codes) trained `steps` steps on random
    frame pairs of this world, never seeing a move label; returned frozen (eval mode)."""
    from opengenie import LatentActionModel, presets

    torch.manual_seed(seed)
    config = replace(presets.tiny().action, image_size=(SIZE, SIZE), patch_size=8, encoder="pairs",
                     decoder_context="frame", max_frames=2, codebook_warmup_steps=steps * 3 // 4)
    model = LatentActionModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for step in range(steps):
        video, _ = random_pairs(batch, seed=10_000 * (seed + 1) + step)
        loss = model(video).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.eval().requires_grad_(False)
