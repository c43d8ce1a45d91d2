"""The seed README's examples run as written, with `genie` replaced by `opengenie`
(fixing only their slips: the unbalanced bracket in `enc_desc`, `new_tokes`, `num_frame`, and
the `import torch` the LatentAction example leaves out)."""

import pytest
import torch

from opengenie import MAGVIT2_DEC_DESC, MAGVIT2_ENC_DESC, VideoTokenizer

SEED_ENC_DESC = (
    ('causal', {'in_channels': 3, 'out_channels': 64, 'kernel_size': 3}),
    ('residual', {'in_channels': 64, 'kernel_size': 3, 'downsample': (1, 2), 'use_causal': True, 'use_blur': True}),
    ('residual', {'in_channels': 64, 'out_channels': 128}),
    ('residual', {'n_rep': 2, 'in_channels': 128}),
    ('residual', {'in_channels': 128, 'out_channels': 256, 'kernel_size': 3, 'downsample': 2, 'use_causal': True}),
    ('proj_out', {'in_channels': 256, 'out_channels': 18, 'num_groups': 8, 'kernel_size': 3}),
)

DISC_KWARGS = dict(inp_size=(64, 64), model_dim=64, dim_mults=(1, 2, 4), down_step=(None, 2, 2), inp_channels=3,
                   kernel_size=3, num_groups=8, act_fn='leaky', use_blur=True, use_attn=True, num_heads=4, dim_head=32)


def _seed_tokenizer(**overrides):
    kwargs = dict(
        enc_desc=SEED_ENC_DESC, dec_desc=MAGVIT2_DEC_DESC, disc_kwargs=DISC_KWARGS,
        d_codebook=18, n_codebook=1, lfq_bias=True, lfq_frac_sample=1., lfq_commit_weight=0.25,
        lfq_entropy_weight=0.1, lfq_diversity_weight=1., perceptual_model='vgg16',
        perc_feat_layers=('features.6', 'features.13', 'features.18', 'features.25'),
        gan_discriminate='frames', gan_frames_per_batch=4, gan_loss_weight=1., perc_loss_weight=1.,
        quant_loss_weight=1.,
    )
    kwargs.update(overrides)
    return VideoTokenizer(**kwargs)


@pytest.fixture(scope="module")
def vgg_weights():
    from opengenie.features.weights import fetch

    fetch(names=("vgg16",))


def test_seed_tokenizer_example_small_input(vgg_weights):
    """The seed tokenizer (LFQ, perceptual and GAN losses) tokenizes, decodes and trains on a small clip."""
    tokenizer = _seed_tokenizer()
    mock_video = torch.randn(1, 3, 2, 64, 64)
    tokens, idxs = tokenizer.tokenize(mock_video)
    assert tokens.shape == (1, 18, 1, 16, 16)  # (batch, d_codebook, T // 2, H // 4, W // 4)
    rec_video = tokenizer.decode(tokens)
    assert rec_video.shape == mock_video.shape
    loss, aux_losses = tokenizer(mock_video)
    loss.backward()
    assert aux_losses.perceptual > 0 and aux_losses.gan != 0
    assert tokenizer.discriminator_loss(mock_video).requires_grad


def test_seed_gan_discriminate_takes_frames_only():
    """The seed's `gan_discriminate='frames'` is accepted (the seed example above passes it); a
    choice the discriminator does not implement is refused, not silently ignored."""
    with pytest.raises(ValueError, match="gan_discriminate='video' is not supported"):
        _seed_tokenizer(gan_discriminate="video")


def test_magvit2_presets_pair_up():
    """MAGVIT2_ENC_DESC + MAGVIT2_DEC_DESC give back the input's shape; switches turn losses off."""
    tokenizer = VideoTokenizer(enc_desc=MAGVIT2_ENC_DESC, dec_desc=MAGVIT2_DEC_DESC, d_codebook=18,
                               perceptual_model=None, gan_loss_weight=0)
    assert tokenizer.criterion is None
    video = torch.randn(1, 3, 4, 32, 32)
    assert tokenizer.decode(tokenizer.tokenize(video)[0]).shape == video.shape
    loss, parts = tokenizer(video)
    assert parts.perceptual == 0 and parts.gan == 0


@pytest.mark.slow
def test_seed_tokenizer_example_as_written(vgg_weights):
    """The seed tokenizer example at its own sizes (batch 4 × 16 frames × 64²)."""
    tokenizer = _seed_tokenizer()
    batch_size, num_channels, num_frames, img_h, img_w = 4, 3, 16, 64, 64
    mock_video = torch.randn(batch_size, num_channels, num_frames, img_h, img_w)
    tokens, idxs = tokenizer.tokenize(mock_video)
    rec_video = tokenizer.decode(tokens)
    assert rec_video.shape == mock_video.shape
    loss, aux_losses = tokenizer(mock_video)
    loss.backward()


def test_seed_latent_action_example():
    """The seed LatentAction example runs as written and its assertion holds."""
    from opengenie import LATENT_ACT_ENC, LatentAction

    model = LatentAction(
        enc_desc=LATENT_ACT_ENC,
        dec_desc=(
            ('space-time_attn', {'n_rep': 2, 'n_embd': 256, 'n_head': 4, 'd_head': 16, 'has_ext': True,
                                 'time_attn_kw': {'key_dim': 8}}),
            ('spacetime_upsample', {'in_channels': 256, 'kernel_size': 3, 'time_factor': 1, 'space_factor': 2}),
            ('space-time_attn', {'n_rep': 2, 'n_embd': 256, 'n_head': 4, 'd_head': 16, 'has_ext': True,
                                 'time_attn_kw': {'key_dim': 8}}),
        ),
        d_codebook=8, inp_channels=3, inp_shape=(64, 64), n_embd=256,
    )
    batch_size, video_len, frame_dim = 2, 16, (64, 64)
    video = torch.randn(batch_size, 3, video_len, *frame_dim)
    (actions, encoded), quant_loss = model.encode(video)
    recon, loss, aux_losses = model(video)
    assert recon.shape == (batch_size, 3, video_len, *frame_dim)
    loss.backward()
    assert actions.shape == (batch_size, video_len - 1) and actions.max() < 8


@pytest.mark.parametrize("img_size", [8, pytest.param(32, marks=pytest.mark.slow)])
def test_seed_dynamics_example(img_size):
    """The seed DynamicsModel example runs (at its own 32×32 grid when slow tests run) and its assertion holds."""
    from opengenie import DynamicsModel

    blueprint = (('space-time_attn', {'n_rep': 4, 'n_embd': 256, 'n_head': 4, 'd_head': 16, 'transpose': False}),)
    tok_codebook, act_codebook = 16, 4
    dynamics = DynamicsModel(desc=blueprint, tok_vocab=tok_codebook, act_vocab=act_codebook, embed_dim=256)
    batch_size, num_frames = 2, 16
    mock_tokens = torch.randint(0, tok_codebook, (batch_size, num_frames, img_size, img_size))
    mock_act_id = torch.randint(0, act_codebook, (batch_size, num_frames))
    loss = dynamics.compute_loss(mock_tokens, mock_act_id)
    new_tokens = dynamics.generate(mock_tokens, mock_act_id, steps=5)
    assert new_tokens.shape == (batch_size, num_frames + 1, img_size, img_size)
    loss.loss.backward()
