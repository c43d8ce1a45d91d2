"""Properties of the latent action model."""

from dataclasses import replace

import pytest
import torch

from opengenie import LatentActionModel, presets


@pytest.fixture(scope="module", params=["causal", "pairs"])
def model(request):
    torch.manual_seed(0)
    return LatentActionModel(replace(presets.tiny().action, encoder=request.param)).eval()


def test_shapes(model):
    """encode gives ids (B, T-1) and embeddings; forward gives recon shaped like the input."""
    video = torch.rand(2, 3, 5, 64, 64) * 2 - 1
    (ids, emb), quant_loss = model.encode(video)
    assert ids.shape == (2, 4) and emb.shape == (2, 4, model.config.code_dim)
    assert ((0 <= ids) & (ids < model.config.codebook_size)).all()
    recon, loss, parts = model(video)
    assert recon.shape == video.shape and loss.dim() == 0
    assert torch.equal(recon[:, :, 0], video[:, :, 0])  # the first frame is passed through
    assert torch.equal(model.infer_actions(video), ids)


def test_action_depends_only_on_frames_up_to_next(model):
    """a_t is a function of x_1..x_t+1: changing a later frame leaves it unchanged."""
    video = torch.rand(1, 3, 5, 64, 64) * 2 - 1
    emb = model.encode(video).actions.embeddings
    video2 = video.clone()
    video2[:, :, 3] = -video2[:, :, 3]
    emb2 = model.encode(video2).actions.embeddings
    assert torch.allclose(emb[:, :2], emb2[:, :2], atol=1e-5)


def test_decoder_cannot_see_the_frame_it_predicts(model):
    """Altering x_t+1 with the action held fixed leaves the prediction of x_t+1 unchanged."""
    video = torch.rand(1, 3, 5, 64, 64) * 2 - 1
    with torch.no_grad():
        feats = model._features(video)
        actions = model.encode(video).actions
        pred = model.decode(feats[:, :, :-1], actions.embeddings, video[:, :, :-1])  # x_2..x_5
        video2 = video.clone()
        video2[:, :, 3] = torch.rand_like(video2[:, :, 3]) * 2 - 1  # x_4 (index 3)
        pred2 = model.decode(model._features(video2)[:, :, :-1], actions.embeddings, video2[:, :, :-1])
    assert torch.allclose(pred[:, :, 2], pred2[:, :, 2], atol=1e-5)  # prediction of index 3
    assert not torch.allclose(pred[:, :, 3], pred2[:, :, 3], atol=1e-3)  # later ones may change


def test_single_frame_is_rejected(model):
    """Actions need at least two frames."""
    with pytest.raises(ValueError, match="at least 2 frames"):
        model.encode(torch.rand(1, 3, 1, 64, 64))


def test_unknown_encoder_is_rejected():
    with pytest.raises(ValueError, match="'causal' or 'pairs'"):
        replace(presets.tiny().action, encoder="both")
