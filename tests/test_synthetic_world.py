"""A world whose actions are known: the latent action model finds its moves without labels,
and a dynamics model trained on the latent actions follows them."""

import functools
from dataclasses import replace

import pytest
import torch

from opengenie import DynamicsModel, LatentActionModel, presets
from opengenie.data.synthetic import MOVES, follows_actions, moving_square
from opengenie.evaluation.actions import nmi

NUM_MOVES = 5
FRAMES = 4  # per training clip


def test_moving_square_records_its_moves():
    """Each recorded move is exactly the shift between the two frames' covered cells."""
    _, moves, cells = moving_square(32, 6, num_moves=NUM_MOVES, seed=0)
    for n in range(32):
        for t in range(5):
            dy, dx = MOVES[moves[n, t]]
            ys, xs = cells[n, t].nonzero(as_tuple=True)
            ys2, xs2 = cells[n, t + 1].nonzero(as_tuple=True)
            assert torch.equal(ys + dy, ys2) and torch.equal(xs + dx, xs2)  # and never across an edge
    assert set(moves.flatten().tolist()) == set(range(NUM_MOVES))


@functools.cache
def trained_action_model(encoder: str, warmup: int = 0) -> LatentActionModel:
    """The tiny latent action model after 300 steps on moving squares, with no move labels; the
    first `warmup` of them through the continuous bottleneck before the codes are placed."""
    torch.manual_seed(0)
    model = LatentActionModel(replace(presets.tiny().action, encoder=encoder, codebook_warmup_steps=warmup))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for step in range(300):
        video, _, _ = moving_square(16, FRAMES, num_moves=NUM_MOVES, seed=1000 + step)
        loss = model(video).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.eval()


@pytest.mark.parametrize("encoder, warmup, floor", [
    ("causal", 0, 0.45),  # Genie's action model, quantised from the first step
    ("pairs", 250, 0.8),  # pairs, with the codes placed by k-means after a continuous warm-up
])
def test_latent_actions_separate_the_moves(encoder, warmup, floor):
    """On held-out clips the codes carry the moves: NMI far above an untrained model's."""
    trained = trained_action_model(encoder, warmup)
    video, moves, _ = moving_square(64, FRAMES, num_moves=NUM_MOVES, seed=1)
    torch.manual_seed(0)
    untrained = LatentActionModel(replace(presets.tiny().action, encoder=encoder)).eval()
    with torch.no_grad():
        before, after = nmi(untrained.infer_actions(video), moves), nmi(trained.infer_actions(video), moves)
    assert before < 0.15
    assert after > floor, f"NMI {after:.3f}"


def test_dynamics_follows_the_latent_actions():
    """A dynamics model trained on the world's state tokens, labelled with the latent actions,
    predicts the next frame markedly better given the code the action model assigns than given
    another code."""
    action_model = trained_action_model("pairs", 250)
    video, _, tokens = moving_square(1024, 2, num_moves=NUM_MOVES, seed=7)
    with torch.no_grad():
        codes = torch.cat([action_model.infer_actions(v) for v in video.split(128)])  # (N, 1)
    video, _, val_tokens = moving_square(256, 2, num_moves=NUM_MOVES, seed=11)
    with torch.no_grad():
        val_codes = action_model.infer_actions(video)
    torch.manual_seed(0)
    config = replace(presets.tiny().dynamics, vocab_size=2, num_actions=action_model.config.codebook_size)
    right, other = follows_actions(DynamicsModel(config), tokens, codes, val_tokens, val_codes)
    assert right > other + 0.3, f"accuracy {right:.3f} with the model's code, {other:.3f} with another"
