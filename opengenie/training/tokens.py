"""Cached tokens: the frozen tokenizer's ids stored beside the episodes, so stage 2 does not
encode every clip again at every step.

    opengenie tokenize --model runs/tokenizer/checkpoints/last.ckpt --data data/coinrun

writes `DIR/tokens/<episode>.npy`, one file per episode, holding the ids of that episode's
clip windows `(clips, T, H', W')` int16, and `DIR/tokens/index.json` naming the tokenizer
(a fingerprint of its config and weights), the window layout and each episode's clip count.

Why windows and not one id per frame: the ST-ViViT encoder is causal in *time*, so a frame's
tokens depend on every earlier frame of the clip it is encoded in. Cached ids are only right
for the clip they were computed in; `TokenClipDataset` therefore serves exactly those clips
(starts 0, stride, 2·stride, ... of each episode), and an on-the-fly encoding of the same
clip gives the same ids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from opengenie.data.clips import clip_span, num_clips, to_video
from opengenie.data.episodes import EpisodeFile
from opengenie.data.manifest import episode_paths

TOKENS_DIR, INDEX = "tokens", "index.json"


def read_index(root: str | os.PathLike) -> dict:
    path = Path(root) / TOKENS_DIR / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"no token cache in {path.parent}; make one with "
                                f"`opengenie tokenize --model TOKENIZER --data {root}`")
    index = json.loads(path.read_text())
    if index.get("format") != "opengenie-tokens":
        raise ValueError(f"{path}: expected an opengenie token index, got format {index.get('format')!r}")
    return index


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


@torch.no_grad()
def tokenize_episodes(tokenizer, root: str | os.PathLike, *, seq_len: int | None = None, frame_skip: int = 1,
                      stride: int | None = None, batch_size: int = 16, device: str = "cpu",
                      progress: bool = True) -> dict:
    """Encode the clip windows of every episode in `root` with `tokenizer` (in fp32); return the index.

    seq_len: frames per clip (default: the tokenizer's max_frames); stride: frames between
    window starts (default: one clip span, no overlap). Episodes already cached by the same
    tokenizer with the same layout are skipped, so an interrupted run resumes.
    """
    from tqdm import tqdm

    from opengenie.training.checkpoints import tokenizer_fingerprint

    root = Path(root)
    tokenizer = tokenizer.to(device).float().eval()
    seq_len = seq_len or tokenizer.config.max_frames
    span = clip_span(seq_len, frame_skip)
    stride = stride or span
    if stride < 1 or batch_size < 1:
        raise ValueError(f"expected stride >= 1 and batch_size >= 1, got {stride} and {batch_size}")
    layout = {"format": "opengenie-tokens", "version": 1, "tokenizer": tokenizer_fingerprint(tokenizer),
              "seq_len": seq_len, "frame_skip": frame_skip, "stride": stride,
              "codebook_size": tokenizer.config.codebook_size}
    out = root / TOKENS_DIR
    out.mkdir(exist_ok=True)
    try:
        old = read_index(root)
    except FileNotFoundError:
        old = {}
    done = old.get("episodes", {}) if all(old.get(k) == v for k, v in layout.items()) else {}
    dtype = np.int16 if tokenizer.config.codebook_size <= np.iinfo(np.int16).max else np.int32
    episodes = {}
    for path in tqdm(episode_paths(root), unit="episode", desc="tokenize", disable=not progress):
        target = out / f"{path.stem}.npy"
        if path.name in done and target.is_file():
            episodes[path.name] = done[path.name]
            continue
        ep = EpisodeFile(path)
        starts = [j * stride for j in range(num_clips(len(ep), span, stride))]
        if not starts:
            continue  # shorter than one clip: no window to cache
        ids = []
        for i in range(0, len(starts), batch_size):
            video = torch.stack([to_video(ep.read("frames", s, s + span, frame_skip))
                                 for s in starts[i: i + batch_size]]).to(device)  # (b, 3, T, H, W)
            with torch.autocast(torch.device(device).type, enabled=False):
                ids.append(tokenizer.tokenize(video)[1].cpu().numpy().astype(dtype))  # (b, T, H', W')
        _atomic_save(target, np.concatenate(ids))
        episodes[path.name] = len(starts)
    index = {**layout, "episodes": episodes}
    tmp = out / f".{INDEX}.{os.getpid()}.partial"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, out / INDEX)
    return index


class TokenClipDataset(Dataset):
    """Clips of an episode folder with their cached tokens.

    Items are `EpisodeClipDataset`'s — "video" (3, T, H, W) float in [-1, 1], "actions" (T,)
    when the episodes have them, "episode", "start" — plus "tokens" (T, H', W') int64. The
    clips are the cached windows; seq_len and frame_skip must be the ones tokenized.
    """

    def __init__(self, root: str | os.PathLike, seq_len: int, frame_skip: int = 1, *, split: str | None = None,
                 with_actions: bool = True) -> None:
        self.root, self.with_actions = Path(root), with_actions
        self.index = read_index(self.root)
        if (self.index["seq_len"], self.index["frame_skip"]) != (seq_len, frame_skip):
            raise ValueError(f"the token cache in {self.root / TOKENS_DIR} holds clips of seq_len="
                             f"{self.index['seq_len']}, frame_skip={self.index['frame_skip']}, but the data asks "
                             f"for seq_len={seq_len}, frame_skip={frame_skip}; re-run `opengenie tokenize "
                             f"--seq-len {seq_len} --frame-skip {frame_skip}` or change data.seq_len")
        self.seq_len, self.frame_skip, self.stride = seq_len, frame_skip, self.index["stride"]
        self.span = clip_span(seq_len, frame_skip)
        cached = self.index["episodes"]
        paths = episode_paths(self.root, split)
        missing = [p.name for p in paths if p.name not in cached]
        if missing and len(missing) == len(paths):
            raise ValueError(f"none of the {len(paths)} episodes of {self.root} has cached tokens; "
                             f"re-run `opengenie tokenize --data {self.root}`")
        # Episodes shorter than one clip have no windows and are left out, as in EpisodeClipDataset.
        self.paths = [p for p in paths if cached.get(p.name)]
        self.too_short = len(paths) - len(self.paths)
        self._ends = np.cumsum([cached[p.name] for p in self.paths])
        self._files: dict[int, EpisodeFile] = {}

    def set_epoch(self, epoch: int) -> None:
        """The windows are fixed by the cache: nothing moves from epoch to epoch."""

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def locate(self, index: int) -> tuple[int, int]:
        """Item index -> (episode, window)."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        e = int(np.searchsorted(self._ends, index, side="right"))
        return e, index - (int(self._ends[e - 1]) if e else 0)

    def __getitem__(self, index: int) -> dict:
        e, j = self.locate(index)
        if e not in self._files:
            self._files[e] = EpisodeFile(self.paths[e])
        ep, start = self._files[e], j * self.stride
        tokens = np.load(self.root / TOKENS_DIR / f"{self.paths[e].stem}.npy", mmap_mode="r")[j]  # (T, H', W')
        item = {"video": to_video(ep.read("frames", start, start + self.span, self.frame_skip)),
                "tokens": torch.from_numpy(tokens.astype(np.int64)), "episode": e, "start": start}
        if self.with_actions and ep.has("actions"):
            item["actions"] = torch.from_numpy(ep.read("actions", start, start + self.span, self.frame_skip)
                                               .astype(np.int64))
        return item
