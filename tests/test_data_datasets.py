"""Clip datasets over episode folders: contents, determinism across workers, splits, errors."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from opengenie.data import EpisodeClipDataset, write_episode
from opengenie.data.manifest import split_of, write_manifest


def _make_folder(root, lengths=(30, 25, 40), manifest=True):
    """Episodes whose pixel value encodes (episode, frame) and actions = frame index."""
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for e, n in enumerate(lengths):
        frames = np.zeros((n, 8, 8, 3), np.uint8)
        frames[..., 0] = np.arange(n)[:, None, None]
        frames[..., 1] = e
        write_episode(root / f"ep{e}.npz", frames, actions=np.arange(n))
        entries.append({"file": f"ep{e}.npz", "frames": n, "group": str(e), "split": ["train", "val", "test"][e % 3]})
    if manifest:
        write_manifest(root, source="test", settings={}, episodes=entries)
    return root


def test_item_contents(tmp_path):
    """video is (C, T, H, W) in [-1, 1] with frames start::frame_skip; actions line up."""
    ds = EpisodeClipDataset(_make_folder(tmp_path / "d"), seq_len=4, frame_skip=3)
    assert ds.span == 10 and len(ds) == 3 + 2 + 4
    for i in range(len(ds)):
        item = ds[i]
        assert item["video"].shape == (3, 4, 8, 8) and item["video"].dtype == torch.float32
        assert -1 <= item["video"].min() and item["video"].max() <= 1
        pixels = ((item["video"][:, :, 0, 0] + 1) * 127.5).round().long()  # (C, T)
        assert pixels[0].tolist() == list(range(item["start"], item["start"] + 10, 3))
        assert (pixels[1] == item["episode"]).all()
        assert item["actions"].dtype == torch.int64 and item["actions"].tolist() == pixels[0].tolist()


def test_workers_do_not_change_batches(tmp_path):
    """With a seeded sampler, 0 and 2 DataLoader workers give identical batches."""
    ds = EpisodeClipDataset(_make_folder(tmp_path / "d"), seq_len=5)

    def batches(workers):
        g = torch.Generator().manual_seed(123)
        return [b for b in DataLoader(ds, batch_size=4, shuffle=True, generator=g, num_workers=workers)]

    a, b = batches(0), batches(2)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x["video"], y["video"]) and torch.equal(x["actions"], y["actions"])


def test_epochs_shift_windows_deterministically(tmp_path):
    """set_epoch moves clip windows; the same (seed, epoch) gives the same clips."""
    root = _make_folder(tmp_path / "d", lengths=(100,))
    a, b = EpisodeClipDataset(root, seq_len=16), EpisodeClipDataset(root, seq_len=16)
    starts = lambda ds: [ds.locate(i)[1] for i in range(len(ds))]  # noqa: E731
    assert starts(a) == starts(b)
    seen = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        seen.add(tuple(starts(a)))
        assert len(starts(a)) == 6 and all(s + 16 <= 100 for s in starts(a))
    assert len(seen) > 1


def test_split_selection(tmp_path):
    """split= keeps only the manifest's episodes of that split; no split without a manifest."""
    root = _make_folder(tmp_path / "d")
    names = {s: {p.name for p in EpisodeClipDataset(root, 4, split=s).paths} for s in ("train", "val", "test")}
    assert names == {"train": {"ep0.npz"}, "val": {"ep1.npz"}, "test": {"ep2.npz"}}
    bare = _make_folder(tmp_path / "bare", manifest=False)
    with pytest.raises(ValueError, match="no manifest.json"):
        EpisodeClipDataset(bare, 4, split="train")
    assert len(EpisodeClipDataset(bare, 4).paths) == 3


def test_clip_longer_than_every_episode(tmp_path):
    """A clip longer than every episode is a ValueError naming both lengths."""
    root = _make_folder(tmp_path / "d")
    with pytest.raises(ValueError, match=r"needs 81 frames, but the longest of 3 episodes has 40"):
        EpisodeClipDataset(root, seq_len=41, frame_skip=2)


def test_short_episodes_are_counted(tmp_path):
    """Episodes shorter than a clip are left out and counted, the rest still serve clips."""
    ds = EpisodeClipDataset(_make_folder(tmp_path / "d"), seq_len=28)
    assert ds.too_short == 1 and {ds[i]["episode"] for i in range(len(ds))} == {0, 2}


def test_invalid_files(tmp_path):
    """A bad file raises naming it, or is skipped and listed with skip_invalid=True."""
    root = _make_folder(tmp_path / "d", manifest=False)
    np.savez(root / "bad.npz", pixels=np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="bad.npz: expected an array named 'frames'"):
        EpisodeClipDataset(root, 4)
    ds = EpisodeClipDataset(root, 4, skip_invalid=True)
    assert len(ds.invalid) == 1 and len(ds.paths) == 3


