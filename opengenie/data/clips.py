"""Where clips start inside an episode, and how frames become model input.

A clip of `seq_len` frames taken every `frame_skip` frames spans
`span = (seq_len - 1) * frame_skip + 1` frames of its episode. An episode of length L holds
`(L - span) // stride + 1` clips at starts offset, offset + stride, ...; the offset in
[0, slack] shifts the windows from epoch to epoch, so the frames past the last window are not
always the ones left out. Every dataset here (episode folder, video files, tar shards) cuts
clips with these functions, so they agree on what "one epoch" is.
"""

from __future__ import annotations

import numpy as np
import torch


def clip_span(seq_len: int, frame_skip: int) -> int:
    """Frames of the episode that one clip covers, first to last inclusive."""
    if seq_len < 1 or frame_skip < 1:
        raise ValueError(f"expected seq_len >= 1 and frame_skip >= 1, got {seq_len} and {frame_skip}")
    return (seq_len - 1) * frame_skip + 1


def num_clips(length: int, span: int, stride: int) -> int:
    """How many clips an episode of `length` frames holds (0 when it is shorter than a clip)."""
    return 0 if length < span else (length - span) // stride + 1


def clip_offset(length: int, span: int, stride: int, seed: int, epoch: int, episode: int) -> int:
    """The start of the first clip of one episode in one epoch: deterministic, in [0, slack]."""
    n = num_clips(length, span, stride)
    slack = (length - span) - (n - 1) * stride if n else 0
    if slack == 0:
        return 0
    return int(np.random.default_rng([seed, epoch, episode]).integers(0, slack + 1))


def clip_starts(length: int, span: int, stride: int, seed: int, epoch: int, episode: int) -> list[int]:
    """Start frames of every clip of one episode in one epoch."""
    offset = clip_offset(length, span, stride, seed, epoch, episode)
    return [offset + j * stride for j in range(num_clips(length, span, stride))]


def episode_bounds(dones: np.ndarray | None, length: int) -> list[tuple[int, int]]:
    """[first, stop) of each episode in a file of `length` frames.

    dones[t] (length `length`, or None for one episode) says frame t+1 starts a new episode:
    procgen restarts the level when the agent dies or reaches the coin, so one level's file
    holds several of its episodes back to back.
    """
    ends = [] if dones is None else (np.flatnonzero(np.asarray(dones, bool)[: length - 1]) + 1).tolist()
    return list(zip([0, *ends], [*ends, length]))


def episode_clip_starts(dones: np.ndarray | None, length: int, span: int,
                        rng: np.random.Generator | None = None) -> list[int]:
    """Starts of back-to-back clips of `span` frames that never cross an episode's end.

    A file of `length` frames may hold several episodes of one level (`episode_bounds`). Each
    episode holds as many clips as fit; with `rng` they start at a random offset into the
    frames left over, so that not every episode's clips begin on its first frame (every
    episode of a level starts from the same frame).
    """
    if span < 1:
        raise ValueError(f"expected span >= 1, got {span}")
    starts = []
    for first, stop in episode_bounds(dones, length):
        n = num_clips(stop - first, span, span)
        if n:
            slack = stop - first - n * span
            offset = int(rng.integers(0, slack + 1)) if rng is not None else 0
            starts.extend(first + offset + j * span for j in range(n))
    return starts


def to_video(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float32 in [-1, 1], the layout every model takes."""
    # numpy, single-threaded: a clip is small, and torch's intra-op threads only contend
    # with the DataLoader workers (measured 25x slower under load with 2 threads).
    t, h, w, c = frames.shape
    x = np.empty((c, t, h, w), dtype=np.float32)
    np.divide(frames.transpose(3, 0, 1, 2), 127.5, out=x, dtype=np.float32)  # (C, T, H, W)
    x -= 1.0
    return torch.from_numpy(x)


def stable_id(name: str) -> int:
    """A 63-bit integer from a name, the same in every process (unlike Python's hash())."""
    import hashlib

    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1
