"""Ordinary video files (anything FFmpeg decodes, through PyAV) as episodes.

Frames are centre-cropped to a square and resized to `size` x `size` (PIL, antialiased), and
optionally resampled to `fps`: output frame k stands for time t0 + k/fps and shows the first
source frame at or after that time (frames are dropped or repeated as needed). The same rule
serves `convert_videos` (video files -> episode folder) and `VideoClipDataset` (clips decoded
on the fly), so both see the same frames.

Needs the `video` extra: `pip install opengenie[video]` (PyAV).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from opengenie.data.episodes import write_episode
from opengenie.data.manifest import check_settings, describe_folder, write_manifest

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".gif", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv")
_EPS = 1e-4  # seconds; absorbs float rounding between packet and frame timestamps


def find_videos(src: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Video files named by `src`: files as given, folders searched recursively by extension."""
    srcs = [src] if isinstance(src, (str, os.PathLike)) else list(src)
    found: list[Path] = []
    for s in map(Path, srcs):
        if s.is_dir():
            found += sorted(p for p in s.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
        elif s.exists():
            found.append(s)
        else:
            raise FileNotFoundError(f"video source {s} does not exist")
    return found


def _open(path: Path):
    try:
        import av
    except ImportError as err:
        raise ImportError("reading videos needs PyAV: pip install 'opengenie[video]'") from err
    container = av.open(str(path))
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path}: no video stream found")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame-threaded decoding; safe because we only read
    return container, stream


def frame_times(path: str | os.PathLike, fps: float | None = None) -> np.ndarray:
    """Times (seconds, float64, increasing) of the output frames of one video.

    Without `fps`, one per source frame; with it, t0, t0 + 1/fps, ... up to the last source
    frame. Reads packets only (no decoding), so it is cheap. Raises on unreadable files.
    """
    container, stream = _open(Path(path))
    with container:
        tb = float(stream.time_base)
        pts = [p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0]
    if not pts:
        raise ValueError(f"{path}: no video frames found; is the file empty or truncated?")
    times = np.unique(np.asarray(pts, dtype=np.float64) * tb)  # presentation order
    if fps is None:
        return times
    if fps <= 0:
        raise ValueError(f"expected fps > 0 or None, got {fps}")
    count = int(np.floor((times[-1] - times[0]) * fps + _EPS)) + 1
    return times[0] + np.arange(count) / fps


def resize_center_crop(image, size: int) -> np.ndarray:
    """A PIL image of any shape -> (size, size, 3) uint8: centre square crop, then resize."""
    from PIL import Image

    w, h = image.size
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    # PIL's bilinear widens its kernel when shrinking, so large downscales are antialiased.
    out = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(out, dtype=np.uint8)


def _shrink(frame, size: int):
    """Let FFmpeg shrink large frames (area averaging) to about 2x the target before PIL
    crops and resizes: converting a full HD frame to RGB first costs ~5x more."""
    short = min(frame.width, frame.height)
    if short <= 4 * size:
        return frame
    scale = 2 * size / short
    return frame.reformat(width=round(frame.width * scale), height=round(frame.height * scale),
                          format="rgb24", interpolation="AREA")


def decode_frames(path: str | os.PathLike, times: Sequence[float], size: int) -> Iterator[np.ndarray]:
    """Yield one (size, size, 3) uint8 frame per time in `times` (increasing).

    Seeks to the keyframe before times[0], then decodes forward; each time gets the first
    frame at or after it. If the stream ends early the last frame is held, as a player would.
    """
    if len(times) == 0:
        return
    container, stream = _open(Path(path))
    with container:
        tb = float(stream.time_base)
        if times[0] > 0:
            container.seek(int(times[0] / tb), stream=stream, backward=True, any_frame=False)
        i, last, index = 0, None, 0
        rate = float(stream.average_rate or stream.guessed_rate or 30)
        for frame in container.decode(stream):
            t = frame.time if frame.time is not None else index / rate
            index += 1
            if t + _EPS < times[i]:
                continue
            last = resize_center_crop(_shrink(frame, size).to_image(), size)
            while i < len(times) and times[i] <= t + _EPS:
                yield last
                i += 1
            if i == len(times):
                return
    if last is None:
        raise ValueError(f"{path}: no frame could be decoded at or after t={times[0]:.3f}s")
    for _ in range(len(times) - i):
        yield last


