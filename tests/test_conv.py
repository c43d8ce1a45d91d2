"""MagViT-2 conv blocks and blueprint presets: shapes, causality in time, immutable presets."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from opengenie.blueprints import LATENT_ACT_DEC, LATENT_ACT_ENC, MAGVIT2_DEC_DESC, MAGVIT2_ENC_DESC
from opengenie.nn.blueprint import build
from opengenie.nn.conv import (BlurPool3d, CausalConv3d, ProjectOut, ResidualBlock, SpaceTimeDownsample,
                               SpaceTimeUpsample)

# The seed README's encoder, with its unbalanced bracket fixed.
SEED_ENC_DESC = (
    ("causal", {"in_channels": 3, "out_channels": 64, "kernel_size": 3}),
    ("residual", {"in_channels": 64, "kernel_size": 3, "downsample": (1, 2), "use_causal": True, "use_blur": True}),
    ("residual", {"in_channels": 64, "out_channels": 128}),
    ("residual", {"n_rep": 2, "in_channels": 128}),
    ("residual", {"in_channels": 128, "out_channels": 256, "kernel_size": 3, "downsample": 2, "use_causal": True}),
    ("proj_out", {"in_channels": 256, "out_channels": 18, "num_groups": 8, "kernel_size": 3}),
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def magvit2() -> dict[str, torch.nn.Module]:
    """The MagViT-2 presets built once (they hold 25M parameters between them)."""
    return {"enc": build(MAGVIT2_ENC_DESC).eval(), "dec": build(MAGVIT2_DEC_DESC).eval()}


@pytest.mark.parametrize("block, out_shape", [
    (CausalConv3d(4, 6, 3), (2, 6, 4, 8, 8)),
    (CausalConv3d(4, 6, (3, 1, 1)), (2, 6, 4, 8, 8)),
    (CausalConv3d(4, 6, 4, stride=2), (2, 6, 2, 4, 4)),
    (ResidualBlock(4), (2, 4, 4, 8, 8)),
    (ResidualBlock(4, 8, num_groups=2, use_causal=True), (2, 8, 4, 8, 8)),
    (ResidualBlock(4, downsample=(1, 2), use_blur=True), (2, 4, 4, 4, 4)),
    (ResidualBlock(4, downsample=2, use_causal=True), (2, 4, 2, 4, 4)),
    (ResidualBlock(4, downsample=(2, 4), use_blur=True, use_causal=True), (2, 4, 2, 2, 2)),
    (ResidualBlock(4, 2, upsample=(2, 2), use_causal=True), (2, 2, 8, 16, 16)),
    (ProjectOut(4, 18, num_groups=2), (2, 18, 4, 8, 8)),
    (SpaceTimeDownsample(4, 8, 3, time_factor=2, space_factor=2), (2, 8, 2, 4, 4)),
    (SpaceTimeDownsample(4, None, 3, time_factor=1, space_factor=4), (2, 4, 4, 2, 2)),
    (SpaceTimeUpsample(4, 2, 3, time_factor=2, space_factor=2), (2, 2, 8, 16, 16)),
    (SpaceTimeUpsample(4, None, 3, time_factor=1, space_factor=2), (2, 4, 4, 16, 16)),
    (BlurPool3d(2, 2), (2, 4, 2, 4, 4)),
])
def test_block_output_shapes(block: torch.nn.Module, out_shape: tuple[int, ...]) -> None:
    """Each block maps (2, 4, 4, 8, 8) to the width and (T, H, W) its factors promise."""
    assert block(torch.randn(2, 4, 4, 8, 8)).shape == out_shape


def _unchanged_before(net: torch.nn.Module, x: torch.Tensor, t: int, out_frames_before: int) -> None:
    """Perturbing input frame t leaves output frames < out_frames_before unchanged, changes a later one."""
    with torch.no_grad():
        y = net(x)
        x2 = x.clone()
        x2[:, :, t] += torch.randn_like(x2[:, :, t])
        y2 = net(x2)
    torch.testing.assert_close(y2[:, :, :out_frames_before], y[:, :, :out_frames_before], rtol=0, atol=1e-5)
    assert not torch.allclose(y2[:, :, out_frames_before:], y[:, :, out_frames_before:], atol=1e-3)


@pytest.mark.parametrize("t", [0, 3, 5])
def test_causal_conv_never_sees_later_frames(t: int) -> None:
    """CausalConv3d: output frames < t do not depend on input frame t."""
    _unchanged_before(CausalConv3d(3, 5, 3), torch.randn(1, 3, 8, 6, 6), t, t)


@pytest.mark.parametrize("t", [2, 5])
def test_time_downsampling_groups_frames_causally(t: int) -> None:
    """Time ÷2 (strided causal conv, spacetime_downsample, causal residual with blur): output
    frame i reads only input frames ≤ 2i+1, so perturbing frame t leaves outputs < t//2 alone."""
    for net in (CausalConv3d(3, 3, 3, stride=(2, 1, 1)), SpaceTimeDownsample(3, 4, 3, 2, 2),
                ResidualBlock(3, downsample=2, use_causal=True, use_blur=True)):
        _unchanged_before(net, torch.randn(1, 3, 8, 8, 8), t, t // 2)


@pytest.mark.parametrize("time_factor", [1, 2])
def test_spacetime_upsample_is_causal(time_factor: int) -> None:
    """spacetime_upsample maps frame t to frames f·t..f·t+f-1: earlier outputs ignore frame t."""
    net = SpaceTimeUpsample(4, 3, 3, time_factor=time_factor, space_factor=2)
    _unchanged_before(net, torch.randn(1, 4, 5, 4, 4), 2, 2 * time_factor)


def test_causal_residual_block_is_causal() -> None:
    """A residual block with use_causal (and per-frame GroupNorm) never reads later frames."""
    _unchanged_before(ResidualBlock(4, 8, num_groups=2, use_causal=True), torch.randn(2, 4, 6, 8, 8), 3, 3)


def test_magvit2_presets_are_causal_in_time(magvit2: dict[str, torch.nn.Module]) -> None:
    """MAGVIT2_ENC_DESC: latent frame i reads video frames ≤ 2i+1; MAGVIT2_DEC_DESC: video frame
    2i and 2i+1 read latent frames ≤ i."""
    _unchanged_before(magvit2["enc"], torch.randn(1, 3, 6, 16, 16), 3, 1)
    _unchanged_before(magvit2["dec"], torch.randn(1, 18, 3, 4, 4), 1, 2)


@pytest.mark.parametrize("desc", [SEED_ENC_DESC, MAGVIT2_ENC_DESC, MAGVIT2_DEC_DESC, LATENT_ACT_ENC, LATENT_ACT_DEC],
                         ids=["seed_enc", "magvit2_enc", "magvit2_dec", "latent_act_enc", "latent_act_dec"])
def test_building_twice_leaves_description_unchanged(desc: tuple) -> None:
    """Two builds of one description leave it equal to before and give identical parameter shapes."""
    before = copy.deepcopy(desc)
    first, second = build(desc), build(desc)
    assert desc == before
    assert [(n, p.shape) for n, p in first.named_parameters()] == \
        [(n, p.shape) for n, p in second.named_parameters()]


def test_presets_are_read_only_but_copyable() -> None:
    """A preset's kwargs refuse changes (nested ones too), survive pickling and copy to plain dicts."""
    with pytest.raises(TypeError):
        MAGVIT2_DEC_DESC[0][1]["in_channels"] = 32
    with pytest.raises(TypeError):
        LATENT_ACT_DEC[0][1]["time_attn_kw"]["key_dim"] = 4
    with pytest.raises(TypeError):
        MAGVIT2_ENC_DESC[1][1].pop("use_causal")
    assert pickle.loads(pickle.dumps(LATENT_ACT_DEC)) == LATENT_ACT_DEC
    variant = {**MAGVIT2_DEC_DESC[0][1], "in_channels": 32}
    variant["kernel_size"] = 1  # a copy is an ordinary dict
    assert MAGVIT2_DEC_DESC[0][1]["in_channels"] == 18


def test_encoder_decoder_round_trip_shapes(magvit2: dict[str, torch.nn.Module]) -> None:
    """The seed's encoder and MAGVIT2_ENC_DESC give 18 × (T/2, H/4, W/4); MAGVIT2_DEC_DESC
    maps that back to a video (B, 3, T, H, W)."""
    video = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        for encoder in (build(SEED_ENC_DESC), magvit2["enc"]):
            codes = encoder(video)
            assert codes.shape == (2, 18, 2, 4, 4)
            assert magvit2["dec"](codes).shape == video.shape


def test_latent_action_encoder_and_decoder_cancel_out() -> None:
    """LATENT_ACT_ENC halves space, the seed's LatentAction decoder doubles it back."""
    tokens = torch.randn(1, 256, 3, 4, 4)
    with torch.no_grad():
        h = build(LATENT_ACT_ENC)(tokens)
        assert h.shape == (1, 256, 3, 2, 2)
        assert build(LATENT_ACT_DEC)(h, cond=torch.randn(1, 3, 8)).shape == tokens.shape


def test_bad_inputs_raise_value_errors() -> None:
    """Wrong widths, frame counts or group numbers fail with a ValueError naming the expectation."""
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        CausalConv3d(3, 4)(torch.randn(1, 5, 2, 4, 4))
    with pytest.raises(ValueError, match="divisible"):
        SpaceTimeDownsample(3, time_factor=2)(torch.randn(1, 3, 3, 4, 4))
    with pytest.raises(ValueError, match="num_groups"):
        ResidualBlock(6, num_groups=4)
    with pytest.raises(ValueError, match="downsample"):
        ResidualBlock(4, downsample=(1, 2, 2))
