"""Properties of the MaskGIT dynamics model."""

import pytest
import torch

from opengenie import DynamicsModel, presets
from opengenie.nn.attention import KVCache


@pytest.fixture(scope="module", params=["additive", "token"])
def model(request):
    from dataclasses import replace

    torch.manual_seed(0)
    cfg = replace(presets.tiny().dynamics, action_conditioning=request.param)
    return DynamicsModel(cfg).eval()


def _batch(model, b=2, t=4):
    c = model.config
    return torch.randint(0, c.vocab_size, (b, t, *c.grid)), torch.randint(0, c.num_actions, (b, t))


def test_logits_shape(model):
    """forward gives logits (B, T, H', W', V)."""
    tokens, actions = _batch(model)
    assert model(tokens, actions).shape == (*tokens.shape, model.config.vocab_size)


def test_causal_in_frames_and_actions(model):
    """Logits at frame t are unchanged when a later frame or a later action changes."""
    tokens, actions = _batch(model, t=5)
    with torch.no_grad():
        base = model(tokens, actions)
        t2 = tokens.clone()
        t2[:, 3] = (t2[:, 3] + 1) % model.config.vocab_size
        a2 = actions.clone()
        a2[:, 3] = (a2[:, 3] + 1) % model.config.num_actions  # conditions frame 4
        out_t, out_a = model(t2, actions), model(tokens, a2)
    assert torch.allclose(base[:, :3], out_t[:, :3], atol=1e-5)
    assert torch.allclose(base[:, :4], out_a[:, :4], atol=1e-5)
    assert not torch.allclose(base[:, 4], out_a[:, 4], atol=1e-4)


def test_loss_targets_original_tokens(model):
    """compute_loss reports CE/accuracy on masked positions against the original tokens."""
    tokens, actions = _batch(model)
    out = model.compute_loss(tokens, actions, generator=torch.Generator().manual_seed(0))
    assert out.loss.requires_grad and 0.5 * 0.75 < out.mask_rate.item() < 1.0
    # A model that predicts the original tokens perfectly reaches accuracy 1 and CE ~ 0.
    class Oracle(DynamicsModel):
        def forward(self, inputs, actions):
            return torch.nn.functional.one_hot(tokens, self.config.vocab_size).float() * 100
    oracle = Oracle(model.config)
    res = oracle.compute_loss(tokens, actions, generator=torch.Generator().manual_seed(0))
    assert res.accuracy.item() == 1.0 and res.loss.item() < 1e-3


def test_generate_appends_one_frame_and_keeps_prompt(model):
    """generate returns (B, T+1, H', W'), the given frames unchanged, ids in the vocabulary."""
    tokens, actions = _batch(model, t=3)
    out = model.generate(tokens, actions, steps=4)
    assert out.shape == (2, 4, *model.config.grid)
    assert torch.equal(out[:, :3], tokens)
    assert (out < model.config.vocab_size).all()


def test_cached_generation_matches_uncached(model):
    """With a fixed seed, generating through the key/value cache gives the same tokens."""
    tokens, actions = _batch(model, t=3)
    uncached = model.generate(tokens, actions, steps=5, generator=torch.Generator().manual_seed(7))
    cache = KVCache()
    model.prefill(tokens, model.prompt_actions(actions, 3), cache)
    cached = model.generate(tokens, actions, steps=5, cache=cache, generator=torch.Generator().manual_seed(7))
    assert torch.equal(cached, uncached)
    assert len(cache) == 4


def test_out_of_range_action_names_valid_range(model):
    """Action ids outside the codebook give a ValueError naming the valid range."""
    tokens, actions = _batch(model)
    actions[0, 0] = model.config.num_actions
    with pytest.raises(ValueError, match="0..7"):
        model(tokens, actions)
    with pytest.raises(ValueError, match="tokens"):
        model(tokens.float(), actions)


