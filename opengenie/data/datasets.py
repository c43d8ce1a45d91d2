"""Clip datasets (`torch.utils.data.Dataset`) over an episode folder or over video files.

Every item is a dict:
    "video":   (3, seq_len, H, W) float32 in [-1, 1]
    "actions": (seq_len,) int64, only when the episode has true actions; actions[t] is the
               action taken after frame t (with frame_skip > 1, the first of the skipped ones)
    "episode": int, index of the episode (or video) in `dataset.paths`
    "start":   int, the clip's first frame in that episode

Both datasets are map-style: item i is always the same clip for a given (seed, epoch), so a
DataLoader gives identical batches with 0 or many workers, and shuffling is the sampler's job
(`DataLoader(ds, shuffle=True, generator=torch.Generator().manual_seed(s))`). Call
`set_epoch(e)` between epochs to shift the clip windows (see `clips.py`).
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from opengenie.data.clips import clip_offset, clip_span, episode_bounds, num_clips, to_video
from opengenie.data.episodes import EpisodeFile
from opengenie.data.manifest import episode_paths, read_manifest, split_of


class _ClipIndex(Dataset):
    """Maps item i to (episode, start) over episodes of known lengths, without listing clips.

    Clips are cut from parts: (episode, first, length), the stretch of an episode file they
    may span. By default each file is one part; cut at its `dones`, each life of its level is
    one (an episode, in procgen's words), so that no clip runs across a restart.
    """

    def _build_index(self, lengths: list[int], seq_len: int, frame_skip: int, stride: int | None, seed: int,
                     parts: list[tuple[int, int, int]] | None = None) -> None:
        self.seq_len, self.frame_skip, self.seed, self.epoch = seq_len, frame_skip, seed, 0
        self.span = clip_span(seq_len, frame_skip)
        # Default stride: clips do not overlap, so an epoch shows each frame about once.
        self.stride = stride or self.span
        if self.stride < 1:
            raise ValueError(f"expected stride >= 1 or None, got {stride}")
        self.lengths = lengths
        self.parts = parts if parts is not None else [(e, 0, n) for e, n in enumerate(lengths)]
        self._part_keys = [(e, first) for e, first, _ in self.parts]  # sorted: index_of bisects them
        counts = [num_clips(n, self.span, self.stride) for _, _, n in self.parts]
        self.too_short = sum(c == 0 for c in counts)
        if not any(counts):
            longest = max((n for _, _, n in self.parts), default=0)
            what = "episodes" if parts is None else "episodes (files cut at their dones)"
            raise ValueError(
                f"a clip of seq_len={seq_len} with frame_skip={frame_skip} needs {self.span} frames, "
                f"but the longest of {len(self.parts)} {what} has {longest}; lower seq_len or "
                "frame_skip, or use longer episodes" + ("" if parts is None else ", or let clips run across "
                                                         "episode ends (data.across_episode_ends: true)")
            )
        self._ends = np.cumsum(counts)  # item i lies in the first part whose end exceeds i

    def set_epoch(self, epoch: int) -> None:
        """Shift the clip windows for this epoch (deterministic given seed and epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self._ends[-1])

    def _offset(self, part: int) -> int:
        # Seeded by the part's index: with one part an episode, exactly the episode's offset.
        return clip_offset(self.parts[part][2], self.span, self.stride, self.seed, self.epoch, part)

    def locate(self, index: int) -> tuple[int, int]:
        """Item index -> (episode, start frame)."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        p = int(np.searchsorted(self._ends, index, side="right"))
        j = index - (int(self._ends[p - 1]) if p else 0)
        episode, first, _ = self.parts[p]
        return episode, first + self._offset(p) + j * self.stride

    def index_of(self, episode: int, start: int) -> int:
        """(episode, start frame) -> item index, the inverse of `locate` for a start this epoch holds."""
        # The part of `episode` that holds `start`: the last one that begins at or before it.
        p = bisect.bisect_right(self._part_keys, (episode, start)) - 1
        if p >= 0 and self.parts[p][0] == episode:
            j, rest = divmod(start - self.parts[p][1] - self._offset(p), self.stride)
            first_item = int(self._ends[p - 1]) if p else 0
            if not rest and 0 <= j < int(self._ends[p]) - first_item:
                return first_item + j
        raise ValueError(f"episode {episode} holds no clip starting at frame {start} (stride {self.stride})")


class EpisodeClipDataset(_ClipIndex):
    """Clips from a folder of episode `.npz` files (see `episodes.py`), read per clip.

    root: the folder; split: "train" | "val" | "test" from its manifest, or None for all.
    Only the frames of the requested clip are read from disk, so memory does not grow with
    the folder. Episodes shorter than a clip are left out and counted in `too_short`.
    With skip_invalid=True, unreadable files are left out and listed in `invalid`
    (path, reason) instead of raising. With across_episode_ends=False, a file that records
    `dones` is cut at them: procgen restarts a CoinRun level when the agent dies or reaches the
    coin, and a clip across that restart shows a teleport no key causes. `too_short` then counts
    the episodes of each file shorter than a clip; a file without `dones` is one episode.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        seq_len: int = 16,
        frame_skip: int = 1,
        *,
        split: str | None = None,
        stride: int | None = None,
        seed: int = 0,
        with_actions: bool = True,
        skip_invalid: bool = False,
        across_episode_ends: bool = True,
    ):
        self.root = Path(root)
        self.with_actions = with_actions
        paths = episode_paths(self.root, split)
        if not paths:
            if split and episode_paths(self.root, None):
                raise ValueError(f"no episodes for split {split!r} in {self.root}, which holds episodes of "
                                 "other splits: choose another split, or all of them (split=None; "
                                 "`opengenie eval --split all`)")
            raise ValueError(f"no episodes in {self.root}; create some with `opengenie data coinrun|videos`")
        manifest = read_manifest(self.root)
        known = {e["file"]: e["frames"] for e in manifest["episodes"]} if manifest else {}
        self.paths, lengths, self.invalid = [], [], []
        self._files: dict[int, EpisodeFile] = {}
        for path in paths:
            if path.name in known:  # the manifest knows the length: no need to open the file
                self.paths.append(path)
                lengths.append(known[path.name])
                continue
            try:
                ep = EpisodeFile(path)
            except ValueError as err:
                if not skip_invalid:
                    raise
                self.invalid.append((str(path), str(err)))
                continue
            self._files[len(self.paths)] = ep
            self.paths.append(path)
            lengths.append(len(ep))
        self.lengths, parts = lengths, None  # _file checks a file against its length
        if not across_episode_ends:  # one part per episode of each file
            parts = [(e, first, stop - first) for e, n in enumerate(lengths)
                     for first, stop in episode_bounds(self.dones(e), n)]
        self._build_index(lengths, seq_len, frame_skip, stride, seed, parts)

    def _file(self, e: int) -> EpisodeFile:
        if e not in self._files:  # opened once per process; only the small header is kept
            ep = EpisodeFile(self.paths[e])
            if len(ep) != self.lengths[e]:
                raise ValueError(
                    f"{self.paths[e]} has {len(ep)} frames but the manifest says {self.lengths[e]}; "
                    "re-run the `opengenie data` command that made the folder to refresh it"
                )
            self._files[e] = ep
        return self._files[e]

    def dones(self, episode: int) -> np.ndarray | None:
        """The episode file's `dones` (a new episode of its level begins after each True), or None."""
        ep = self._file(episode)
        return ep.read("dones") if ep.has("dones") else None

    def __getitem__(self, index: int) -> dict:
        e, start = self.locate(index)
        ep = self._file(e)
        stop = start + self.span
        item = {"video": to_video(ep.read("frames", start, stop, self.frame_skip)), "episode": e, "start": start}
        if self.with_actions and ep.has("actions"):
            item["actions"] = torch.from_numpy(ep.read("actions", start, stop, self.frame_skip).astype(np.int64))
        return item


