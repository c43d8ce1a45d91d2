"""FVD: the float64 Fréchet distance, and I3D features that separate real-like clips from noise."""

from __future__ import annotations

import pytest
import torch

from opengenie.features import weights
from opengenie.evaluation.fvd import (
    RunningStats,
    feature_stats,
    frechet_distance,
    frechet_distance_from_stats,
    fvd,
    trace_sqrt_product,
)
from opengenie.features.i3d import I3D, i3d_features, load_i3d


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5  # correlated dimensions
    return torch.randn(n, d, generator=g) @ mix + shift


def test_distance_of_diagonal_gaussians_has_closed_form() -> None:
    """For diagonal covariances FD = |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2."""
    sa, sb = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([3.0, 1.0, 0.5])
    ma, mb = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    expected = ((ma - mb) ** 2).sum() + ((sa - sb) ** 2).sum()
    got = frechet_distance_from_stats(ma, torch.diag(sa**2), mb, torch.diag(sb**2))
    assert got == pytest.approx(expected.item(), rel=1e-12)


def test_trace_sqrt_matches_scipy_sqrtm() -> None:
    """tr((S_a S_b)^(1/2)) by eigen-decomposition equals scipy.linalg.sqrtm for non-commuting S_a, S_b."""
    linalg = pytest.importorskip("scipy.linalg")
    _, ca = feature_stats(_features(200, 20, seed=0))
    _, cb = feature_stats(_features(200, 20, seed=1))
    reference = linalg.sqrtm(ca.numpy() @ cb.numpy()).trace().real
    assert trace_sqrt_product(ca, cb) == pytest.approx(reference, rel=1e-9)


@pytest.mark.parametrize("n, d", [(600, 16), (30, 400)])
def test_distance_is_symmetric_and_zero_on_itself(n: int, d: int) -> None:
    """FD(a, b) = FD(b, a); FD(a, a) = 0, also with fewer samples than dimensions (rank-deficient)."""
    a, b = _features(n, d, seed=0), _features(n, d, seed=1, shift=0.3)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(a, b) > 0
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9 * frechet_distance(a, b))


def test_distance_is_computed_in_float64() -> None:
    """A 1e-2 mean shift on features offset by 1e3 is recovered to 1e-7 (float32 traces lose it)."""
    a = _features(500, 64, seed=0).double() + 1e3
    shift = torch.full((64,), (1e-2 / 64) ** 0.5, dtype=torch.float64)
    assert frechet_distance(a, a + shift) == pytest.approx(1e-2, abs=1e-7)
    mean, cov = feature_stats(a.float())
    assert mean.dtype == cov.dtype == torch.float64


def test_running_stats_equal_batch_stats() -> None:
    """Accumulating features in batches gives the same mean and covariance as all at once."""
    feats = _features(50, 8, seed=3, shift=2.0)
    running = RunningStats(dim=8)
    for chunk in feats.split(7):
        running.update(chunk)
    for got, expected in zip(running.stats(), feature_stats(feats)):
        torch.testing.assert_close(got, expected)


def test_too_few_clips_are_rejected() -> None:
    """A covariance needs two clips; the message says how many there are."""
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(torch.zeros(1, 400), torch.zeros(5, 400))


def _moving_blobs(n: int, t: int, seed: int, size: int = 32) -> torch.Tensor:
    """Clips (n, 3, t, size, size) in [-1, 1] of a coloured Gaussian blob drifting on a dark background."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    clips = []
    for _ in range(n):
        colour = torch.rand(3, 1, 1, generator=g) * 2 - 1
        cx, cy = torch.rand(2, generator=g) - 0.5
        vx, vy = (torch.rand(2, generator=g) - 0.5) * 0.2
        frames = [
            -0.8 + torch.exp(-((xx - cx - vx * k) ** 2 + (yy - cy - vy * k) ** 2) / 0.1) * (colour + 0.8)
            for k in range(t)
        ]
        clips.append(torch.stack(frames, dim=1))  # (3, t, size, size)
    return torch.stack(clips)


@pytest.fixture(scope="module")
def i3d() -> I3D:
    weights.fetch(["i3d"])
    return load_i3d()


def test_fvd_separates_real_splits_from_noise(i3d: I3D) -> None:
    """FVD between two splits of the same clip distribution is far below FVD to uniform noise."""
    # 3 clips of 9 frames (the fewest I3D takes) keep this fast on a CPU; the gap is still ~50x.
    real_a, real_b = _moving_blobs(3, 9, seed=1), _moving_blobs(3, 9, seed=2)
    noise = torch.rand(3, 3, 9, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    features = [i3d_features(i3d, clips, batch_size=3) for clips in (real_a, real_b, noise)]
    same = frechet_distance(features[0], features[1])
    apart = frechet_distance(features[0], features[2])
    assert 0 < same and 10 * same < apart
    assert frechet_distance(features[2], features[0]) == pytest.approx(apart, rel=1e-9)


@pytest.mark.slow
def test_fvd_of_16_frame_clips(i3d: I3D) -> None:
    """fvd() on the paper's 16-frame clips: real splits close, noise far."""
    real_a, real_b = _moving_blobs(8, 16, seed=1), _moving_blobs(8, 16, seed=2)
    noise = torch.rand(8, 3, 16, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    assert 10 * fvd(real_a, real_b, i3d) < fvd(real_a, noise, i3d)
