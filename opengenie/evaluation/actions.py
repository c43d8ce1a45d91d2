"""Diagnostics of a latent action model: codebook usage and agreement with true actions."""

from __future__ import annotations

import numpy as np
import torch


def contingency(latent: torch.Tensor | np.ndarray, true: torch.Tensor | np.ndarray) -> np.ndarray:
    """Counts (num_latent, num_true) of how often latent code i co-occurs with true action j."""
    latent, true = np.asarray(latent).ravel(), np.asarray(true).ravel()
    if latent.shape != true.shape:
        raise ValueError(f"latent and true actions must pair up, got {latent.shape} and {true.shape}")
    table = np.zeros((latent.max() + 1, true.max() + 1), dtype=np.int64)
    np.add.at(table, (latent, true), 1)
    return table


def nmi(latent: torch.Tensor | np.ndarray, true: torch.Tensor | np.ndarray) -> float:
    """Normalised mutual information I(L; A) / sqrt(H(L) H(A)) in [0, 1] (0 if either is constant)."""
    p = contingency(latent, true).astype(np.float64)
    p /= p.sum()
    pl, pa = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pl, pa)[nz])).sum())
    hl = -float((pl[pl > 0] * np.log(pl[pl > 0])).sum())
    ha = -float((pa[pa > 0] * np.log(pa[pa > 0])).sum())
    return 0.0 if hl == 0 or ha == 0 else max(0.0, mi / np.sqrt(hl * ha))


def codebook_usage(ids: torch.Tensor | np.ndarray, codebook_size: int) -> dict[str, float]:
    """Fraction of codes used, perplexity, and each code's share of the ids."""
    counts = np.bincount(np.asarray(ids).ravel(), minlength=codebook_size).astype(np.float64)
    p = counts / max(counts.sum(), 1)
    entropy = -float((p[p > 0] * np.log(p[p > 0])).sum())
    return {"usage": float((counts > 0).mean()), "perplexity": float(np.exp(entropy)),
            "shares": p.round(4).tolist()}


def nmi_with_chance(latent, true, permutations: int = 20, seed: int = 0) -> dict[str, float]:
    """NMI of paired labels beside its chance value at the same sample size.

    NMI is biased upwards on finite samples: two independent labellings of a few thousand
    transitions score well above 0. The chance value is the NMI after shuffling `true`
    (`permutations` times, mean and standard deviation); only the excess over it is agreement.
    """
    latent, true = np.asarray(latent).ravel(), np.asarray(true).ravel()
    if latent.size == 0:
        raise ValueError("NMI needs at least one pair of labels")
    if latent.min() < 0 or true.min() < 0:
        raise ValueError(f"labels must be non-negative integers, got minima {latent.min()} and {true.min()}")
    rng = np.random.default_rng(seed)
    chance = np.array([nmi(latent, rng.permutation(true)) for _ in range(permutations)])
    value = nmi(latent, true)
    return {"nmi": value, "chance": float(chance.mean()), "chance_std": float(chance.std()),
            "excess": value - float(chance.mean()), "transitions": int(latent.size)}
