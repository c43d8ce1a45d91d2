"""World-model metrics: windowed reconstruction and actions, rollouts, ΔtPSNR, teacher forcing."""

import math
from dataclasses import replace

import pytest
import torch

from opengenie import Genie, presets
from opengenie.evaluation.controllability import action_grid, controllability, delta_t_psnr
from opengenie.evaluation.rollout import infer_actions, play, reconstruct, teacher_forced


@pytest.fixture(scope="module")
def world():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models run fastest single-threaded on a shared CPU
    torch.manual_seed(0)
    # Additive actions: an untrained world then answers a change of action from the first frame
    # on, where an untrained one reading an action token may not (its random rollouts could
    # repeat the inferred ones, which the metrics below must tell apart).
    config = presets.tiny()
    yield Genie(replace(config, dynamics=replace(config.dynamics, action_conditioning="additive"))).eval()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def video():
    torch.manual_seed(1)
    return torch.rand(2, 3, 10, 64, 64) * 2 - 1  # longer than the tiny preset's 8 frames


def test_world_reproducing_the_clip_has_infinite_psnr_and_positive_delta(world, video):
    """When the inferred-action rollout IS the real clip, its PSNR is inf at every generated frame and ΔtPSNR > 0."""
    actions = torch.randint(0, world.num_actions, (2, 5), generator=torch.Generator().manual_seed(0))
    generated = world.rollout(video[:, :, :1], actions, seed=7)  # (2, 3, 6, 64, 64)
    # The real clip: the true first frame, then exactly what the world makes from it with `actions`.
    real = torch.cat([video[:, :, :1], generated[:, :, 1:].clamp(-1, 1)], dim=2)
    ctrl = controllability(world, real, seed=7, generator=torch.Generator().manual_seed(3), actions=actions)
    assert torch.isinf(ctrl.psnr_inferred[:, 1:]).all()
    assert torch.isfinite(ctrl.psnr_random[:, 1:]).all()
    assert delta_t_psnr(ctrl.psnr_inferred, ctrl.psnr_random, t=4) == math.inf


def test_both_rollouts_share_prompt_and_seed(world, video):
    """The random-action rollout is play() from the same first frame and seed, and differs only by its actions."""
    clip = video[:, :, :6]
    ctrl = controllability(world, clip, seed=11, generator=torch.Generator().manual_seed(5))
    assert ctrl.random.shape == ctrl.actions.shape == (2, 5)
    assert torch.equal(ctrl.random_video, play(world, clip, ctrl.random, seed=11))
    assert torch.equal(ctrl.inferred_video, play(world, clip, ctrl.actions, seed=11))
    assert torch.equal(ctrl.inferred_video[:, :, 0], ctrl.random_video[:, :, 0])  # same prompt frame
    # Random actions drawn the same way again are the same actions.
    again = controllability(world, clip, seed=11, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again.random, ctrl.random) and torch.equal(again.delta, ctrl.delta)


def test_delta_t_psnr_is_the_difference_at_frame_t():
    """ΔtPSNR at t is the mean over clips of PSNR_inferred[:, t] − PSNR_random[:, t]; t must be a generated frame."""
    inferred = torch.tensor([[50.0, 30.0, 28.0, 26.0, 25.0], [50.0, 20.0, 19.0, 18.0, 17.0]], dtype=torch.float64)
    random = torch.tensor([[50.0, 29.0, 27.0, 24.0, 22.0], [50.0, 20.0, 18.0, 17.0, 16.0]], dtype=torch.float64)
    assert delta_t_psnr(inferred, random, t=4) == pytest.approx((3.0 + 1.0) / 2)
    assert delta_t_psnr(inferred, random, t=1) == pytest.approx(0.5)
    for t in (0, 5):
        with pytest.raises(ValueError, match="at least"):
            delta_t_psnr(inferred, random, t=t)


def test_windowed_actions_and_reconstruction_cover_long_clips(world, video):
    """Clips longer than max_frames get one action per transition; windows inside the limit match one pass."""
    actions = infer_actions(world, video)
    assert actions.shape == (2, 9) and actions.dtype == torch.int64
    assert int(actions.min()) >= 0 and int(actions.max()) < world.num_actions
    assert torch.equal(actions[:, :7], world.action_model.infer_actions(video[:, :, :8]))
    assert torch.equal(actions[:, 7:], world.action_model.infer_actions(video[:, :, 7:]))
    recon = reconstruct(world, video)
    assert recon.shape == video.shape
    first = world.tokenizer.decode_ids(world.tokenizer.tokenize(video[:, :, :8])[1])
    assert torch.allclose(recon[:, :, :8], first)


def test_teacher_forced_loss_is_seeded_and_bounded(world, video):
    """The teacher-forced CE/accuracy repeat exactly for the same generator seed; accuracies lie in [0, 1]."""
    actions = infer_actions(world, video)
    a = teacher_forced(world, video, actions, torch.Generator().manual_seed(0))
    b = teacher_forced(world, video, actions, torch.Generator().manual_seed(0))
    for name in ("masked_ce", "masked_accuracy", "next_frame_ce", "next_frame_accuracy"):
        assert torch.equal(getattr(a, name), getattr(b, name)) and getattr(a, name).shape == (2,)
    assert ((a.masked_accuracy >= 0) & (a.masked_accuracy <= 1)).all()
    # An untrained model is near-uniform over the 64 codes: CE close to log(64).
    assert (a.next_frame_ce - math.log(64)).abs().max() < 1.5


def test_action_grid_rows_differ_only_by_action(world, video):
    """Every latent action is rolled out from the same prompt; row a repeats action a."""
    grid = action_grid(world, video[:1, :, :1], steps=3, seed=0)
    assert grid.shape == (world.num_actions, 3, 4, 64, 64)
    assert torch.equal(grid[0, :, 0], grid[-1, :, 0])  # one prompt
    assert not torch.equal(grid[0, :, 1:], grid[1, :, 1:])  # the action changes what follows


def test_frame_t_of_a_long_rollout_equals_a_rollout_stopped_at_t(world, video):
    """ΔtPSNR at t = 4 from a long rollout equals that of a rollout given only the actions up to frame 4."""
    actions = torch.randint(0, world.num_actions, (2, 7), generator=torch.Generator().manual_seed(2))
    long = play(world, video[:, :, :8], actions, seed=5)
    short = play(world, video[:, :, :5], actions[:, :4], seed=5)
    assert torch.equal(long[:, :, :5], short)
