"""The `opengenie data` commands end to end: coinrun, videos and shards from the command line."""

import json

import numpy as np
import pytest

from opengenie.cli import main
from opengenie.data import EpisodeClipDataset, ShardClipDataset


def test_coinrun_then_shards(tmp_path, capsys):
    """`data coinrun` writes a usable folder; `data shards` packs it; both feed datasets."""
    pytest.importorskip("procgen")
    out = tmp_path / "coinrun"
    main(["data", "coinrun", "--out", str(out), "--levels", "2", "--steps-per-level", "20",
          "--start-level", "3", "--workers", "2", "--difficulty", "hard"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == 40
    item = EpisodeClipDataset(out, seq_len=8)[0]
    assert item["video"].shape == (3, 8, 64, 64) and item["actions"].shape == (8,)
    main(["data", "shards", "--src", str(out), "--out", str(tmp_path / "shards"), "--chunk-frames", "10"])
    clips = list(ShardClipDataset(tmp_path / "shards", seq_len=4, rank=0, world_size=1))
    assert len(clips) == 2 * 2 * 2  # 2 levels x 2 chunks of 10 frames x 2 clips of 4


def test_videos(tmp_path, capsys):
    """`data videos` converts good files and counts the bad one without failing."""
    av = pytest.importorskip("av")
    src = tmp_path / "src"
    src.mkdir()
    with av.open(str(src / "a.mp4"), "w") as c:
        s = c.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 80, 48, "yuv420p"
        for i in range(24):
            frame = av.VideoFrame.from_ndarray(np.full((48, 80, 3), 10 * i, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    (src / "broken.webm").write_bytes(b"\x1a\x45\xdf\xa3 not really")
    main(["data", "videos", "--src", str(src), "--out", str(tmp_path / "out"), "--size", "32",
          "--fps", "4", "--chunk-frames", "5"])
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts["skipped"] == 1 and counts["frames"] == 12 and counts["episodes"] == 3


def test_user_error_exits_cleanly(tmp_path, capsys):
    """A bad flag value ends with exit code 2 and a one-line message, not a traceback."""
    with pytest.raises(SystemExit) as exc:
        main(["data", "shards", "--src", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_coinrun_console_has_no_gym_banner(tmp_path):
    """`data coinrun` in a fresh process prints its progress and summary, not gym's import-time banner."""
    import subprocess
    import sys

    pytest.importorskip("procgen")
    done = subprocess.run([sys.executable, "-c", "from opengenie.cli import main; main()", "data", "coinrun",
                           "--out", str(tmp_path / "c"), "--levels", "1", "--steps-per-level", "5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "coinrun" in done.stderr and "Gym" not in done.stderr and "gym" not in done.stderr.lower().replace("gym3", "")
