"""The episode file: one `.npz` per episode, readable a clip at a time.

An episode holds
    frames      (T, H, W, 3) uint8      required
    actions     (T,)         int64      optional; actions[t] is the action taken after frame t
    rewards     (T,)         float32    optional; reward received after actions[t]
    dones       (T,)         bool       optional; True when the episode ended after actions[t]
                                        (frame t+1 is then the first frame of a new episode)
    level_seed  ()           int64      optional; the procgen level the frames come from

Episodes are written *uncompressed* by default. CoinRun frames compress about 10x, but an
uncompressed member of a zip is a plain byte range on disk, so a clip of 16 frames is one
`read` of 16 x 12,288 bytes, while a compressed episode must be inflated whole for every clip.
`EpisodeFile` reads stored members by byte range and falls back to a full load for compressed
ones, so both kinds work everywhere.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

# Per-step arrays and the dtype each is stored as.
_STEP_ARRAYS = {"actions": np.int64, "rewards": np.float32, "dones": np.bool_}
_KNOWN = {"frames", "level_seed", *_STEP_ARRAYS}
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header, 30 bytes


def validate_episode(arrays: Mapping[str, np.ndarray], source: str = "episode") -> int:
    """Check the arrays of one episode; return its number of frames T.

    Raises ValueError naming what was expected, what was found and what to do.
    """
    if "frames" not in arrays:
        raise ValueError(
            f"{source}: expected an array named 'frames' (T, H, W, 3) uint8, found keys "
            f"{sorted(arrays)}; write episodes with opengenie.data.write_episode"
        )
    frames = arrays["frames"]
    _check_frames(frames.shape, frames.dtype, source)
    t = frames.shape[0]
    for key in _STEP_ARRAYS:
        if key in arrays:
            arr = arrays[key]
            if arr.shape != (t,):
                raise ValueError(
                    f"{source}: expected '{key}' of shape ({t},), one per frame, got {tuple(arr.shape)}"
                )
    if "actions" in arrays and not np.issubdtype(arrays["actions"].dtype, np.integer):
        raise ValueError(
            f"{source}: expected integer 'actions' (action ids), got dtype {arrays['actions'].dtype}"
        )
    return t


def _check_frames(shape: tuple, dtype: np.dtype, source: str) -> None:
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(
            f"{source}: expected 'frames' of rank 4 (T, H, W, 3), got shape {tuple(shape)}; "
            "store RGB frames time-first, channels-last"
        )
    if np.dtype(dtype) != np.uint8:
        raise ValueError(
            f"{source}: expected 'frames' of dtype uint8 (0..255), got {np.dtype(dtype)}; "
            "convert with (x * 255).round().clip(0, 255).astype(np.uint8) for floats in [0, 1]"
        )
    if shape[0] < 1:
        raise ValueError(f"{source}: expected at least one frame, got shape {tuple(shape)}")


def write_episode(
    path: str | os.PathLike,
    frames: np.ndarray,
    *,
    actions: np.ndarray | None = None,
    rewards: np.ndarray | None = None,
    dones: np.ndarray | None = None,
    level_seed: int | None = None,
    compress: bool = False,
) -> Path:
    """Write one episode atomically: to a hidden temporary name, then rename.

    frames: (T, H, W, 3) uint8; actions/rewards/dones: (T,) or None. An interrupted write
    leaves only a `.*.partial` file, never a file that looks complete.
    """
    path = Path(path)
    arrays = {"frames": np.ascontiguousarray(frames)}
    for key, value in (("actions", actions), ("rewards", rewards), ("dones", dones)):
        if value is not None:
            arrays[key] = np.ascontiguousarray(np.asarray(value).astype(_STEP_ARRAYS[key], copy=False))
    if level_seed is not None:
        arrays["level_seed"] = np.asarray(level_seed, dtype=np.int64)
    validate_episode(arrays, str(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    save = np.savez_compressed if compress else np.savez
    try:
        with open(tmp, "wb") as f:
            save(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class EpisodeFile:
    """One episode on disk, read by slices; the file is never held open between reads.

    Opening parses only the zip directory and the .npy headers (a few hundred bytes), so a
    dataset can describe thousands of episodes without loading any frames. Instances pickle
    cheaply, which DataLoader workers need.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        # key -> (byte offset of the data, shape, dtype); offset None means "load whole".
        self._members: dict[str, tuple[int | None, tuple, np.dtype]] = {}
        try:
            with zipfile.ZipFile(self.path) as zf, open(self.path, "rb") as raw:
                for info in zf.infolist():
                    if info.filename.endswith(".npy"):
                        key = info.filename[: -len(".npy")]
                        self._members[key] = _locate(zf, info, raw)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise ValueError(
                f"{self.path}: expected an episode .npz (a zip of .npy arrays), could not read it "
                f"({err}); re-create it with `opengenie data ...` or delete it"
            ) from None
        if "frames" not in self._members:
            raise ValueError(
                f"{self.path}: expected an array named 'frames' (T, H, W, 3) uint8, found keys "
                f"{sorted(self._members)}; write episodes with opengenie.data.write_episode"
            )
        _, shape, dtype = self._members["frames"]
        _check_frames(shape, dtype, str(self.path))
        self.num_frames, self.height, self.width = shape[0], shape[1], shape[2]
        for key in _STEP_ARRAYS:
            if key in self._members and self._members[key][1] != (self.num_frames,):
                raise ValueError(
                    f"{self.path}: expected '{key}' of shape ({self.num_frames},), one per frame, "
                    f"got {self._members[key][1]}"
                )
        if "actions" in self._members and not np.issubdtype(self._members["actions"][2], np.integer):
            raise ValueError(
                f"{self.path}: expected integer 'actions' (action ids), got dtype {self._members['actions'][2]}"
            )

    def __len__(self) -> int:
        return self.num_frames

    def has(self, key: str) -> bool:
        return key in self._members

    @property
    def keys(self) -> list[str]:
        return sorted(self._members)

    def read(self, key: str, start: int = 0, stop: int | None = None, step: int = 1) -> np.ndarray:
        """Rows start:stop:step of array `key` (along its first axis), as a fresh array."""
        offset, shape, dtype = self._members[key]
        if offset is None or len(shape) == 0:
            with np.load(self.path, allow_pickle=False) as npz:
                return np.asarray(npz[key])[start:stop:step] if shape else np.asarray(npz[key])
        stop = shape[0] if stop is None else min(stop, shape[0])
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        count = max(0, stop - start)
        buf = bytearray(count * row)
        with open(self.path, "rb") as f:
            f.seek(offset + start * row)
            if f.readinto(buf) != len(buf):
                raise ValueError(f"{self.path}: file is shorter than its header says; re-create it")
        out = np.frombuffer(buf, dtype=dtype).reshape((count, *shape[1:]))
        return out[::step]

    def scalar(self, key: str) -> int | None:
        """A 0-d integer such as `level_seed`, or None when absent."""
        return int(self.read(key)) if key in self._members else None


def _locate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, raw) -> tuple[int | None, tuple, np.dtype]:
    """Where the data of one .npy member starts, with its shape and dtype."""
    if info.compress_type == zipfile.ZIP_STORED:
        raw.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
        raw.seek(info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1])
        shape, fortran, dtype = _read_npy_header(raw)
        if not fortran and not dtype.hasobject:
            return raw.tell(), shape, dtype
    with zf.open(info) as member:  # compressed: inflate only the header here
        shape, _, dtype = _read_npy_header(member)
    return None, shape, dtype


def _read_npy_header(f) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if dtype.hasobject:
        raise ValueError("episode arrays must not hold Python objects (they would need pickle)")
    return tuple(shape), fortran, dtype


def load_episode(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of one episode, loaded into memory (for small episodes and tests)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: np.asarray(npz[k]) for k in npz.files}
    validate_episode(arrays, str(path))
    return arrays


def episode_bytes_per_frame(path: str | os.PathLike) -> float:
    """File size divided by frame count: the on-disk cost of one frame with its labels."""
    return os.path.getsize(path) / len(EpisodeFile(path))


__all__ = ["EpisodeFile", "write_episode", "load_episode", "validate_episode", "episode_bytes_per_frame"]
