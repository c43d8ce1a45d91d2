"""Tar shards (WebDataset) of episode chunks, for datasets larger than one disk.

A shard `shard-000042.tar` holds samples; one sample is one chunk of one episode:
    {key}.frames.npy   (T, H, W, 3) uint8
    {key}.actions.npy  (T,) int64, when the episode has actions
    {key}.json         {"episode": file name, "start": first frame, "frames": T,
                        "group": split group, "split": "train" | "val" | "test" | null}
`shards.json` beside the shards lists them with their sample and frame counts.

`ShardClipDataset` streams clips from shards given as local paths, a folder, a brace pattern
(`shard-{000000..000127}.tar`) or any URL WebDataset opens (`https://...`, `pipe:aws s3 cp
s3://bucket/shard-000001.tar -`). Each epoch it splits the shard list across ranks and
DataLoader workers: consumer c of C (C = world_size x num_workers) reads shards c, c+C, ...,
so within an epoch every clip is read by exactly one consumer. With DDP, give at least C
shards and roughly equal ones, or ranks will run out of data at different steps.

Needs the `shards` extra: `pip install opengenie[shards]` (webdataset).
"""

from __future__ import annotations

import io
import json
import os
import random
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from opengenie.data.clips import clip_span, clip_starts, stable_id, to_video
from opengenie.data.episodes import EpisodeFile, validate_episode
from opengenie.data.manifest import episode_paths, read_manifest

INDEX = "shards.json"


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_shards(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    chunk_frames: int | None = None,
    split: str | None = None,
    max_shard_bytes: float = 1e9,
    max_samples_per_shard: int = 10_000,
    progress: bool = True,
) -> list[Path]:
    """Pack the episodes of folder `src` (optionally one split) into tar shards in `out`.

    Episodes are cut into chunks of at most `chunk_frames` frames (None: whole episodes).
    A shard is closed once it reaches `max_shard_bytes` or `max_samples_per_shard`.
    Returns the shard paths; also writes `out/shards.json`.
    """
    import webdataset as wds
    from tqdm import tqdm

    if chunk_frames is not None and chunk_frames < 1:
        raise ValueError(f"expected chunk_frames >= 1 or None, got {chunk_frames}")
    paths = episode_paths(src, split)
    if not paths:
        raise ValueError(f"no episodes in {src}" + (f" for split {split!r}" if split else ""))
    info = {e["file"]: e for e in (read_manifest(src) or {"episodes": []})["episodes"]}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict] = {}
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=max_samples_per_shard,
                         maxsize=max_shard_bytes, verbose=0) as sink:
        for path in tqdm(paths, unit="episode", desc="shards", disable=not progress):
            ep = EpisodeFile(path)
            meta = info.get(path.name, {})
            step = chunk_frames or len(ep)
            for start in range(0, len(ep), step):
                stop = min(start + step, len(ep))
                stem = path.stem.replace(".", "-")  # tar samples are keyed by the name up to its first dot
                sample = {
                    "__key__": f"{stem}_{start:07d}",
                    "frames.npy": _npy_bytes(ep.read("frames", start, stop)),
                    "json": json.dumps({"episode": path.name, "start": start, "frames": stop - start,
                                        "group": meta.get("group", path.stem), "split": meta.get("split")}).encode(),
                }
                if ep.has("actions"):
                    sample["actions.npy"] = _npy_bytes(ep.read("actions", start, stop).astype(np.int64))
                sink.write(sample)
                name = Path(sink.fname).name
                c = counts.setdefault(name, {"file": name, "samples": 0, "frames": 0})
                c["samples"] += 1
                c["frames"] += stop - start
    index = {"format": "opengenie-shards", "version": 1, "source": str(src), "split": split,
             "chunk_frames": chunk_frames, "shards": sorted(counts.values(), key=lambda c: c["file"])}
    (out / INDEX).write_text(json.dumps(index, indent=1))
    return [out / c["file"] for c in index["shards"]]


def shard_urls(urls: str | os.PathLike | Iterable[str]) -> list[str]:
    """A shard list from a folder (its *.tar, sorted), a brace pattern, one URL, or a list."""
    if isinstance(urls, (str, os.PathLike)):
        if Path(urls).is_dir():
            found = sorted(str(p) for p in Path(urls).glob("*.tar"))
            if not found:
                raise ValueError(f"expected .tar shards in {urls}, found none; write them with `opengenie data shards`")
            return found
        import braceexpand  # a dependency of webdataset

        return list(braceexpand.braceexpand(str(urls)))
    return [str(u) for u in urls]