def test_stale_manifest_is_reported(tmp_path):
    """If a file no longer matches the manifest, reading it says how to refresh the folder."""
    root = _make_folder(tmp_path / "d")
    write_episode(root / "ep0.npz", np.zeros((12, 8, 8, 3), np.uint8))
    ds = EpisodeClipDataset(root, 4)
    with pytest.raises(ValueError, match="has 12 frames but the manifest says 30"):
        ds[0]


def test_split_of_is_stable():
    """Split assignment depends only on the group name and fractions."""
    assert [split_of(str(s)) for s in range(50)] == [split_of(str(s)) for s in range(50)]
    assert {split_of(str(s), 0.0, 0.0) for s in range(50)} == {"train"}


def test_episode_clip_starts_never_cross_an_episode_end():
    """Clips are cut back to back inside each episode a file holds, from a seeded offset into its spare frames."""
    from opengenie.data.clips import episode_clip_starts

    dones = np.zeros(30, bool)
    dones[[9, 12]] = True  # frames 10 and 13 start new episodes: lives [0, 10), [10, 13), [13, 30)
    assert episode_clip_starts(dones, 30, 5) == [0, 5, 13, 18, 23]
    assert episode_clip_starts(None, 30, 5) == [0, 5, 10, 15, 20, 25]
    assert episode_clip_starts(dones, 30, 18) == []  # no life lasts 18 frames
    offsets = {tuple(episode_clip_starts(dones, 30, 5, np.random.default_rng(s))) for s in range(40)}
    assert len(offsets) > 1  # the last life has 2 frames to spare: its clips start at 13, 14 or 15
    assert all(o[:2] == (0, 5) and o[2] in (13, 14, 15) and o[3] == o[2] + 5 and o[4] == o[2] + 10 for o in offsets)
    with pytest.raises(ValueError, match="span"):
        episode_clip_starts(dones, 30, 0)


@pytest.mark.parametrize("stride", [1, 3, None])
def test_clips_within_episodes_never_cross_a_restart(tmp_path, stride):
    """across_episode_ends=False cuts each file at its dones: every clip lies inside one life, each
    life holds as many clips as fit, index_of still inverts locate; without it clips cross."""
    root = _make_folder(tmp_path / "d", lengths=(30, 25))
    dones = np.zeros(30, bool)
    dones[[9, 12]] = True  # lives [0, 10), [10, 13), [13, 30) of episode 0; episode 1 has one life
    write_episode(root / "ep0.npz", np.load(root / "ep0.npz")["frames"], actions=np.arange(30), dones=dones)
    lives = {0: [(0, 10), (10, 13), (13, 30)], 1: [(0, 25)]}
    for epoch in range(3):
        ds = EpisodeClipDataset(root, seq_len=3, frame_skip=2, stride=stride, across_episode_ends=False)
        ds.set_epoch(epoch)
        step = stride or ds.span
        assert len(ds) == sum((b - a - ds.span) // step + 1 for life in lives.values() for a, b in life
                              if b - a >= ds.span)
        for i in range(len(ds)):
            e, start = ds.locate(i)
            assert any(a <= start and start + ds.span <= b for a, b in lives[e])
            assert ds.index_of(e, start) == i
            pixels = ((ds[i]["video"][0, :, 0, 0] + 1) * 127.5).round().long()
            assert pixels.tolist() == list(range(start, start + ds.span, 2))
        if stride == 1:  # frame 7 starts a window of the file, but its clip would run into the next life
            with pytest.raises(ValueError, match="no clip starting at frame 7"):
                ds.index_of(0, 7)
    crossing = EpisodeClipDataset(root, seq_len=3, frame_skip=2, stride=1)
    assert any(s < 10 < s + crossing.span for e, s in map(crossing.locate, range(len(crossing))) if e == 0)


@pytest.mark.parametrize("stride", [1, 4, None])
def test_index_of_inverts_locate(tmp_path, stride):
    """index_of(episode, start) finds the item `locate` places there; a start no clip has is refused."""
    ds = EpisodeClipDataset(_make_folder(tmp_path / "d"), seq_len=4, frame_skip=2, stride=stride)
    for i in range(len(ds)):
        assert ds.index_of(*ds.locate(i)) == i
    e, start = ds.locate(len(ds) - 1)
    with pytest.raises(ValueError, match="no clip"):
        ds.index_of(e, start + ds.stride)
    assert ds.dones(0) is None  # these files record no episode ends
