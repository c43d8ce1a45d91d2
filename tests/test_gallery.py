"""A world's starting frames chosen by the real game (`opengenie gallery`): only states from which
RIGHT, LEFT and UP each move the camera, the game's motion stored beside them, a world held
against it from the same frames."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from opengenie import presets
from opengenie.cli import main
from opengenie.data import generate_coinrun, load_episode
from opengenie.evaluation.gallery import _qualifies, _real_motion, against_the_game, read_reference, write_gallery
from test_labels import PanWorld  # a world with known moves


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery")
    data = root / "data"
    generate_coinrun(data, levels=8, steps_per_level=160, start_level=95000, policy="wander", seed=5,
                     progress=False)
    reference = write_gallery(data, root / "prompts", count=3, every=40, progress=False)
    return data, root / "prompts", reference


def test_the_gallery_keeps_the_first_state_of_a_level_where_every_arrow_moves(gallery):
    data, folder, reference = gallery
    assert reference == read_reference(folder) and reference["frame_skip"] == 4 and reference["steps"] == 12
    assert reference["data"] == {"difficulty": "hard", "seed": 5, "policy": "wander"}
    assert 1 <= len(reference["prompts"]) <= 3
    rejected = 0
    for path in sorted(data.glob("level_*.npz")):
        ep = load_episode(path)
        seed = int(ep["level_seed"])
        states = [{"level_seed": seed, "start": t, "actions": ep["actions"], "difficulty": "hard", "seed": 5,
                   "frame": ep["frames"][t]} for t in range(40, len(ep["frames"]), 40)]
        real = _real_motion(states, 12, 4)  # replayed again, independently of the gallery
        assert all(r["replayed"] for r in real)  # procgen replays the recorded episode exactly
        first = next((s["start"] for s, r in zip(states, real) if _qualifies(r["motion"], 6.0)), None)
        rejected += sum(not _qualifies(r["motion"], 6.0) for r in real)
        name = f"level_{seed:06d}_t{first:03d}" if first is not None else None
        if name in reference["prompts"]:
            kept = reference["prompts"][name]
            assert kept["real"] == next(r["motion"] for s, r in zip(states, real) if s["start"] == first)
            assert kept["real"]["RIGHT"]["dx"] >= 6 and kept["real"]["LEFT"]["dx"] <= -6
            assert kept["real"]["UP"]["dy"] <= -6
            assert (np.asarray(Image.open(folder / f"{name}.png")) == ep["frames"][first]).all()
        else:
            assert first is None or len(reference["prompts"]) == 3  # a qualifying level is only passed over once full
    assert rejected > 0  # some states do not let every arrow move: the choice is a real one
    assert sorted(p.stem for p in folder.glob("*.png")) == sorted(reference["prompts"])


def test_a_world_is_held_against_the_game_from_the_gallery(gallery):
    """A world with known moves (2 px a step right, left, up) moves 24 px along each arrow in 12 steps."""
    _, folder, reference = gallery
    config = replace(presets.tiny(), frame_skip=4, arrow_keys={"ArrowRight": 1, "ArrowLeft": 2, "ArrowUp": 3})
    rows = against_the_game(PanWorld(config).eval(), folder, draws=1)
    assert set(rows) == {"ArrowRight", "ArrowLeft", "ArrowUp"}
    assert rows["ArrowRight"]["world"] == pytest.approx(24, abs=1) and rows["ArrowLeft"]["world"] == pytest.approx(-24, abs=1)
    assert rows["ArrowUp"]["world"] == pytest.approx(-24, abs=1)
    real = [p["real"] for p in reference["prompts"].values()]
    assert rows["ArrowLeft"]["real"] == pytest.approx(np.mean([r["LEFT"]["dx"] for r in real]))
    assert rows["ArrowRight"]["rollouts"] == len(real)
    with pytest.raises(ValueError, match="frame skip 4"):
        against_the_game(PanWorld(replace(config, frame_skip=1)).eval(), folder)


def test_bad_galleries_are_refused(tmp_path, gallery, capsys):
    data, folder, _ = gallery
    with pytest.raises(ValueError, match="not a CoinRun dataset"):
        write_gallery(tmp_path, tmp_path / "prompts")
    with pytest.raises(ValueError, match="no state"):
        write_gallery(data, tmp_path / "prompts", min_px=1000, progress=False)
    with pytest.raises(ValueError, match="real.json"):
        against_the_game(PanWorld(presets.tiny()).eval(), tmp_path)
    with pytest.raises(SystemExit):
        main(["gallery", "--out", str(folder)])
    assert "give --data (write the gallery) or --model" in capsys.readouterr().err
    assert json.loads((folder / "real.json").read_text())["min_px"] == 6.0
