"""Video files (written here with PyAV) to episodes and clips: formats, resizing, fps, chunking,
bad files."""

import json

import numpy as np
import pytest

av = pytest.importorskip("av")

from opengenie.data import EpisodeFile, VideoClipDataset, convert_videos  # noqa: E402
from opengenie.data.videos import frame_times, resize_center_crop  # noqa: E402

FORMATS = {"mp4": ("libx264", "yuv420p"), "webm": ("libvpx-vp9", "yuv420p"), "mkv": ("ffv1", "yuv420p"),
           "avi": ("mpeg4", "yuv420p"), "gif": ("gif", "rgb8")}


def write_video(path, frames=30, width=96, height=64, fps=10, codec="libx264", pix_fmt="yuv420p", gop=None):
    """Frame i has red level 8*i, so order can be checked after lossy coding."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        if gop:
            s.codec_context.gop_size = gop
        for i in range(frames):
            img = np.zeros((height, width, 3), np.uint8)
            img[..., 0] = (8 * i) % 256
            img[:, : width // 2, 2] = 200  # left half blue: shows the centre crop
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    for ext, (codec, pix) in FORMATS.items():
        write_video(d / f"clip.{ext}", codec=codec, pix_fmt=pix)
    return d


@pytest.mark.parametrize("ext", list(FORMATS))
def test_every_format_converts(video_dir, tmp_path, ext):
    """mp4, webm, mkv, avi and gif all become 64x64 uint8 episodes with frames in order."""
    m = convert_videos(video_dir / f"clip.{ext}", tmp_path, size=64, chunk_frames=None, progress=False)
    assert m["counts"] == {**m["counts"], "episodes": 1, "frames": 30, "skipped": 0}
    frames = EpisodeFile(tmp_path / m["episodes"][0]["file"]).read("frames")
    assert frames.shape == (30, 64, 64, 3) and frames.dtype == np.uint8
    red = frames[:, 32, 48, 0].astype(int)  # right half, away from the blue edge
    # In order despite lossy coding (gif's 8-bit palette is coarse): red rises with the index.
    assert np.corrcoef(red, np.arange(30))[0, 1] > 0.95 and red[-1] - red[0] > 150


def test_resize_keeps_aspect_by_centre_crop():
    """A 96x64 frame is cropped to its central 64x64 (the blue half shrinks to a third)."""
    from PIL import Image

    img = np.zeros((64, 96, 3), np.uint8)
    img[:, :48, 2] = 200
    out = resize_center_crop(Image.fromarray(img), 32)
    assert out.shape == (32, 32, 3)
    blue_cols = (out[16, :, 2] > 100).sum()
    assert 14 <= blue_cols <= 18  # 48-16=32 of 64 central columns are blue: half


def test_fps_resampling_and_chunks(video_dir, tmp_path):
    """10 fps -> 5 fps halves the frames; long videos split into chunks of chunk_frames."""
    assert len(frame_times(video_dir / "clip.mp4", 5)) == 15
    m = convert_videos(video_dir / "clip.mp4", tmp_path, fps=5, chunk_frames=4, progress=False)
    assert [e["frames"] for e in m["episodes"]] == [4, 4, 4, 3]
    assert len({e["split"] for e in m["episodes"]}) == 1  # chunks of one video share a split


def test_bad_files_are_skipped_and_counted(video_dir, tmp_path):
    """Truncated, empty and fake .mp4 files are reported and counted; good files still convert."""
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (video_dir / "clip.mp4").read_bytes()
    (bad / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "text.mp4").write_text("this is not a video")
    out = tmp_path / "out"
    m = convert_videos([bad, video_dir / "clip.mkv"], out, chunk_frames=8, progress=False)
    assert m["counts"]["skipped"] == 3 and m["counts"]["frames"] == 30
    assert {s["source"].rsplit("/", 1)[1] for s in m["skipped"]} == {"truncated.mp4", "empty.mp4", "text.mp4"}
    assert json.loads((out / "manifest.json").read_text())["counts"]["skipped"] == 3
    assert not list(out.glob("truncated*")) and not list(out.glob(".*"))


def test_rerun_skips_converted_videos(video_dir, tmp_path):
    """A converted video is not decoded again; a half-converted one (no chunk 0) is redone."""
    convert_videos(video_dir / "clip.avi", tmp_path, chunk_frames=8, progress=False)
    chunk0, chunk1 = sorted(tmp_path.glob("*.npz"))[:2]
    stamp = chunk1.stat().st_mtime_ns
    convert_videos(video_dir / "clip.avi", tmp_path, chunk_frames=8, progress=False)
    assert chunk1.stat().st_mtime_ns == stamp
    chunk0.unlink()  # as if interrupted before the last write
    m = convert_videos(video_dir / "clip.avi", tmp_path, chunk_frames=8, progress=False)
    assert chunk0.exists() and m["counts"]["frames"] == 30


@pytest.mark.parametrize("fps", [None, 5])
def test_video_dataset_matches_converted_frames(tmp_path, fps):
    """Clips decoded on the fly (after a seek) equal the same frames of the converted episode."""
    video = write_video(tmp_path / "long.mp4", frames=90, fps=25, gop=12)  # keyframe every 12: real seeks
    m = convert_videos(video, tmp_path / "out", fps=fps, chunk_frames=None, progress=False)
    frames = EpisodeFile(tmp_path / "out" / m["episodes"][0]["file"]).read("frames")
    ds = VideoClipDataset(video, seq_len=3, frame_skip=2, fps=fps, stride=4)
    assert len(ds) == (len(frames) - 5) // 4 + 1
    for i in range(len(ds)):
        item = ds[i]
        expected = frames[item["start"] : item["start"] + 5 : 2]
        got = ((item["video"].permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        assert np.array_equal(got, expected)


def test_video_dataset_skips_unreadable(video_dir, tmp_path):
    """Unreadable files are listed in `invalid`; the readable ones still give clips."""
    (tmp_path / "fake.mp4").write_text("nope")
    ds = VideoClipDataset([tmp_path / "fake.mp4", video_dir / "clip.webm"], seq_len=4)
    assert len(ds.invalid) == 1 and ds[0]["video"].shape == (3, 4, 64, 64)
