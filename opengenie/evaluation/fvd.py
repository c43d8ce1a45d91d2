"""Fréchet Video Distance (Unterthiner et al., 2018): how far generated clips are from real ones.

Each clip becomes a 400-d I3D feature (Kinetics logits averaged over time, see `i3d.py`); each
set of features is summarised by a Gaussian (mean, covariance), and FVD is the Fréchet distance
between the two Gaussians:

    FVD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))

Lower is better; Genie reports 81.4 for its ST-ViViT tokenizer. All statistics are float64:
the trace terms are large and nearly cancel, so float32 loses the digits that matter.
"""

from __future__ import annotations

import numpy as np
import torch

from opengenie.features.i3d import I3D, i3d_features, load_i3d


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix via its eigen-decomposition."""
    eigvals, eigvecs = np.linalg.eigh(matrix)
    # Rounding leaves tiny negative eigenvalues on rank-deficient covariances (fewer clips
    # than feature dimensions); they are zero in exact arithmetic.
    return (eigvecs * np.sqrt(eigvals.clip(min=0))) @ eigvecs.T


def trace_sqrt_product(cov_a: torch.Tensor, cov_b: torch.Tensor) -> float:
    """tr((S_a S_b)^(1/2)) for PSD S_a, S_b, in float64.

    S_a S_b is not symmetric, but it is similar to S_a^(1/2) S_b S_a^(1/2), which is symmetric
    PSD and has the same eigenvalues: its trace root is a stable `eigvalsh`, with no complex
    parts to discard as a general `sqrtm` would leave. The (D, D) matrices are small, so this
    runs in numpy on the CPU, whose LAPACK stays fast when the CPU is oversubscribed.
    """
    a, b = (t.detach().cpu().double().numpy() for t in (cov_a, cov_b))
    root_a = _psd_sqrt(a)
    middle = root_a @ b @ root_a
    middle = (middle + middle.T) / 2  # symmetric up to rounding; make it exactly so
    return float(np.sqrt(np.linalg.eigvalsh(middle).clip(min=0)).sum())


def frechet_distance_from_stats(
    mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor, cov_b: torch.Tensor
) -> float:
    """Fréchet distance between N(mean_a, cov_a) and N(mean_b, cov_b); means (D,), covariances (D, D)."""
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (mean_a.numel(),) * 2:
        raise ValueError(
            f"mismatched statistics: means {tuple(mean_a.shape)}, {tuple(mean_b.shape)}; "
            f"covariances {tuple(cov_a.shape)}, {tuple(cov_b.shape)}"
        )
    mean_a, cov_a, mean_b, cov_b = (t.detach().cpu().double() for t in (mean_a, cov_a, mean_b, cov_b))
    distance = (
        (mean_a - mean_b).pow(2).sum().item()
        + torch.trace(cov_a).item()
        + torch.trace(cov_b).item()
        - 2 * trace_sqrt_product(cov_a, cov_b)
    )
    # A distance is >= 0; identical sets can round to -1e-12.
    return max(distance, 0.0)


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D), float64, of features (N, D), N >= 2."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"expected features (N, D) with N >= 2 clips, got {tuple(features.shape)}")
    f = features.double()
    return f.mean(dim=0), torch.cov(f.T)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between two feature sets (N, D) and (M, D), computed in float64.

    Symmetric in its arguments and 0 for identical sets. With fewer samples than dimensions
    the covariances are rank-deficient; the result is still defined but biased upwards, so
    compare FVDs only at equal sample counts (the FVD paper uses 256 or more clips).
    """
    if features_a.shape[1:] != features_b.shape[1:]:
        raise ValueError(f"feature sets differ in dimension: {tuple(features_a.shape)} vs {tuple(features_b.shape)}")
    return frechet_distance_from_stats(*feature_stats(features_a), *feature_stats(features_b))


class RunningStats:
    """Mean and covariance of features arriving in batches, for sets too large to hold at once."""

    def __init__(self, dim: int = 400) -> None:
        self.count = 0
        self.total = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def update(self, features: torch.Tensor) -> None:
        """Add a batch of features (N, D)."""
        f = features.detach().double().cpu()
        self.count += f.shape[0]
        self.total += f.sum(dim=0)
        self.outer += f.T @ f

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (D,) and unbiased covariance (D, D), float64."""
        if self.count < 2:
            raise ValueError(f"need features of at least 2 clips, have {self.count}")
        mean = self.total / self.count
        cov = (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)
        return mean, cov


def fvd(
    real: torch.Tensor, generated: torch.Tensor, model: I3D | None = None, batch_size: int = 8
) -> float:
    """FVD between two sets of clips.

    Args:
        real, generated: (N, 3, T, H, W) float in [-1, 1], T >= 9 (16 in the FVD paper); frames
            are resized to 224x224 bilinearly. N >= 2 each; use the same N for comparable scores.
        model: a loaded `I3D`; loaded from the weight cache when None.
        batch_size: clips per I3D forward pass.
    Returns:
        The distance, >= 0 (lower is better).
    """
    model = model if model is not None else load_i3d(real.device)
    return frechet_distance(i3d_features(model, real, batch_size), i3d_features(model, generated, batch_size))