def _distributed(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """This process's rank and the world size: as given, else torch.distributed, else 0 of 1."""
    if rank is not None and world_size is not None:
        if not 0 <= rank < world_size:
            raise ValueError(f"expected 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class ShardClipDataset(IterableDataset):
    """Clips streamed from tar shards, split disjointly across ranks and workers.

    Yields the same dicts as `EpisodeClipDataset` ("video", "actions" when present, plus
    "key" and "start" naming the chunk and the clip's first frame in it). Clip windows follow
    `clips.py` with the same seed/epoch rule. With shuffle=True the shard order is permuted
    per epoch (the same permutation on every rank, so the split stays disjoint) and clips pass
    a shuffle buffer of `shuffle_buffer` items; the order is deterministic given seed, epoch
    and the number of consumers. rank/world_size default to torch.distributed or the
    RANK/WORLD_SIZE environment variables.
    """

    def __init__(
        self,
        urls: str | os.PathLike | Iterable[str],
        seq_len: int = 16,
        frame_skip: int = 1,
        *,
        stride: int | None = None,
        shuffle: bool = True,
        shuffle_buffer: int = 256,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        with_actions: bool = True,
    ):
        self.urls = shard_urls(urls)
        self.span = clip_span(seq_len, frame_skip)
        self.seq_len, self.frame_skip, self.stride = seq_len, frame_skip, stride or self.span
        self.shuffle, self.shuffle_buffer, self.seed, self.epoch = shuffle, shuffle_buffer, seed, 0
        self.rank, self.world_size, self.with_actions = rank, world_size, with_actions

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def my_shards(self) -> tuple[list[str], int]:
        """The shards this rank/worker reads this epoch, and this consumer's global index."""
        rank, world = _distributed(self.rank, self.world_size)
        worker = get_worker_info()
        wid, nworkers = (worker.id, worker.num_workers) if worker else (0, 1)
        consumer, consumers = rank * nworkers + wid, world * nworkers
        order = list(self.urls)
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)  # same on every rank
        if len(order) < consumers:
            warnings.warn(f"{len(order)} shards for {consumers} consumers (ranks x workers): some read "
                          "nothing; write more, smaller shards (max_samples_per_shard)", stacklevel=2)
        return order[consumer::consumers], consumer

    def __iter__(self) -> Iterator[dict]:
        import webdataset as wds

        mine, consumer = self.my_shards()
        samples = wds.tarfile_samples(iter([{"url": u} for u in mine]))
        clips = (clip for s in samples for clip in self._clips(s))
        if self.shuffle:
            clips = _buffer_shuffle(clips, self.shuffle_buffer, stable_id(f"{self.seed}/{self.epoch}/{consumer}"))
        for clip in clips:
            # The buffer holds uint8 frames (4x smaller); convert only on the way out.
            clip["video"] = to_video(clip["video"])
            if "actions" in clip:
                clip["actions"] = torch.from_numpy(clip["actions"])
            yield clip

    def _clips(self, sample: dict) -> Iterator[dict]:
        """Every clip of one shard sample (an episode chunk), frames still (T, H, W, 3) uint8."""
        key = sample["__key__"]
        source = f"{sample.get('__url__', '?')}:{key}"
        if "frames.npy" not in sample:
            found = sorted(k for k in sample if not k.startswith("__"))
            raise ValueError(f"{source}: expected a 'frames.npy' member, found {found}; "
                             "write shards with `opengenie data shards`")
        arrays = {"frames": np.load(io.BytesIO(sample["frames.npy"]), allow_pickle=False)}
        if self.with_actions and "actions.npy" in sample:
            arrays["actions"] = np.load(io.BytesIO(sample["actions.npy"]), allow_pickle=False)
        length = validate_episode(arrays, source)
        for start in clip_starts(length, self.span, self.stride, self.seed, self.epoch, stable_id(key)):
            sl = slice(start, start + self.span, self.frame_skip)
            # Copies, so a buffered clip does not keep its whole chunk alive.
            clip = {"video": arrays["frames"][sl].copy(), "key": key, "start": start}
            if "actions" in arrays:
                clip["actions"] = arrays["actions"][sl].astype(np.int64)
            yield clip


def _buffer_shuffle(items: Iterator[dict], size: int, seed: int) -> Iterator[dict]:
    """Shuffle a stream through a buffer of `size` items; deterministic given seed."""
    rng = random.Random(seed)
    buffer: list[dict] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= size:
            i = rng.randrange(len(buffer))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]  # pop from the end: O(1)
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer
