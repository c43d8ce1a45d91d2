"""How sure a mean over clips is: bootstrap 95 % intervals over per-clip values.

Clips, not frames, are the unit of resampling: the frames of one clip share a prompt and a
random stream, so they are not independent draws. Resampling is seeded, so a report is
reproducible to the digit.
"""

from __future__ import annotations

import numpy as np
import torch

RESAMPLES = 1000


def bootstrap_ci(values, resamples: int = RESAMPLES, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (N,) or of each column of (N, T).

    Returns (low, high) floats for (N,), or two lists of T floats for (N, T). One value gives
    the degenerate interval (v, v). Non-finite values propagate (an inf PSNR gives an inf bound).
    """
    x = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if x.shape[0] == 0:
        raise ValueError("a bootstrap interval needs at least one value")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, x.shape[0], size=(resamples, x.shape[0]))  # (R, N)
    means = x[index].mean(axis=1)  # (R,) or (R, T)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha], axis=0)
    if x.ndim == 1:
        return float(low), float(high)
    return low.tolist(), high.tolist()


def summary(values, seed: int = 0) -> dict:
    """{"mean", "ci95": [low, high], "n"} of per-clip values (N,)."""
    x = torch.as_tensor(values, dtype=torch.float64)
    low, high = bootstrap_ci(x, seed=seed)
    return {"mean": float(x.mean()), "ci95": [low, high], "n": int(x.shape[0])}


def curve(values, seed: int = 0) -> dict:
    """Per-frame {"mean": [T], "ci95": [[T], [T]]} of per-clip values (N, T)."""
    x = torch.as_tensor(values, dtype=torch.float64)
    low, high = bootstrap_ci(x, seed=seed)
    return {"mean": x.mean(0).tolist(), "ci95": [low, high]}
