"""A world's starting frames chosen by the real game (`opengenie gallery`): only states from which
RIGHT, LEFT and UP each move the camera, the game's motion stored beside them, a world held
against it from the same frames."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from opengenie import presets
from opengenie.cli import main
from opengenie.data import generate_coinrun, load_episode
from opengenie.evaluation.gallery import against_the_game, qualifies, read_reference, real_motion, write_gallery
from opengenie.evaluation.playability import coinrun_reference, episode_state
from test_labels import PanWorld  # a world with known moves


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery")
    data = root / "data"
    generate_coinrun(data, levels=8, steps_per_level=200, start_level=95000, policy="wander", seed=5,
                     progress=False)
    reference = write_gallery(data, root / "prompts", count=3, every=40, progress=False)
    return data, root / "prompts", reference


def test_the_gallery_keeps_the_first_state_of_a_level_where_every_arrow_moves(gallery):
    """Replayed again, independently: every level up to the last one kept contributes its first
    qualifying state (RIGHT, LEFT, UP each 6 px beyond no key, no episode ended), and only those;
    the frame written is the recorded one and the stored motion is the game's."""
    data, folder, reference = gallery
    assert reference == read_reference(folder) and reference["frame_skip"] == 4 and reference["steps"] == 12
    assert reference["data"] == {"difficulty": "hard", "seed": 5, "policy": "wander"}
    kept = {p["level_seed"]: (name, p) for name, p in reference["prompts"].items()}
    assert 1 <= len(kept) <= 3
    rejected = 0
    for path in sorted(data.glob("level_*.npz")):
        ep = load_episode(path)
        seed = int(ep["level_seed"])
        if seed > max(kept):
            break
        states = [episode_state(ep, t, {"difficulty": "hard", "seed": 5}) for t in range(40, len(ep["frames"]), 40)]
        real = real_motion(states, 12, 4)
        assert all(r["replayed"] for r in real)  # procgen replays the recorded episode exactly
        good = [(s, r) for s, r in zip(states, real) if qualifies(r, 6.0)]
        rejected += len(real) - len(good)
        assert (seed in kept) == bool(good)
        if good:
            state, r = good[0]
            name, prompt = kept[seed]
            assert name == f"level_{seed:06d}_t{state['start']:03d}" and prompt["real"] == r["motion"]
            still = r["motion"]["none"]
            assert r["motion"]["RIGHT"]["dx"] - still["dx"] >= 6 and r["motion"]["LEFT"]["dx"] - still["dx"] <= -6
            assert r["motion"]["UP"]["dy"] - still["dy"] <= -6 and not r["ended"]
            assert (np.asarray(Image.open(folder / f"{name}.png")) == ep["frames"][state["start"]]).all()
    assert rejected > 0  # some states do not let every arrow move: the choice is a real one
    assert sorted(p.stem for p in folder.glob("*.png")) == sorted(reference["prompts"])


def test_a_world_is_held_against_the_game_from_the_gallery(gallery):
    """A world with known moves (2 px a step right, left, up) moves 24 px along each arrow in 12
    steps; the real game's mean is read from real.json; a world at another frame skip is refused."""
    _, folder, reference = gallery
    config = replace(presets.tiny(), frame_skip=4, arrow_keys={"ArrowRight": 1, "ArrowLeft": 2, "ArrowUp": 3})
    rows = against_the_game(PanWorld(config).eval(), folder, draws=1)
    assert set(rows) == {"ArrowRight", "ArrowLeft", "ArrowUp"}
    assert rows["ArrowRight"]["world"] == pytest.approx(24, abs=1)
    assert rows["ArrowLeft"]["world"] == pytest.approx(-24, abs=1) and rows["ArrowUp"]["world"] == pytest.approx(-24, abs=1)
    real = [p["real"] for p in reference["prompts"].values()]
    assert rows["ArrowLeft"]["real"] == pytest.approx(np.mean([r["LEFT"]["dx"] for r in real]))
    assert rows["ArrowRight"]["rollouts"] == len(real)
    with pytest.raises(ValueError, match="frame skip 4"):
        against_the_game(PanWorld(replace(config, frame_skip=1)).eval(), folder)


