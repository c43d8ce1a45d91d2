"""The rollout engine (`opengenie.engine.Rollout`): every front door plays through it."""

from dataclasses import replace

import pytest
import torch

from opengenie import Genie, presets
from opengenie.engine import Rollout


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    return Genie(presets.tiny()).eval()


def test_rows_of_a_batch_play_like_separate_rollouts(world):
    """N rollouts stepping together give, row by row, the frames of N rollouts played alone
    (temperature 0, so the draws do not depend on the batch)."""
    prompt = torch.rand(3, 3, 2, 64, 64) * 2 - 1
    actions = torch.randint(0, world.num_actions, (3, 5))
    batch = world.rollout(prompt, actions, temperature=0.0, seed=0)
    alone = torch.cat([world.rollout(prompt[i:i + 1], actions[i:i + 1], temperature=0.0, seed=0) for i in range(3)])
    assert batch.shape == (3, 3, 7, 64, 64)
    torch.testing.assert_close(batch, alone, atol=1e-4, rtol=0)


def test_history_stays_bounded_past_the_window(world):
    """After many steps the rollout holds only what a later step can read."""
    state, _ = world.start(torch.zeros(1, 3, 1, 64, 64), seed=0)
    for a in range(30):
        state.step(torch.tensor([a % world.num_actions]))
    keep = max(world.config.dynamics.max_frames - 1, world.config.tokenizer.max_frames)
    assert state.tokens.shape[1] == keep and state.actions.shape[1] == keep - 1
    assert len(state.dynamics_cache) == world.config.dynamics.max_frames - 1


def test_from_tokens_plays_like_start(world):
    """The training image logger's door (prompt tokens) gives the frames of the play door (pixels)."""
    video = torch.rand(1, 3, 1, 64, 64) * 2 - 1
    played, _ = world.start(video, seed=3)
    tokens = world.tokenizer.tokenize(video)[1]
    logged, _ = Rollout.from_tokens(world.tokenizer, world.dynamics, tokens, tokens.new_zeros((1, 0)), seed=3)
    for a in (1, 4, 2):
        torch.testing.assert_close(played.step(torch.tensor([a])), logged.step(torch.tensor([a])))


def test_settings_are_the_rollouts_own(world):
    """MaskGIT settings given at the start hold for every step; a branch keeps them and its stream."""
    state, _ = world.start(torch.zeros(1, 3, 1, 64, 64), seed=0, maskgit_steps=1, temperature=0.5)
    copy = state.branch()
    assert (copy.maskgit_steps, copy.temperature) == (1, 0.5)
    torch.testing.assert_close(copy.step(torch.tensor([2])), state.step(torch.tensor([2])))


def test_rollouts_started_apart_step_together_as_they_would_alone(world):
    """`step_together`: players at different frames (one past the window, its ring wrapped), each
    on its own random stream at temperature 1, get exactly the frames stepping alone gives, and
    keep stepping alone afterwards as if they had never been batched."""
    rollouts = []
    for i, age in enumerate((0, 3, 11)):  # 11 > max_frames - 1 = 7: every slot of the ring rewritten
        state, _ = world.start(torch.rand(1, 3, 1 + i % 2, 64, 64) * 2 - 1, seed=i)
        for a in range(age):
            state.step(a % world.num_actions)
        rollouts.append(state)
    alone = [r.branch() for r in rollouts]
    for step in range(4):
        actions = [(step + i) % world.num_actions for i in range(3)]
        together = Rollout.step_together(rollouts, actions)
        for frame, solo, a in zip(together, alone, actions):
            assert torch.equal(frame, solo.step(a))
    for r, solo in zip(rollouts, alone):
        assert torch.equal(r.tokens, solo.tokens) and torch.equal(r.actions, solo.actions)
        assert torch.equal(r.step(1), solo.step(1))
    with pytest.raises(ValueError, match="action"):
        Rollout.step_together(rollouts, [0, world.num_actions, 1])
    assert all(torch.equal(r.tokens, solo.tokens) for r, solo in zip(rollouts, alone))  # refused: nothing changed
    two, _ = world.start(torch.zeros(2, 3, 1, 64, 64), seed=0)
    with pytest.raises(ValueError, match="one-row"):
        Rollout.step_together([two, rollouts[0]], [torch.tensor([0, 1]), 0])


