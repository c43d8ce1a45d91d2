"""The I3D port: TF "SAME" padding, and its first layers against a direct numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from opengenie.features import weights
from opengenie.features.i3d import I3D, i3d_features, load_i3d, pad_same, preprocess


@pytest.fixture(scope="session")
def i3d() -> I3D:
    weights.fetch(["i3d"])
    return load_i3d()


@pytest.fixture(scope="session")
def raw() -> dict[str, np.ndarray]:
    weights.fetch(["i3d"])
    return {k: v.double().numpy() for k, v in weights.load_arrays("i3d").items()}


def _video(b: int, t: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random clips (B, 3, T, size, size) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 3, t, 6, 6, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(t, size, size), mode="trilinear", align_corners=False)


# --- a direct reference, written from the checkpoint's conventions (flax: kD, kH, kW, in, out) ---

def _np_pad_same(x: np.ndarray, kernel: tuple, stride: tuple, value: float) -> np.ndarray:
    pads = [(0, 0)]
    for n, k, s in zip(x.shape[1:], kernel, stride):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads, constant_values=value)


def _np_unit(x: np.ndarray, raw: dict[str, np.ndarray], scope: str, stride: tuple = (1, 1, 1)) -> np.ndarray:
    """conv3d SAME -> (x - mean) / sqrt(var + 1e-3) + beta -> relu, on x (C, T, H, W)."""
    kernel = raw[f"params/{scope}/Conv_0/kernel"]
    windows = sliding_window_view(_np_pad_same(x, kernel.shape[:3], stride, 0.0), kernel.shape[:3], axis=(1, 2, 3))
    windows = windows[:, :: stride[0], :: stride[1], :: stride[2]]
    y = np.einsum("cdhwijk,ijkco->odhw", windows, kernel)
    mean, var = (raw[f"batch_stats/{scope}/BatchNorm_0/{s}"].reshape(-1, 1, 1, 1) for s in ("mean", "var"))
    beta = raw[f"params/{scope}/BatchNorm_0/bias"].reshape(-1, 1, 1, 1)
    return np.maximum((y - mean) / np.sqrt(var + 1e-3) + beta, 0.0)


def _np_maxpool(x: np.ndarray, kernel: tuple, stride: tuple) -> np.ndarray:
    windows = sliding_window_view(_np_pad_same(x, kernel, stride, -np.inf), kernel, axis=(1, 2, 3))
    return windows[:, :: stride[0], :: stride[1], :: stride[2]].max(axis=(4, 5, 6))


def _np_mixed(x: np.ndarray, raw: dict[str, np.ndarray], scope: str) -> np.ndarray:
    b0 = _np_unit(x, raw, f"{scope}/Branch_0/Conv3d_0a_1x1")
    b1 = _np_unit(_np_unit(x, raw, f"{scope}/Branch_1/Conv3d_0a_1x1"), raw, f"{scope}/Branch_1/Conv3d_0b_3x3")
    b2 = _np_unit(_np_unit(x, raw, f"{scope}/Branch_2/Conv3d_0a_1x1"), raw, f"{scope}/Branch_2/Conv3d_0b_3x3")
    b3 = _np_unit(_np_maxpool(x, (3, 3, 3), (1, 1, 1)), raw, f"{scope}/Branch_3/Conv3d_0b_1x1")
    return np.concatenate([b0, b1, b2, b3])


def test_pad_same_matches_tensorflow() -> None:
    """Output length is ceil(n / stride); an odd total padding puts the extra element after."""
    x = torch.zeros(1, 1, 16, 224, 223)
    padded = pad_same(x, (7, 7, 7), (2, 2, 2))
    # T: 16 -> 8 outputs, total 7 - 2 = 5 -> (2, 3); H: 224 -> (2, 3); W: 223 -> 112, total 6 -> (3, 3)
    assert padded.shape == (1, 1, 21, 229, 229)
    marked = pad_same(torch.ones(1, 1, 4, 4, 4), (1, 2, 2), (1, 2, 2), value=-1.0)
    assert marked.shape == (1, 1, 4, 4, 4)  # divisible, kernel == stride: no padding
    marked = pad_same(torch.ones(1, 1, 1, 3, 3), (1, 2, 2), (1, 2, 2), value=-1.0)
    assert marked[0, 0, 0, -1].eq(-1).all() and marked[0, 0, 0, 0].eq(1).any()  # padded after only


def test_stem_matches_direct_computation(i3d: I3D, raw: dict[str, np.ndarray]) -> None:
    """Conv3d_1a (7x7x7, stride 2) + BN + ReLU + MaxPool3d_2a equals a numpy computation from the raw arrays."""
    video = _video(1, 9, 32)
    expected = _np_maxpool(_np_unit(video[0].double().numpy(), raw, "Conv3d_1a_7x7", (2, 2, 2)), (1, 3, 3), (1, 2, 2))
    with torch.inference_mode():
        got = i3d(video, final_endpoint="MaxPool3d_2a_3x3")[0].double().numpy()
    assert got.shape == expected.shape == (64, 5, 8, 8)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_first_inception_module_matches_direct_computation(i3d: I3D, raw: dict[str, np.ndarray]) -> None:
    """Through Mixed_3b (branch order, 3x3x3 convs, the -inf padded branch pool) the port equals numpy."""
    video = _video(1, 9, 32, seed=1)
    x = _np_maxpool(_np_unit(video[0].double().numpy(), raw, "Conv3d_1a_7x7", (2, 2, 2)), (1, 3, 3), (1, 2, 2))
    x = _np_unit(_np_unit(x, raw, "Conv3d_2b_1x1"), raw, "Conv3d_2c_3x3")
    expected = _np_mixed(_np_maxpool(x, (1, 3, 3), (1, 2, 2)), raw, "Mixed_3b")
    with torch.inference_mode():
        got = i3d(video, final_endpoint="Mixed_3b")[0].double().numpy()
    assert got.shape == expected.shape == (256, 5, 4, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_logits_of_a_16_frame_clip(i3d: I3D) -> None:
    """A 16-frame clip, resized from 32x32 to 224x224 by i3d_features, gives 400 finite logits."""
    assert preprocess(_video(1, 2, 32)).shape == (1, 3, 2, 224, 224)
    features = i3d_features(i3d, _video(1, 16, 32))
    assert features.shape == (1, 400) and features.dtype == torch.float32
    assert torch.isfinite(features).all()


def test_too_short_clips_are_rejected(i3d: I3D) -> None:
    """The logits need >= 9 frames at 224x224; the message says so."""
    with pytest.raises(ValueError, match="at least 9 frames"):
        i3d(torch.zeros(1, 3, 8, 224, 224))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        preprocess(torch.zeros(1, 1, 16, 64, 64))


def test_state_dict_is_complete() -> None:
    """Every parameter and buffer of the port has an array in the checkpoint, and no array is left over."""
    from opengenie.features.i3d import state_dict_from_checkpoint

    weights.fetch(["i3d"])
    state = state_dict_from_checkpoint(weights.load_arrays("i3d"))
    assert set(state) == set(I3D().state_dict())


@pytest.mark.parametrize(
    "kernel, stride, shape",
    [((1, 3, 3), (1, 2, 2), (1, 2, 3, 15, 14)), ((3, 3, 3), (2, 2, 2), (1, 2, 7, 9, 9)),
     ((2, 2, 2), (2, 2, 2), (1, 2, 3, 7, 7)), ((3, 3, 3), (1, 1, 1), (1, 2, 4, 5, 5))],
)
def test_separable_max_pool_equals_max_pool3d(kernel: tuple, stride: tuple, shape: tuple) -> None:
    """The sliced, one-axis-at-a-time max-pool equals F.max_pool3d over the -inf "SAME" padding."""
    from opengenie.features.i3d import MaxPoolSame

    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.max_pool3d(pad_same(x, kernel, stride, float("-inf")), kernel, stride)
    torch.testing.assert_close(MaxPoolSame(kernel, stride)(x), expected, rtol=0, atol=0)