def test_straight_through_actions_equal_ids_forward_and_carry_gradient():
    """Co-training path: one-hots of the ids give the very loss the ids give, and the loss reaches the encodings."""
    from opengenie.nn.quantize import VectorQuantizer

    torch.manual_seed(0)
    cfg = presets.tiny().dynamics
    dyn = DynamicsModel(cfg)
    vq = VectorQuantizer(cfg.num_actions, 16, l2_codes=True).eval()
    z = torch.randn(2, 3, 16, requires_grad=True)  # encodings of (B, T−1) transitions
    q = vq(z)
    onehot = vq.straight_through_onehot(q.codes, q.ids)
    assert torch.equal(onehot.detach(), torch.nn.functional.one_hot(q.ids, cfg.num_actions).float())
    tokens = torch.randint(0, cfg.vocab_size, (2, 4, *cfg.grid))
    plain = dyn.compute_loss(tokens, q.ids, generator=torch.Generator().manual_seed(1)).loss
    joint = dyn.compute_loss(tokens, q.ids, generator=torch.Generator().manual_seed(1), action_onehot=onehot).loss
    assert torch.allclose(plain, joint, atol=1e-5)
    joint.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_context_noise_corrupts_only_given_tokens_after_the_prompt():
    """context_noise swaps some unmasked tokens of frames 2..T for other codes, never the prompt or a mask."""
    torch.manual_seed(0)
    seen = {}

    class Spy(DynamicsModel):
        def forward(self, inputs, actions):
            seen["inputs"] = inputs.clone()
            return super().forward(inputs, actions)

    model = Spy(presets.tiny().dynamics)
    tokens, actions = _batch(model, b=16, t=4)
    clean = model.compute_loss(tokens, actions, generator=torch.Generator().manual_seed(0))
    plain = seen["inputs"]
    model.compute_loss(tokens, actions, generator=torch.Generator().manual_seed(0), context_noise=0.5)
    noisy = seen["inputs"]
    masked = plain == model.mask_id
    assert ((noisy == model.mask_id) == masked).all() and (noisy[:, 0] == tokens[:, 0]).all()
    changed = (noisy != plain) & ~masked
    share = changed.sum() / (~masked[:, 1:]).sum()
    assert 0.1 < share.item() < 0.4  # ~ U(0, 0.5) per example, less the draws of the same code
    assert clean.loss.isfinite()
    for bad in (1.5, -0.3):
        with pytest.raises(ValueError, match="context_noise"):
            model.compute_loss(tokens, actions, context_noise=bad)


def test_action_dropout_hides_the_actions_it_drops():
    """action_dropout 1: the loss reads no action (two action sequences give one loss, and no
    gradient reaches their one-hots); 0: the actions matter; a share between hides some frames."""
    torch.manual_seed(0)
    model = DynamicsModel(presets.tiny().dynamics)
    tokens, actions = _batch(model, b=4, t=4)
    other = (actions + 1) % model.config.num_actions

    def loss(a, dropout, **kwargs):
        return model.compute_loss(tokens, a, generator=torch.Generator().manual_seed(0), action_dropout=dropout,
                                  **kwargs).loss

    assert loss(actions, 1.0) == loss(other, 1.0)
    assert loss(actions, 0.0) != loss(other, 0.0)
    assert loss(actions, 0.5) not in (loss(actions, 0.0), loss(actions, 1.0))
    onehot = torch.nn.functional.one_hot(actions, model.config.num_actions).float().requires_grad_()
    loss(actions, 1.0, action_onehot=onehot).backward()
    assert onehot.grad is None or onehot.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="action_dropout"):
        loss(actions, 1.5)


def test_guided_logits_are_the_draws_of_one_frame_at_a_time(model):
    """`guided_logits`' one twin pass gives every frame what a guided draw of that frame alone
    reads: log p(z | a) + w (log p(z | a) − log p(z | r)), the r-run seeing the same past with
    only the frame's own incoming action changed (against no action, and against an action)."""
    tokens, actions = _batch(model, t=5)
    tokens[:, 3, :1] = model.mask_id
    for against in (None, 2):
        with torch.no_grad():
            twin = model.guided_logits(tokens, actions, 1.5, against)
            for t in range(1, 5):
                prev = model._prev_actions(actions, t + 1)
                other = prev.clone()
                other[:, t] = model.config.num_actions if against is None else against
                cond, alone = (torch.log_softmax(model._logits(tokens[:, : t + 1], p)[:, t], -1) for p in (prev, other))
                assert torch.allclose(twin[:, t], cond + 1.5 * (cond - alone), atol=1e-4)


def test_distill_loss_pulls_a_plain_draw_towards_the_guided_one():
    """distill_loss is the KL from the teacher's guided draw: 0 for its own copy at w = 0, above 0
    at w > 0; its gradient reaches the student only, and a few steps on it bring the student's
    plain draw closer to the teacher's guided one."""
    import copy

    torch.manual_seed(0)
    teacher = DynamicsModel(presets.tiny().dynamics).eval()
    student = copy.deepcopy(teacher)
    tokens, actions = _batch(teacher, b=4, t=4)

    def loss(w, seed=0):
        return student.distill_loss(teacher, tokens, actions, w, generator=torch.Generator().manual_seed(seed))

    assert loss(0.0).loss.item() == pytest.approx(0.0, abs=1e-6)
    start = loss(2.0)
    assert start.loss.item() > 1e-4 and 0 < start.accuracy <= 1
    start.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.head.weight.grad.abs().sum() > 0
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-4)
    for _ in range(20):
        optimizer.zero_grad()
        loss(2.0).loss.backward()
        optimizer.step()
    assert loss(2.0).loss.item() < 0.5 * start.loss.item()
