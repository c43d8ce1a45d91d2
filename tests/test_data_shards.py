"""Tar shards: round trip, and a disjoint, complete split over 2 simulated ranks x 2 workers."""

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

pytest.importorskip("webdataset")

from opengenie.data import EpisodeFile, ShardClipDataset, write_episode, write_shards  # noqa: E402


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    src = tmp_path_factory.mktemp("episodes")
    for e, n in enumerate([50, 37, 64, 20, 45]):
        frames = np.zeros((n, 8, 8, 3), np.uint8)
        frames[..., 0] = np.arange(n)[:, None, None]
        frames[..., 1] = e
        write_episode(src / f"ep{e}.npz", frames, actions=np.arange(n) % 15)
    out = tmp_path_factory.mktemp("shards")
    write_shards(src, out, chunk_frames=16, max_samples_per_shard=3, progress=False)
    return src, out


def _clip_ids(ds, workers):
    loader = DataLoader(ds, batch_size=None, num_workers=workers)
    return [(item["key"], item["start"]) for item in loader]


def test_index_and_round_trip(shard_dir):
    """Shards hold every frame once, in chunks, with actions; shards.json counts them."""
    src, out = shard_dir
    index = json.loads((out / "shards.json").read_text())
    assert sum(s["frames"] for s in index["shards"]) == 50 + 37 + 64 + 20 + 45
    assert len(index["shards"]) == len(list(out.glob("*.tar"))) >= 4
    with tarfile.open(out / index["shards"][0]["file"]) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert set(members) == {f"ep0_{s:07d}.{ext}" for s in (0, 16, 32) for ext in ("frames.npy", "actions.npy", "json")}
    frames = np.load(io.BytesIO(members["ep0_0000016.frames.npy"]), allow_pickle=False)
    assert np.array_equal(frames, EpisodeFile(src / "ep0.npz").read("frames", 16, 32))
    assert json.loads(members["ep0_0000016.json"])["start"] == 16


def test_clip_contents(shard_dir):
    """Clips from shards are (C, T, H, W) in [-1, 1] with matching actions, frames in order."""
    _, out = shard_dir
    item = next(iter(ShardClipDataset(out, seq_len=4, frame_skip=2, rank=0, world_size=1)))
    assert item["video"].shape == (3, 4, 8, 8) and item["actions"].dtype == torch.int64
    red = ((item["video"][0, :, 0, 0] + 1) * 127.5).round().long()
    assert (red.diff() == 2).all()


@pytest.mark.parametrize("shuffle", [False, True])
def test_two_ranks_two_workers_disjoint_and_complete(shard_dir, shuffle):
    """2 ranks x 2 workers read every clip of the epoch exactly once between them."""
    _, out = shard_dir
    reference = _clip_ids(ShardClipDataset(out, seq_len=5, shuffle=shuffle, rank=0, world_size=1), 0)
    assert len(reference) == len(set(reference)) > 0
    per_consumer = []
    for rank in range(2):
        ds = ShardClipDataset(out, seq_len=5, shuffle=shuffle, rank=rank, world_size=2)
        per_consumer.append(_clip_ids(ds, 2))
    union = [c for ids in per_consumer for c in ids]
    assert len(union) == len(set(union)), "a clip was read twice"
    assert set(union) == set(reference), "a clip was missed"
    assert all(per_consumer)


def test_epochs_reshuffle_but_keep_the_clip_set(shard_dir):
    """A new epoch changes order and windows but never the number of clips."""
    _, out = shard_dir
    ds = ShardClipDataset(out, seq_len=5, rank=0, world_size=1)
    first = _clip_ids(ds, 0)
    ds.set_epoch(1)
    second = _clip_ids(ds, 0)
    assert first != second and len(first) == len(second)
    ds.set_epoch(0)
    assert _clip_ids(ds, 0) == first  # deterministic given seed and epoch


def test_url_forms(shard_dir):
    """A folder, a brace pattern and a pipe: URL name the same shards."""
    _, out = shard_dir
    n = len(list(out.glob("*.tar")))
    brace = str(out / f"shard-{{000000..{n - 1:06d}}}.tar")
    pipe = [f"pipe:cat {p}" for p in sorted(out.glob("*.tar"))]
    ids = [sorted(_clip_ids(ShardClipDataset(u, seq_len=5, shuffle=False, rank=0, world_size=1), 0))
           for u in (out, brace, pipe)]
    assert ids[0] == ids[1] == ids[2]


def test_sample_without_frames(tmp_path):
    """A shard sample without frames is a ValueError naming the sample and what it has."""
    import webdataset as wds

    with wds.TarWriter(str(tmp_path / "s.tar")) as w:
        w.write({"__key__": "x", "json": b"{}"})
    with pytest.raises(ValueError, match="expected a 'frames.npy' member"):
        list(ShardClipDataset(tmp_path / "s.tar", seq_len=2))
