"""`opengenie generate` and the render functions behind it: files that decode to the right frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from opengenie import Genie, presets
from opengenie.cli import main
from opengenie.play.render import caption_frames, grid_size, rollout_frames, upscale, write_video


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.set_num_threads(1)  # the machine is shared; one thread avoids oversubscription stalls
    torch.manual_seed(0)
    return Genie(presets.tiny()).save_pretrained(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def prompt(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompt") / "level.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(path)
    return path


def test_upscale_is_nearest_neighbour():
    """Each source pixel becomes a scale x scale block of the same colour."""
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 3), dtype=np.uint8)
    big = upscale(frames, 3)
    assert big.shape == (2, 9, 15, 3)
    assert (big[:, ::3, ::3] == frames).all() and (big[:, 2::3, 1::3] == frames).all()
    with pytest.raises(ValueError, match="whole number"):
        upscale(frames, 0)


def test_rollout_frames_shape_and_seed(model, prompt):
    """A rollout of n actions from one image gives 1 + n frames (H, W, 3) uint8, reproducible by seed."""
    world = Genie.from_pretrained(model)
    a = rollout_frames(world, prompt, [0, 3, 1], seed=5)
    b = rollout_frames(world, prompt, [0, 3, 1], seed=5)
    assert a.shape == (4, 64, 64, 3) and a.dtype == np.uint8
    assert (a == b).all()
    with pytest.raises(ValueError, match="0..7"):
        rollout_frames(world, prompt, [8])


def test_cli_writes_gif_and_mp4_with_every_frame(model, prompt, tmp_path):
    """--actions writes a GIF of 1 + len(actions) frames; --random N an MP4 of 1 + N frames; both upscaled."""
    av = pytest.importorskip("av")
    gif, mp4 = tmp_path / "rollout.gif", tmp_path / "rollout.mp4"
    main(["generate", "--model", str(model), "--prompt", str(prompt), "--actions", "0,3,3,1", "--out", str(gif),
          "--maskgit-steps", "2"])
    image = Image.open(gif)
    assert image.n_frames == 5 and image.size == (256, 256)
    guided = tmp_path / "guided.gif"  # the same draws, weighed by action guidance: other frames
    main(["generate", "--model", str(model), "--prompt", str(prompt), "--actions", "0,3,3,1", "--out", str(guided),
          "--maskgit-steps", "2", "--action-guidance", "4"])
    against = tmp_path / "against.gif"  # guided against one action alone: others again
    main(["generate", "--model", str(model), "--prompt", str(prompt), "--actions", "0,3,3,1", "--out", str(against),
          "--maskgit-steps", "2", "--action-guidance", "4", "--guidance-against", "2"])
    frames = [[np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))]
              for path in (gif, guided, against)]
    for other in frames[1:]:
        assert len(other) == 5 and (frames[0][0] == other[0]).all() and not all(
            (a == b).all() for a, b in zip(frames[0][1:], other[1:]))
    assert not all((a == b).all() for a, b in zip(frames[1][1:], frames[2][1:]))
    main(["generate", "--model", str(model), "--prompt", str(prompt), "--random", "3", "--out", str(mp4),
          "--scale", "3", "--maskgit-steps", "2"])
    with av.open(str(mp4)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (192, 192, 3)


def test_cli_keys_play_the_labelled_actions_with_captions(model, prompt, tmp_path, capsys):
    """--keys plays the world's arrow-key actions (right*3,up = its actions 2,2,2,5) and
    --caption writes each frame's action label in a strip under it; an unmapped key is refused."""
    from dataclasses import replace

    world = Genie.from_pretrained(model)
    labels = tuple(f"move {a}" for a in range(8))
    world.config = replace(world.config, action_labels=labels, arrow_keys={"ArrowRight": 2, "ArrowUp": 5})
    labelled = world.save_pretrained(tmp_path / "labelled")
    keys = tmp_path / "keys.gif"
    main(["generate", "--model", str(labelled), "--prompt", str(prompt), "--keys", "right*3,up", "--caption",
          "--out", str(keys), "--maskgit-steps", "2", "--scale", "2"])
    assert "(actions 2,2,2,5)" in capsys.readouterr().out
    gif = Image.open(keys)
    assert gif.n_frames == 5 and gif.size == (128, 128 + 20)  # frames at scale 2 and a 20-pixel caption strip
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 96, 3), dtype=np.uint8)
    captioned = caption_frames(frames, ["prompt", "2: move 2", "5: move 5"])
    assert captioned.shape == (3, 60, 96, 3) and (captioned[:, :40] == frames).all()
    assert all(captioned[t, 40:].max() > 150 for t in range(3))  # text in every strip
    assert not (captioned[1, 40:] == captioned[2, 40:]).all()  # each its own
    with pytest.raises(ValueError, match="one caption per frame"):
        caption_frames(frames, ["prompt"])
    with pytest.raises(SystemExit):
        main(["generate", "--model", str(labelled), "--prompt", str(prompt), "--keys", "left", "--out",
              str(tmp_path / "l.gif")])
    assert "maps no action to ArrowLeft" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--model", str(labelled), "--prompt", str(prompt), "--keys", "jump", "--out",
              str(tmp_path / "j.gif")])
    assert "right*8,up,left*4" in capsys.readouterr().err


def test_cli_grid_has_one_row_per_action(model, prompt, tmp_path):
    """--grid writes a PNG with a row per action and 1 + k columns, of the documented size."""
    out = tmp_path / "grid.png"
    main(["generate", "--model", str(model), "--prompt", str(prompt), "--grid", "--frames-per-action", "2",
          "--out", str(out), "--maskgit-steps", "2"])
    assert Image.open(out).size == grid_size(8, 2, (64, 64), 2)


def test_cli_refuses_bad_requests(model, prompt, tmp_path, capsys):
    """Out-of-range actions, a non-image prompt and a wrong file type exit with a message, not a traceback."""
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for argv, words in [(["--actions", "0,9", "--out", str(tmp_path / "a.gif")], "0..7"),
                        (["--actions", "0,x", "--out", str(tmp_path / "a.gif")], "comma-separated"),
                        (["--grid", "--out", str(tmp_path / "a.gif")], ".png"),
                        (["--actions", "1", "--out", str(tmp_path / "a.avi")], ".gif or .mp4")]:
        with pytest.raises(SystemExit):
            main(["generate", "--model", str(model), "--prompt", str(prompt), "--maskgit-steps", "1", *argv])
        assert words in capsys.readouterr().err
    # Settings out of range are refused by name rather than silently replaced by defaults.
    for flag, value, words in [("--maskgit-steps", "0", "--maskgit-steps/--steps: must be in 1.."),
                               ("--scale", "0", "--scale: must be in 1.."),
                               ("--temperature", "-1", "--temperature: must be a finite number in 0.0..")]:
        with pytest.raises(SystemExit):
            main(["generate", "--model", str(model), "--prompt", str(prompt), flag, value, "--out",
                  str(tmp_path / "a.gif")])
        assert words in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--model", str(model), "--prompt", str(text), "--actions", "1", "--out",
              str(tmp_path / "a.gif")])
    assert "not an image" in capsys.readouterr().err


def test_write_video_refuses_wrong_frames(tmp_path):
    """write_video names the expected layout when handed floats or a wrong shape."""
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) uint8"):
        write_video(np.zeros((2, 8, 8, 3), np.float32), tmp_path / "x.gif")