class VideoClipDataset(_ClipIndex):
    """Clips decoded straight from video files, for data that was never converted.

    Frames are centre-cropped and resized to `size` and resampled to `fps` exactly as
    `convert_videos` does. Opening the dataset reads each file's packet timestamps (no
    decoding); each item seeks to its clip and decodes only that stretch. Unreadable files
    are left out and listed in `invalid` (path, reason). `split` keeps only the videos that
    `convert_videos` would put in that split.
    """

    def __init__(
        self,
        src: str | os.PathLike | Iterable[str | os.PathLike],
        seq_len: int = 16,
        frame_skip: int = 1,
        *,
        size: int = 64,
        fps: float | None = None,
        split: str | None = None,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        stride: int | None = None,
        seed: int = 0,
    ):
        from opengenie.data.videos import find_videos, frame_times, video_key

        self.size = size
        self.paths, self.times, self.invalid = [], [], []
        for path in find_videos(src):
            if split is not None and split_of(video_key(path), val_fraction, test_fraction) != split:
                continue
            try:
                times = frame_times(path, fps)
            except Exception as err:  # noqa: BLE001 -- an unreadable file only drops itself
                self.invalid.append((str(path), f"{type(err).__name__}: {err}"))
                continue
            self.paths.append(path)
            self.times.append(times)
        if not self.paths:
            raise ValueError(f"no readable videos in {src}" + (f" for split {split!r}" if split else "")
                             + f"; unreadable: {self.invalid}")
        self._build_index([len(t) for t in self.times], seq_len, frame_skip, stride, seed)

    def __getitem__(self, index: int) -> dict:
        from opengenie.data.videos import decode_frames

        e, start = self.locate(index)
        times = self.times[e][start : start + self.span : self.frame_skip]
        frames = np.stack(list(decode_frames(self.paths[e], times, self.size)))  # (T, size, size, 3)
        return {"video": to_video(frames), "episode": e, "start": start}
