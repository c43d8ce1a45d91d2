"""Evaluation on constructed cases whose answer is known: a world that copies its prompt, a world
that pans right on one action, camera motion of shifted real frames, NMI of independent labels,
bootstrap intervals, and the real game replayed to a recorded state."""

import numpy as np
import pytest
import torch

from opengenie import Genie, presets
from opengenie.data import EpisodeClipDataset, generate_coinrun, load_episode
from opengenie.evaluation.actions import nmi_with_chance
from opengenie.evaluation.evaluate import evaluate_world
from opengenie.evaluation.motion import camera_shift
from opengenie.evaluation.playability import coinrun_reference, held_motion, hold_actions, summarise
from opengenie.evaluation.uncertainty import bootstrap_ci, summary


class CopyWorld(Genie):
    """Ignores every action: each generated frame is the reconstructed prompt again."""

    def rollout(self, prompt, actions, maskgit_steps=None, temperature=None, seed=None, use_cache=True):
        _, recon = self.start(prompt, seed, use_cache=False)
        return torch.cat([recon, recon[:, :, -1:].expand(-1, -1, actions.shape[1], -1, -1)], dim=2)


class PanWorld(Genie):
    """Action 1 pans the camera 2 px right per step (the scene moves left); every other action keeps the frame."""

    def rollout(self, prompt, actions, maskgit_steps=None, temperature=None, seed=None, use_cache=True):
        frames = [prompt[:, :, -1:]]
        for i in range(actions.shape[1]):
            shift = [-2 if int(a) == 1 else 0 for a in actions[:, i]]
            frames.append(torch.stack([torch.roll(f, s, dims=-1) for f, s in zip(frames[-1], shift)]))
        return torch.cat(frames, dim=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def coinrun(tmp_path_factory):
    out = tmp_path_factory.mktemp("coinrun")
    generate_coinrun(out, levels=3, steps_per_level=48, start_level=51, policy="explore", progress=False)
    return out


@pytest.fixture(scope="module")
def clips(coinrun):
    ds = EpisodeClipDataset(coinrun, seq_len=16, split=None)
    return [ds[i] for i in range(4)]


def test_copy_world_scores_exactly_the_copy_baseline(clips):
    """A world that copies its prompt has inferred − copy = copy − random = 0 at every frame, and is called neither better nor worse."""
    torch.manual_seed(0)
    m, _, per_clip = evaluate_world(CopyWorld(presets.tiny()).eval(), clips, batch_size=2, skip=("fvd", "lpips"),
                                    progress=False)
    per = m["controllability"]["per_frame"]
    assert per["inferred_minus_copy"]["mean"] == [0.0] * 15 and per["copy_minus_random"]["mean"] == [0.0] * 15
    assert m["verdict"]["inferred_beats_copy_at"] == [] and m["verdict"]["inferred_loses_to_copy_at"] == []
    assert per_clip["inferred_psnr"] == per_clip["copy_psnr"]


def test_panning_world_is_reported_walking_right(clips):
    """A world that shifts the frame +2 px per step on action 1 is measured at dx = 2 px/step, labelled "walk right"; the others stand still."""
    world = PanWorld(presets.tiny()).eval()
    prompts = torch.stack([c["video"][:, :1] for c in clips])  # (4, C, 1, H, W)
    held = held_motion(hold_actions(world, prompts, steps=5, batch_size=8))
    rows = summarise(held, broken_below=18.0, names=range(world.num_actions))
    assert rows[1]["dx_per_step"] == pytest.approx(2.0, abs=0.05) and abs(rows[1]["dy_per_step"]) < 0.05
    assert rows[1]["label"] == "walk right" and rows[1]["consistency"] == 1.0 and rows[1]["broken"] == 0.0
    assert all(r["label"] == "still" and r["dx_per_step"] == 0.0 for i, r in enumerate(rows) if i != 1)


def test_camera_shift_of_shifted_real_frames(coinrun):
    """Integer shifts of a real frame are found exactly, with the camera's signs; a half-pixel blend lands between."""
    frame = torch.from_numpy(load_episode(next(coinrun.glob("*.npz")))["frames"][10])  # (64, 64, 3) uint8
    for sx, sy in [(3, 0), (-2, 0), (0, -4), (1, 2)]:
        moved = torch.roll(frame, (-sy, -sx), dims=(0, 1))  # camera right by sx: the scene moves left
        s = camera_shift(frame[None], moved[None])
        assert (float(s.dx), float(s.dy)) == (sx, sy) and float(s.aligned_psnr) > 40
    half = ((frame.float() + torch.roll(frame, -1, dims=1).float()) / 2).round().to(torch.uint8)
    dx = float(camera_shift(frame[None], half[None]).dx)
    assert 0.25 < dx < 0.75


def test_shift_error_surface_equals_the_direct_sum(coinrun):
    """The FFT error surface of camera_shift equals the MSE of every shifted crop summed directly."""
    from opengenie.evaluation.motion import _as_float, _error_surface

    frames = _as_float(load_episode(next(coinrun.glob("*.npz")))["frames"][:9])  # (9, 3, 64, 64)
    x, y, r = frames[:-1].double(), frames[1:].double(), 5
    h, w = x.shape[-2:]
    target = y[..., r:h - r, r:w - r]
    direct = torch.stack([torch.stack([((x[..., r + sy:h - r + sy, r + sx:w - r + sx] - target) ** 2).mean((1, 2, 3))
                                       for sx in range(-r, r + 1)]) for sy in range(-r, r + 1)]).permute(2, 0, 1)
    torch.testing.assert_close(_error_surface(frames[:-1], frames[1:], r), direct, rtol=0, atol=1e-12)


def test_nmi_of_independent_labels_is_near_chance():
    """Independent labels score within a few chance standard deviations of the shuffled value; identical ones score 1."""
    rng = np.random.default_rng(0)
    latent, true = rng.integers(0, 8, 2000), rng.integers(0, 3, 2000)
    x = nmi_with_chance(latent, true)
    assert x["nmi"] > 0 and abs(x["excess"]) < 4 * x["chance_std"] + 1e-3
    same = nmi_with_chance(true, true)
    assert same["nmi"] == pytest.approx(1.0) and same["chance"] < 0.01
    with pytest.raises(ValueError, match="non-negative"):
        nmi_with_chance(np.array([0, -1]), np.array([0, 1]))


def test_bootstrap_interval():
    """The interval holds the mean, narrows with more clips, repeats for a seed, and is a point for one value."""
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=20), rng.normal(size=2000)
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi and bootstrap_ci(small) == (lo, hi)
    lo2, hi2 = bootstrap_ci(large)
    assert hi2 - lo2 < (hi - lo) / 4
    assert summary([3.0])["ci95"] == [3.0, 3.0]
    lows, highs = bootstrap_ci(rng.normal(size=(50, 3)))
    assert len(lows) == len(highs) == 3


def test_real_game_replays_to_the_recorded_state(coinrun):
    """Replaying a recorded CoinRun episode reaches its frame exactly; from there RIGHT pans right of LEFT."""
    path = sorted(coinrun.glob("*.npz"))[0]
    ep = load_episode(path)
    states = [{"level_seed": int(ep["level_seed"]), "start": start, "actions": ep["actions"], "difficulty": "hard",
               "seed": 0} for start in (0, 30)]
    frames, _ = coinrun_reference(states, steps=12, keys={"RIGHT": 7, "LEFT": 1})  # (2, 2, 13, 64, 64, 3)
    assert (frames[0, 0, 0].numpy() == ep["frames"][0]).all() and (frames[1, 1, 0].numpy() == ep["frames"][30]).all()
    held = held_motion(frames)
    assert held.dx[0].sum(-1).mean() > held.dx[1].sum(-1).mean() + 4  # px over 12 steps
