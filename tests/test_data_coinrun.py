"""CoinRun generation with real procgen: episode contents, manifest, splits and resuming."""

import json

import numpy as np
import pytest

from opengenie.data import EpisodeFile, load_episode, rollout_level
from opengenie.data.coinrun import generate

pytest.importorskip("procgen")

STEPS = 40


@pytest.fixture(scope="module")
def coinrun_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("coinrun")
    generate(out, levels=3, steps_per_level=STEPS, start_level=5, workers=2, progress=False)
    return out


def test_episode_contents(coinrun_dir):
    """One file per level seed with 64x64 uint8 frames and per-step actions, rewards, dones."""
    files = sorted(p.name for p in coinrun_dir.glob("*.npz"))
    assert files == ["level_000005.npz", "level_000006.npz", "level_000007.npz"]
    ep = load_episode(coinrun_dir / "level_000006.npz")
    assert ep["frames"].shape == (STEPS, 64, 64, 3) and ep["frames"].dtype == np.uint8
    assert ep["actions"].shape == (STEPS,) and 0 <= ep["actions"].min() and ep["actions"].max() < 15
    assert ep["rewards"].shape == (STEPS,) and ep["dones"].dtype == np.bool_
    assert int(ep["level_seed"]) == 6
    assert ep["frames"].std() > 0  # a real rendered level, not a blank


def test_manifest(coinrun_dir):
    """The manifest counts episodes and frames, records settings, and splits by level seed."""
    m = json.loads((coinrun_dir / "manifest.json").read_text())
    assert m["counts"]["episodes"] == 3 and m["counts"]["frames"] == 3 * STEPS
    assert m["settings"]["difficulty"] == "hard" and m["settings"]["steps_per_level"] == STEPS
    assert sum(s["episodes"] for s in m["counts"]["splits"].values()) == 3
    assert {e["level_seed"] for e in m["episodes"]} == {5, 6, 7}


def test_rollout_is_deterministic_and_level_specific():
    """The same (level, seed) gives the same frames; another level gives other frames."""
    a, b, c = rollout_level(3, 25), rollout_level(3, 25), rollout_level(4, 25)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["frames"][0], c["frames"][0])


def test_random_policy_has_no_action_repeat_structure():
    """Actions are drawn per step (paper: random policy without action repeats)."""
    actions = rollout_level(0, 300)["actions"]
    assert len(np.unique(actions)) == 15
    assert np.mean(actions[1:] == actions[:-1]) < 0.2  # about 1/15 by chance


def test_rerun_skips_finished_and_removes_partial(coinrun_dir):
    """A re-run keeps finished levels untouched, adds missing ones and clears stale temp files."""
    before = (coinrun_dir / "level_000005.npz").stat().st_mtime_ns
    (coinrun_dir / ".level_000008.npz.123.partial").write_bytes(b"half")
    m = generate(coinrun_dir, levels=4, steps_per_level=STEPS, start_level=5, progress=False)
    assert (coinrun_dir / "level_000005.npz").stat().st_mtime_ns == before
    assert m["counts"]["episodes"] == 4 and len(EpisodeFile(coinrun_dir / "level_000008.npz")) == STEPS
    assert not list(coinrun_dir.glob("*.partial"))


def test_settings_mismatch_is_refused(coinrun_dir):
    """Adding levels with other settings to a folder is a clear error, not a silent mix."""
    with pytest.raises(ValueError, match="steps_per_level=40.*steps_per_level=41"):
        generate(coinrun_dir, levels=1, steps_per_level=41, progress=False)


def test_splits_are_disjoint_by_level(tmp_path):
    """With many levels every split is used and no level seed is in two splits."""
    m = generate(tmp_path, levels=60, steps_per_level=2, val_fraction=0.2, test_fraction=0.2, progress=False)
    by_split = {s: {e["level_seed"] for e in m["episodes"] if e["split"] == s} for s in ("train", "val", "test")}
    assert all(by_split.values())
    assert set.union(*by_split.values()) == set(range(60))
    assert sum(len(v) for v in by_split.values()) == 60


def test_reward_and_done_mark_the_same_step():
    """CoinRun pays only for the coin, which ends the episode: rewards and dones align, and the
    frame after a done is the level's first frame again (procgen restarts the same level)."""
    ep = rollout_level(3, 150)
    done = np.nonzero(ep["dones"])[0]
    assert len(done) >= 1 and np.array_equal(np.nonzero(ep["rewards"])[0], done)
    assert np.array_equal(ep["frames"][done[0] + 1], ep["frames"][0])


def test_wander_policy_walks_left_as_often_as_right():
    """The wandering policy holds keys for 4..20 steps and presses left about as often as right."""
    from opengenie.data.coinrun import policy_actions
    from opengenie.data.keys import horizontal_key

    actions = policy_actions("wander", 20_000, np.random.default_rng(0))
    runs = np.diff(np.flatnonzero(np.r_[True, actions[1:] != actions[:-1], True]))
    assert runs.mean() > 8 and set(np.unique(actions)) <= {1, 2, 3, 4, 5, 7, 8}
    left, _, right = np.bincount(horizontal_key(actions), minlength=3) / len(actions)
    assert left > 0.3 and right > 0.3 and abs(left - right) < 0.05


def test_explore_policy_holds_keys_and_is_recorded(tmp_path):
    """The exploring policy holds each key for 2..12 steps, walks right most, and its parameters land in the manifest."""
    from opengenie.data.coinrun import POLICIES, policy_actions
    from opengenie.data.keys import horizontal_key, jump_key

    actions = policy_actions("explore", 5000, np.random.default_rng(0))
    runs = np.diff(np.flatnonzero(np.r_[True, actions[1:] != actions[:-1], True]))  # lengths of repeated actions
    assert runs.mean() > 4 and set(np.unique(actions)) <= {1, 2, 3, 4, 5, 7, 8}
    keys = np.bincount(horizontal_key(actions), minlength=3) / len(actions)  # left, none, right
    assert keys[2] > keys[0] > 0.1 and 0.2 < jump_key(actions).mean() < 0.5
    generate(tmp_path, levels=1, steps_per_level=20, policy="explore", progress=False)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["settings"]["policy"] == POLICIES["explore"] and m["settings"]["policy"]["hold_max"] == 12
    with pytest.raises(ValueError, match="policy"):  # a folder never mixes policies
        generate(tmp_path, levels=2, steps_per_level=20, policy="random", progress=False)
    with pytest.raises(ValueError, match="unknown policy 'greedy'"):
        generate(tmp_path / "other", levels=1, steps_per_level=20, policy="greedy", progress=False)


def test_key_parts_of_procgen_actions():
    """LEFT / RIGHT combos map to the horizontal key, UP combos to jump (procgen's combo order)."""
    from opengenie.data.keys import horizontal_key, jump_key

    assert horizontal_key(np.arange(15)).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1]
    assert jump_key(np.arange(15)).tolist() == [0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]


def test_a_folder_from_before_named_policies_takes_more_random_levels(tmp_path):
    """A manifest that records the random policy as a sentence (older folders) accepts more levels of it."""
    generate(tmp_path, levels=1, steps_per_level=10, progress=False)
    m = json.loads((tmp_path / "manifest.json").read_text())
    m["settings"]["policy"] = "uniform random, no action repeats"
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    out = generate(tmp_path, levels=2, steps_per_level=10, progress=False)
    assert out["counts"]["episodes"] == 2 and out["settings"]["policy"]["policy"] == "random"