def test_compiled_play_step_computes_the_eager_step_and_compiles_once():
    """`compile_play`: the compiled passes give the eager logits from the same cache, and
    stepping far past the window (every cache slot rewritten) compiles nothing new."""
    from torch._dynamo.utils import counters

    torch.manual_seed(1)
    world = Genie(presets.tiny()).eval()
    assert world.compile_play()
    state, _ = world.start(torch.rand(1, 3, 2, 64, 64) * 2 - 1, seed=0)
    assert state.graphs is not None
    graphs = counters["stats"]["unique_graphs"]
    for a in range(2 * world.config.dynamics.max_frames):
        frame = state.step(a % world.num_actions)
    assert counters["stats"]["unique_graphs"] == graphs
    assert frame.shape == (1, 3, 1, 64, 64) and frame.isfinite().all()
    # The Gymnasium environment plays the compiled world without compiling it again.
    from opengenie.envs import GenieEnv

    env = GenieEnv(world, compiled=True)
    env.reset(seed=0)
    env.step(2)
    assert env._state.graphs is state.graphs
    assert counters["stats"]["unique_graphs"] == graphs
    tokens = state.tokens[:, -1:].clone(memory_format=torch.contiguous_format)  # fresh strides, as a step has
    action = torch.tensor([[3]])
    with torch.no_grad():
        eager = world.dynamics._logits(tokens, action, state.dynamics_cache)
        compiled = state.graphs.frame_logits(tokens, action, state.dynamics_cache)
        torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
        one, other = state.branch().decoder_cache, state.branch().decoder_cache
        with one.appending(), other.appending():
            eager = world.tokenizer.decode_ids(tokens, cache=one)
            compiled = state.graphs.decode_ids(tokens, cache=other)
        torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
    world.dynamics._play_graphs = None  # an uncompiled world again: rollouts play eagerly
    assert world.start(torch.zeros(1, 3, 1, 64, 64), seed=0)[0].graphs is None


@pytest.mark.parametrize("against", ["mean", 1, "none"])
def test_action_guidance_plays_alike_through_every_path(against):
    """A guided world (each draw run under every latent action, or under the taken one and one
    other) gives the same frames cached and uncached, and to players stepped together as alone;
    and it draws other frames than plain."""
    torch.manual_seed(1)
    guided = Genie(presets.tiny()).eval().set_sampling(action_guidance=2.0, guidance_against=against)
    prompt = torch.rand(2, 3, 1, 64, 64) * 2 - 1
    actions = torch.randint(0, guided.num_actions, (2, 6))  # within the window, where both paths read alike
    cached = guided.rollout(prompt, actions, seed=0)
    torch.testing.assert_close(cached, guided.rollout(prompt, actions, seed=0, use_cache=False), atol=1e-4, rtol=0)
    players = [guided.start(prompt[i:i + 1], seed=i)[0] for i in range(2)]
    players[1].step(3)  # the players stand at different frames
    alone = [p.branch() for p in players]
    for step in range(3):
        together = Rollout.step_together(players, [step, 2])
        assert all(torch.equal(frame, solo.step(a)) for frame, solo, a in zip(together, alone, [step, 2]))
    plain = guided.set_sampling(action_guidance=0.0).rollout(prompt, actions, seed=0)
    assert not torch.allclose(plain, cached)


def test_guidance_weighs_what_sets_the_action_apart():
    """`guided`: with actions that agree it is the plain log-probabilities; a token only the taken
    action favours overtakes one that every action favours as the weight grows."""
    from opengenie.dynamics import guided

    same = torch.randn(1, 5, 7).repeat(3, 1, 1)  # 3 actions, 1 row, 5 tokens, 7 codes
    torch.testing.assert_close(guided(same, torch.tensor([[1]]), 4.0), torch.log_softmax(same[:1], -1))
    logits = torch.zeros(3, 1, 1, 4)
    logits[:, 0, 0, 0] = 3.0  # every action likes code 0
    logits[1, 0, 0, 1] = 2.5  # only action 1 likes code 1
    assert guided(logits, torch.tensor([[1]]), 0.0).argmax(-1).item() == 0
    assert guided(logits, torch.tensor([[1]]), 2.0).argmax(-1).item() == 1
    # Against one action r: rows [taken; r]. Taken = r reads plain; what r favours as much as the
    # taken action loses to what only the taken one favours.
    torch.testing.assert_close(guided(same[:2], torch.tensor([[1]]), 4.0, against=1), torch.log_softmax(same[:1], -1))
    pair = torch.stack([logits[1], logits[0]])  # taken action 1, against action 0
    assert guided(pair, torch.tensor([[1]]), 0.0, against=0).argmax(-1).item() == 0
    assert guided(pair, torch.tensor([[1]]), 2.0, against=0).argmax(-1).item() == 1


def test_set_sampling_changes_only_what_it_is_given():
    world = Genie(presets.tiny()).eval().set_sampling(action_guidance=1.5, temperature=0.5)
    world.set_sampling(maskgit_steps=2)
    d = world.config.dynamics
    assert (d.action_guidance, d.temperature, d.maskgit_steps) == (1.5, 0.5, 2) and world.dynamics.config == d
    with pytest.raises(ValueError, match="action_guidance"):
        world.set_sampling(action_guidance=-1.0)
    assert world.set_sampling(guidance_against="3").config.dynamics.guidance_against == 3
    assert world.set_sampling(guidance_against="mean").config.dynamics.guidance_against is None
    world.config = replace(world.config, action_labels=tuple(f"act {a}" for a in range(world.num_actions - 1)) + ("still",))
    assert world.set_sampling(guidance_against="still").config.dynamics.guidance_against == world.num_actions - 1
    with pytest.raises(ValueError, match="names no action of this world"):
        world.set_sampling(guidance_against="jump")
    assert world.set_sampling(guidance_against="none").config.dynamics.guidance_against == world.num_actions
    with pytest.raises(ValueError, match="guidance_against"):
        world.set_sampling(guidance_against=world.num_actions + 1)