def test_bad_galleries_are_refused(tmp_path, gallery, capsys):
    """Not CoinRun, no qualifying state, a folder with frames already, no real.json, a frame
    missing, a world with no arrow mapped, and a command with nothing to do: each a clear error."""
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
    with pytest.raises(ValueError, match="already holds"):
        write_gallery(data, folder, progress=False)
    with pytest.raises(ValueError, match="maps no arrow"):
        against_the_game(PanWorld(replace(presets.tiny(), frame_skip=4)).eval(), folder)
    broken = tmp_path / "broken"
    broken.mkdir()
    reference = json.loads((folder / "real.json").read_text())
    (broken / "real.json").write_text(json.dumps(reference))
    config = replace(presets.tiny(), frame_skip=4, arrow_keys={"ArrowRight": 1})
    with pytest.raises(ValueError, match="names frames that are not there"):
        against_the_game(PanWorld(config).eval(), broken)


def test_a_state_whose_held_key_ends_the_episode_is_not_kept(tmp_path):
    """From frame 280 of level 95000 (wandering policy, seed 5) holding RIGHT reaches the coin
    within the first world step and procgen restarts the level; the shift search read that jump
    as 8.7 px of walking right. Now the camera stops where the episode ended (the frames repeat),
    the state is flagged, and it is not kept; the other keys are played as before."""
    generate_coinrun(tmp_path, levels=1, steps_per_level=300, start_level=95000, policy="wander", seed=5,
                     progress=False)
    ep = load_episode(tmp_path / "level_095000.npz")
    state = episode_state(ep, 280, {"difficulty": "hard", "seed": 5})
    frames, ended = coinrun_reference([state], 12, frame_skip=4)  # keys RIGHT, LEFT, UP, none
    assert ended[:, 0].tolist() == [True, False, False, False]
    assert (frames[0, 0] == frames[0, 0, :1]).all()  # RIGHT: the prompt frame, held
    assert not (frames[1, 0, -1] == frames[1, 0, 0]).all()  # LEFT moves on
    real = real_motion([state], 12, 4)[0]
    assert real["replayed"] and real["ended"] and real["motion"]["RIGHT"] == {"dx": 0.0, "dy": 0.0}
    assert real["motion"]["LEFT"]["dx"] < -6 and not qualifies(real, 6.0)
    from opengenie.evaluation.markdown import _ended

    assert _ended({"real_episode_ended": {"RIGHT": 1, "LEFT": 0}, "prompts": 16}).startswith(
        "; holding it ended the episode (a coin or a death) from some states (RIGHT 1 of 16)")
    assert _ended({"real_episode_ended": {"RIGHT": 0}, "prompts": 16}) == "."


def test_the_real_game_plays_a_key_sequence_from_a_recorded_state(tmp_path):
    """`coinrun_play` replays the level to the state and presses the keys in turn: a key held
    throughout draws the frames `coinrun_reference` draws holding it, a sequence follows the held
    key until it changes and then parts from it, and an episode ended on the way (RIGHT reaches
    the coin from frame 280 of level 95000) repeats its last frame."""
    from opengenie.data.keys import LEFT, RIGHT
    from opengenie.evaluation.playability import coinrun_play

    generate_coinrun(tmp_path, levels=1, steps_per_level=300, start_level=95000, policy="wander", seed=5,
                     progress=False)
    ep = load_episode(tmp_path / "level_095000.npz")
    state = episode_state(ep, 200, {"difficulty": "hard", "seed": 5})
    held, _ = coinrun_reference([state], 8, keys={"LEFT": LEFT, "RIGHT": RIGHT}, frame_skip=4)
    left, ended = coinrun_play(state, [LEFT] * 8, frame_skip=4)
    assert not ended and (left == held[0, 0]).all() and (left[0].numpy() == ep["frames"][200]).all()
    turned, _ = coinrun_play(state, [LEFT] * 4 + [RIGHT] * 4, frame_skip=4)
    assert (turned[:5] == held[0, 0, :5]).all() and not (turned[5:] == held[0, 0, 5:]).all()
    coin, ended = coinrun_play(episode_state(ep, 280, {"difficulty": "hard", "seed": 5}), [RIGHT] * 3, frame_skip=4)
    assert ended and (coin == coin[:1]).all()
