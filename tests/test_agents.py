"""Agents from latent actions (Genie App. E): the pieces, and the whole pipeline on a world
where the answer is known."""

import json

import numpy as np
import pytest
import torch

from opengenie.agents import square
from opengenie.agents.cloning import train_policy
from opengenie.agents.evaluate import play_square, random_agent, rate, run_square, wilson
from opengenie.agents.mapping import LatentToReal


def test_square_world_moves_and_renders_what_it_records():
    """Each move shifts the drawn square by exactly one cell (or not at all at an edge), and a
    frame shows the target wherever the square does not cover it."""
    env = square.SquareGoal(64, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        before, pos = env.render(), env.pos.copy()
        moves = rng.integers(0, square.NUM_MOVES, size=64)
        live = ~env.success
        env.step(moves)
        after = env.render()
        for i in np.flatnonzero(live):
            dy, dx = np.array(square.MOVES[moves[i]])
            assert (env.pos[i] == np.clip(pos[i] + (dy, dx), 0, square.LAST)).all()
            y, x = env.pos[i] * square.STEP
            assert (after[i, y:y + square.SQUARE, x:x + square.SQUARE] == square.SQUARE_RGB).all()
        assert (before[~live] == after[~live]).all()  # a won episode stays as it was


def test_expert_always_reaches_the_target_in_the_fewest_moves():
    """The expert wins every episode, each in exactly the Manhattan distance to its target."""
    env = square.SquareGoal(200, seed=1)
    distance = np.abs(env.target - env.pos).sum(1)
    rng = np.random.default_rng(0)
    for _ in range(square.MAX_STEPS):
        env.step(square.expert_moves(env.pos, env.target, rng))
    assert env.success.all() and (env.steps == distance).all()
    demo = square.expert_episodes(50, seed=1)
    assert len(demo["moves"]) == np.abs(square.SquareGoal(50, 1).target - square.SquareGoal(50, 1).pos).sum()
    assert 0 not in demo["moves"]  # the expert never stands still


def test_mapping_draws_only_actions_seen_with_the_latent_in_their_proportions():
    """A latent seen with actions A, A, A, B gives A about 3/4 of the time and nothing else; an
    unseen latent draws from the fallback; the majority is the most frequent action."""
    mapping = LatentToReal([2, 2, 2, 2, 0], [7, 7, 7, 5, 1], num_latents=4, fallback=[10, 11])
    rng = np.random.default_rng(0)
    draws = mapping.sample(np.full(4000, 2), rng)
    assert set(draws.tolist()) == {5, 7} and abs((draws == 7).mean() - 0.75) < 0.03
    assert set(mapping.sample(np.full(200, 3), rng).tolist()) == {10, 11}
    assert (mapping.sample(np.zeros(10, dtype=np.int64), rng) == 1).all()
    assert mapping.majority().tolist() == [1, -1, 7, -1] and mapping.num_labels == 5
    with pytest.raises(ValueError, match="latent ids must lie"):
        LatentToReal([4], [0], num_latents=4, fallback=[0])


def test_wilson_interval_covers_the_rate_and_narrows_with_trials():
    """The interval holds the observed rate, stays in [0, 1] at the extremes, and shrinks as trials grow."""
    assert wilson(0, 10)[0] == 0 and wilson(10, 10)[1] == 1 and wilson(10, 10)[0] > 0.6
    low, high = wilson(50, 100)
    low2, high2 = wilson(500, 1000)
    assert low < 0.5 < high and high2 - low2 < (high - low) / 2
    assert rate([True, False, False, False])["rate"] == 0.25


def test_oracle_clones_the_expert():
    """A policy cloned on the expert's true moves wins nearly as often as the expert, far more than random."""
    torch.manual_seed(0)
    demo = square.expert_episodes(300, seed=5)
    oracle = train_policy(demo["frames"], demo["moves"], square.NUM_MOVES, steps=300)
    won = play_square(lambda f, rng: oracle.act(f), 300, seed=6).mean()
    chance = play_square(random_agent(np.arange(square.NUM_MOVES)), 300, seed=6).mean()
    assert won > 0.85 and chance < 0.35, f"oracle {won:.2f}, random {chance:.2f}"


def test_latent_actions_give_an_agent_from_few_labels():
    """Genie App. E end to end: an action model trained without labels names the expert's moves;
    50 labelled transitions map every latent the expert uses to its true move; the agent cloned
    in latent space then wins about as often as the oracle, and with no labels only as often as random."""
    r = run_square(expert_episodes=300, labels=(0, 50), eval_episodes=300, action_steps=200, policy_steps=300)
    used = [k for k, count in enumerate(r["latent_usage"]) if count >= 0.05 * r["expert_transitions"]]
    assert len(used) >= 4, r["latent_usage"]  # the expert's four moves are named by at least four codes
    assert [r["mappings"][50][k] for k in used] == [r["truth"][k] for k in used], r
    assert sorted({r["truth"][k] for k in used}) == [1, 2, 3, 4]  # every move of the expert has a latent
    latent, oracle, chance = r["latent"][50]["rate"], r["oracle"]["rate"], r["random"]["rate"]
    assert latent > oracle - 0.15 and latent > chance + 0.4, r
    assert r["latent"][0]["rate"] < chance + 0.1, r  # no labels: no better than random


def test_horizontal_shift_reads_how_far_the_camera_moved():
    """Two crops of one CoinRun frame, the second s px further right, read as a camera move of s."""
    from opengenie.data.expert import horizontal_shift
    from opengenie.data.coinrun import rollout_level

    frame = rollout_level(100_000, 1, "easy")["frames"][0]
    for s in (-5, -2, 0, 3, 6):
        first, second = frame[None, :, 8:56], frame[None, :, 8 + s:56 + s]
        assert horizontal_shift(first, second).tolist() == [s]


def test_coinrun_expert_collects_the_coin_on_held_out_levels(tmp_path):
    """The look-ahead expert collects the coin on every one of five unseen easy and hard levels,
    and `opengenie data coinrun --policy expert` records its episodes with their actions."""
    from opengenie.agents.evaluate import coinrun_episode
    from opengenie.data.expert import LookaheadExpert
    from opengenie.data.coinrun import POLICIES, generate
    from opengenie.data.episodes import load_episode

    for difficulty in ("easy", "hard"):
        won = [coinrun_episode(lambda env: LookaheadExpert(env).act, level, difficulty)["success"]
               for level in range(100_000, 100_005)]
        assert all(won), (difficulty, won)
    generate(tmp_path, levels=1, steps_per_level=60, start_level=100_000, difficulty="easy", policy="expert",
             progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["settings"]["policy"] == POLICIES["expert"]
    ep = load_episode(tmp_path / "level_100000.npz")
    assert ep["actions"].shape == (60,) and np.isin(ep["actions"], (1, 4, 5, 7, 8)).all()
    assert ep["rewards"].sum() > 0  # it reached the coin within 60 steps


def test_agent_command_writes_success_rates(tmp_path, capsys):
    """`opengenie agent expert` prints and writes each agent's success rate with its interval."""
    from opengenie.cli import main

    main(["agent", "expert", "--levels", "2", "--difficulty", "easy", "--out", str(tmp_path / "r.json")])
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["expert"]["rate"] == 1.0 and result["expert"]["n"] == 2
    assert result["random"]["ci95"][0] <= result["random"]["rate"] <= result["random"]["ci95"][1]
    assert "expert         success 1.000" in capsys.readouterr().out


def test_world_action_model_labels_expert_transitions_as_its_rollout_does():
    """Labelling transitions pair by pair gives what the world's action model infers on the whole
    episode (its encoder reads each transition on its own), and playing levels side by side
    agrees with playing them one at a time."""
    from opengenie import Genie
    from opengenie.agents.coinrun import expert_transitions, label, play_levels
    from opengenie.agents.evaluate import coinrun_episode
    from opengenie.evaluation.rollout import infer_actions

    world = Genie.from_pretrained("worlds/coinrun-small").eval()
    demo = expert_transitions(range(100_000, 100_001), 12, "easy")
    video = torch.from_numpy(np.concatenate([demo["frames"], demo["next_frames"][-1:]]))
    video = video.permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, 3, T, H, W)
    with torch.no_grad():
        assert label(world, demo["frames"], demo["next_frames"]).tolist() == infer_actions(world, video)[0].tolist()
    always_right = lambda frames, rng: np.full(len(frames), 7)
    side_by_side = play_levels(always_right, range(100_000, 100_003), "easy", max_steps=200)
    alone = [coinrun_episode(lambda env: (lambda f: 7), level, "easy", max_steps=200)["success"]
             for level in range(100_000, 100_003)]
    assert side_by_side.tolist() == alone


def test_agent_coinrun_command_compares_latent_oracle_and_random(tmp_path, capsys):
    """`opengenie agent coinrun` clones on the bundled world's latent labels and reports every
    agent on the same held-out levels; with N = 0 the latent agent is the random agent."""
    from opengenie.cli import main

    main(["agent", "coinrun", "--train-levels", "2", "--label-levels", "2", "--levels", "3", "--labels", "0", "20",
          "--policy-steps", "3", "--out", str(tmp_path / "c.json")])
    result = json.loads((tmp_path / "c.json").read_text())
    assert set(result["latent"]) == {"0", "20"} and result["latent"]["0"]["n"] == result["oracle"]["n"] == 3
    assert result["latent"]["0"]["rate"] == result["random"]["rate"]
    out = capsys.readouterr().out
    assert "latent, N=20" in out and "oracle" in out
