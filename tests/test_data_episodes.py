"""Episode files: round trips, slice reads, atomic writes and clear errors on bad files."""

import zipfile

import numpy as np
import pytest

from opengenie.data.episodes import EpisodeFile, load_episode, validate_episode, write_episode


def _frames(t=12, h=8, w=10):
    return np.random.default_rng(0).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_and_slices(tmp_path, compress):
    """Every array comes back unchanged, and slice reads equal numpy slicing."""
    frames, actions = _frames(), np.arange(12) % 15
    path = write_episode(tmp_path / "e.npz", frames, actions=actions, rewards=np.ones(12),
                         dones=np.arange(12) == 5, level_seed=7, compress=compress)
    loaded = load_episode(path)
    assert np.array_equal(loaded["frames"], frames) and loaded["actions"].dtype == np.int64
    assert loaded["rewards"].dtype == np.float32 and loaded["dones"].dtype == np.bool_
    ep = EpisodeFile(path)
    assert len(ep) == 12 and ep.scalar("level_seed") == 7 and ep.scalar("missing") is None
    assert np.array_equal(ep.read("frames", 3, 10, 2), frames[3:10:2])
    assert np.array_equal(ep.read("actions", 4, 6), actions[4:6])


def test_uncompressed_members_are_read_by_byte_range(tmp_path):
    """Stored episodes are read by offset (no whole-file load): the frames member has an offset."""
    path = write_episode(tmp_path / "e.npz", _frames())
    assert EpisodeFile(path)._members["frames"][0] is not None


def test_write_is_atomic(tmp_path):
    """A failed write leaves neither the final file nor a temporary one behind."""
    with pytest.raises(ValueError):
        write_episode(tmp_path / "e.npz", _frames().astype(np.float32))
    assert list(tmp_path.iterdir()) == []
    write_episode(tmp_path / "e.npz", _frames())
    assert [p.name for p in tmp_path.iterdir()] == ["e.npz"]


def test_npz_without_frames(tmp_path):
    """An npz without 'frames' is refused, naming the keys it has."""
    np.savez(tmp_path / "x.npz", video=_frames())
    with pytest.raises(ValueError, match=r"expected an array named 'frames'.*\['video'\]"):
        EpisodeFile(tmp_path / "x.npz")


@pytest.mark.parametrize(
    "frames, message",
    [
        (_frames().astype(np.float32), "dtype uint8.*got float32"),
        (_frames()[..., 0], r"rank 4 \(T, H, W, 3\), got shape \(12, 8, 10\)"),
        (np.zeros((4, 8, 8, 4), np.uint8), r"got shape \(4, 8, 8, 4\)"),
    ],
)
def test_bad_frames(tmp_path, frames, message):
    """Frames of the wrong dtype or rank give a ValueError with expected vs received."""
    np.savez(tmp_path / "x.npz", frames=frames)
    with pytest.raises(ValueError, match=message):
        EpisodeFile(tmp_path / "x.npz")
    with pytest.raises(ValueError, match=message):
        validate_episode({"frames": frames})


def test_actions_must_match_frames(tmp_path):
    """Per-step arrays must have one entry per frame."""
    np.savez(tmp_path / "x.npz", frames=_frames(), actions=np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"'actions' of shape \(12,\).*got \(5,\)"):
        EpisodeFile(tmp_path / "x.npz")


def test_float_actions_are_refused(tmp_path):
    """Actions must be integer ids."""
    np.savez(tmp_path / "x.npz", frames=_frames(), actions=np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="integer 'actions'.*float32"):
        EpisodeFile(tmp_path / "x.npz")


def test_truncated_and_foreign_files(tmp_path):
    """A truncated npz or a text file named .npz gives a ValueError, not a crash."""
    write_episode(tmp_path / "e.npz", _frames())
    data = (tmp_path / "e.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text("not an archive")
    for name in ("cut.npz", "text.npz"):
        with pytest.raises(ValueError, match="could not read it"):
            EpisodeFile(tmp_path / name)


def test_object_arrays_are_refused(tmp_path):
    """Arrays that would need pickle are never loaded."""
    with zipfile.ZipFile(tmp_path / "x.npz", "w") as zf:
        with zf.open("frames.npy", "w") as f:
            np.lib.format.write_array(f, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="x.npz.*Python objects"):
        EpisodeFile(tmp_path / "x.npz")
