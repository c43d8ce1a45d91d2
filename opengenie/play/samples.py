"""Starting frames from an episode folder, for a player who has no image of their own.

Frames come from the held-out splits (test and val) so that the player sees how the world
copes with levels it was not trained on; a folder without a manifest offers all its episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from opengenie.data.episodes import EpisodeFile
from opengenie.data.manifest import episode_paths, read_manifest


@dataclass(frozen=True)
class SampleFrame:
    """One offered starting frame: where it comes from and its pixels (H, W, 3) uint8."""

    label: str  # e.g. "level_000007 · frame 312"
    frame: np.ndarray


def sample_frames(root: str | Path, count: int = 12, seed: int = 0) -> list[SampleFrame]:
    """Up to `count` frames spread over the held-out episodes (test and val splits; else all),
    or the first `count` PNG images of a folder of images (sorted by name).

    Episodes are shuffled with `seed` and visited in turn; each visit picks a random frame.
    """
    root = Path(root)
    images = sorted(root.glob("*.png"))
    if images and not any(root.glob("*.npz")):  # a folder of starting frames
        return [SampleFrame(path.stem, np.asarray(Image.open(path).convert("RGB"))) for path in images[:count]]
    if read_manifest(root) is None:
        paths = episode_paths(root)
    else:
        paths = episode_paths(root, "test") + episode_paths(root, "val") or episode_paths(root)
    if not paths:
        raise ValueError(f"{root} holds no episodes; make some with `opengenie data coinrun --out {root} ...`")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(paths))
    out = []
    for k in range(min(count, 4 * len(paths))):  # at most four frames of any one episode
        episode = EpisodeFile(paths[order[k % len(paths)]])
        if len(episode) == 0:
            continue
        t = int(rng.integers(len(episode)))
        out.append(SampleFrame(f"{episode.path.stem} · frame {t}", episode.read("frames", t, t + 1)[0]))
    return out