def video_key(path: Path) -> str:
    """A file-name-safe name for one source video, unique per absolute path."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem)[:60]  # no dots (tar keys end at one)
    return f"{stem}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"


def convert_videos(
    src: str | os.PathLike | Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    size: int = 64,
    fps: float | None = None,
    chunk_frames: int | None = 1000,
    compress: bool = False,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    progress: bool = True,
) -> dict:
    """Turn video files into an episode folder `out`; return its manifest.

    Each video becomes episodes `{key}_{chunk:05d}.npz` of at most `chunk_frames` frames
    (None: one episode per video, held in memory while decoding). A file that cannot be read
    is reported, recorded under "skipped" in the manifest, and the run goes on. Videos already
    converted are skipped, so an interrupted run resumes. The split is by source video.
    """
    from tqdm import tqdm

    if size < 1 or (chunk_frames is not None and chunk_frames < 1):
        raise ValueError(f"expected size >= 1 and chunk_frames >= 1 or None, got {size} and {chunk_frames}")
    if fps is not None and not (math.isfinite(fps) and fps > 0):  # else every video would be skipped
        raise ValueError(f"expected fps > 0 or None (keep the videos' rate), got {fps}")
    videos = find_videos(src)
    if not videos:
        raise ValueError(f"no video files in {src if isinstance(src, (str, os.PathLike)) else ', '.join(map(str, src))} "
                         f"(looked for {', '.join(VIDEO_EXTENSIONS)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"size": size, "fps": fps, "chunk_frames": chunk_frames, "compress": compress,
                "val_fraction": val_fraction, "test_fraction": test_fraction}
    check_settings(out, settings, ["size", "fps", "chunk_frames", "val_fraction", "test_fraction"])
    for stale in out.glob(".*.partial"):  # left by an interrupted run; never complete
        stale.unlink(missing_ok=True)

    skipped: list[dict] = []
    sources: dict[str, str] = {}
    bar = tqdm(videos, unit="video", desc="videos", disable=not progress)
    for path in bar:
        key = video_key(path)
        sources[key] = str(path)
        if (out / f"{key}_00000.npz").exists():  # chunk 0 is written last: the video is done
            continue
        try:
            _convert_one(path, out, key, size, fps, chunk_frames, compress)
        except Exception as err:  # noqa: BLE001 -- any decoder failure skips only this file
            for partial in out.glob(f"{key}_*.npz"):
                partial.unlink(missing_ok=True)
            reason = f"{type(err).__name__}: {err}"
            skipped.append({"source": str(path), "reason": reason})
            bar.write(f"skipped {path}: {reason}")
        bar.set_postfix(skipped=len(skipped))

    def extra(p: Path) -> dict:
        key, chunk = p.stem.rsplit("_", 1)
        return {"source": sources.get(key), "chunk": int(chunk)}

    episodes = describe_folder(out, "*_[0-9][0-9][0-9][0-9][0-9].npz", lambda p: p.stem.rsplit("_", 1)[0],
                               val_fraction, test_fraction, extra=extra)
    return write_manifest(out, source="videos", settings=settings, episodes=episodes, skipped=skipped)


def _convert_one(path: Path, out: Path, key: str, size: int, fps: float | None,
                 chunk_frames: int | None, compress: bool) -> None:
    """Decode one video into chunk files `{key}_{chunk:05d}.npz`.

    Chunk 0 is held back and written last, so its existence means every chunk of the video is
    on disk: the resume check in `convert_videos` relies on it.
    """
    times = frame_times(path, fps)
    step = chunk_frames or len(times)
    first: np.ndarray | None = None
    buf: list[np.ndarray] = []
    chunk = 0

    def flush() -> None:
        nonlocal first, buf, chunk
        frames = np.stack(buf)  # (T, size, size, 3) uint8
        if chunk == 0:
            first = frames
        else:
            write_episode(out / f"{key}_{chunk:05d}.npz", frames, compress=compress)
        buf, chunk = [], chunk + 1

    for frame in decode_frames(path, times, size):
        buf.append(frame)
        if len(buf) == step:
            flush()
    if buf:
        flush()
    if first is None:
        raise ValueError(f"{path}: no frames decoded")
    write_episode(out / f"{key}_00000.npz", first, compress=compress)


__all__ = ["convert_videos", "find_videos", "frame_times", "decode_frames", "resize_center_crop", "VIDEO_EXTENSIONS"]
