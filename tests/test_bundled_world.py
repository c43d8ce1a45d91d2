"""The CoinRun worlds shipped in `worlds/`: coinrun-small loads without pickles, stays small,
plays every action, and the play server offers its own starting frames; coinrun-wander walks
both ways and jumps from its starting frames, as the real game does from the same states."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from opengenie import Genie
from opengenie.play.samples import sample_frames

WORLD = Path(__file__).resolve().parents[1] / "worlds" / "coinrun-small"


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    return Genie.from_pretrained(WORLD)


def test_the_world_is_small_and_complete():
    files = {p.name: p.stat().st_size for p in WORLD.iterdir() if p.is_file()}
    assert {"config.json", "model.safetensors"} <= set(files)
    assert sum(files.values()) <= 30 * 2**20
    config = json.loads((WORLD / "config.json").read_text())
    assert config["dynamics"]["grid"] == [8, 8]


def test_every_action_plays_from_a_shipped_prompt(world):
    prompts = sample_frames(WORLD / "prompts")
    assert len(prompts) >= 4
    assert all(p.frame.shape == (64, 64, 3) and p.frame.dtype == np.uint8 for p in prompts)
    first = world.reset(prompts[0].frame)
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    frames = [world.step(a) for a in range(world.num_actions)]
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
    # The world moves: the frames it generates are not all copies of the prompt.
    assert max(np.abs(f.astype(int) - first.astype(int)).mean() for f in frames) > 1.0
    with pytest.raises(ValueError, match=str(world.num_actions - 1)):
        world.step(world.num_actions)


def test_a_folder_of_images_offers_its_frames(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((64, 64, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"frame_{i}.png")
    frames = sample_frames(tmp_path, count=2)
    assert [f.label for f in frames] == ["frame_0", "frame_1"]
    assert frames[1].frame[0, 0, 0] == 40


def test_labelled_actions_do_what_their_labels_say(world):
    """The shipped world is labelled, and each arrow's action, held from the shipped prompts, moves the camera the way the arrow points."""
    from opengenie.evaluation.labels import measure_labels

    labels, keys = world.config.action_labels, world.config.arrow_keys
    assert len(labels) == world.num_actions and "ArrowUp" in keys and "ArrowDown" in keys
    prompts = torch.stack([torch.from_numpy(p.frame).permute(2, 0, 1)[:, None].float() / 127.5 - 1
                           for p in sample_frames(WORLD / "prompts")[:4]])  # (4, C, 1, H, W)
    _, _, rows = measure_labels(world, prompts, steps=8, seed=1)
    moved = {key: rows[action] for key, action in keys.items()}
    assert moved["ArrowUp"]["dy_total"] < -2 and "jump" in labels[keys["ArrowUp"]]
    if "ArrowRight" in keys:
        assert moved["ArrowRight"]["dx_total"] > 2 and "right" in labels[keys["ArrowRight"]]
    if "ArrowLeft" in keys:
        assert moved["ArrowLeft"]["dx_total"] < -2 and "left" in labels[keys["ArrowLeft"]]
    still = moved["ArrowDown"]
    assert abs(still["dx_total"]) + abs(still["dy_total"]) < abs(moved["ArrowUp"]["dy_total"])


def test_the_wandering_world_walks_both_ways_and_jumps_as_the_game_does():
    """worlds/coinrun-wander (frame skip 4): from its 12 starting frames (chosen where the real
    game's RIGHT, LEFT and UP each move the camera, `opengenie gallery`), three rollouts each,
    the actions its → ← ↑ arrows play move the camera their way, beyond the rollouts' 95 %
    interval, by at least a third of what the real key does from the same states, each labelled
    so. (The issue's target, half of the real key, is measured at 30 rollouts a frame in the
    README: at three, one draw of the sampler to the next swings the mean by ±15 % of the game's.)"""
    from opengenie.evaluation.gallery import against_the_game

    path = WORLD.parent / "coinrun-wander"
    wanderer = Genie.from_pretrained(path)
    keys, labels = wanderer.config.arrow_keys, wanderer.config.action_labels
    assert wanderer.config.frame_skip == 4 and {"ArrowLeft", "ArrowRight", "ArrowUp"} <= set(keys)
    assert "right" in labels[keys["ArrowRight"]] and "left" in labels[keys["ArrowLeft"]]
    assert "jump" in labels[keys["ArrowUp"]]
    rows = against_the_game(wanderer, path / "prompts", draws=3)
    assert set(rows) == {"ArrowRight", "ArrowLeft", "ArrowUp"} and rows["ArrowLeft"]["rollouts"] == 36
    assert rows["ArrowRight"]["real"] > 6 and rows["ArrowLeft"]["real"] < -6 and rows["ArrowUp"]["real"] < -6
    for arrow, r in rows.items():
        assert all(v * r["real"] > 0 for v in r["world_ci95"]), (arrow, r)  # the interval lies on the arrow's side
        assert r["world"] / r["real"] >= 1 / 3, (arrow, r)
