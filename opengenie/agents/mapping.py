"""From latent actions to real ones (Genie App. E): a dictionary built from a few labelled
transitions.

Each latent action maps to the list of real actions seen with it; at run time a latent action
becomes one of its real actions drawn uniformly from that list, so a latent seen with RIGHT
three times and UP once gives RIGHT three times in four. A latent never seen (all of them when
no labels are given) becomes a real action drawn uniformly from `fallback`.
"""

from __future__ import annotations

import numpy as np


class LatentToReal:
    """The dictionary latent id → real actions seen with it."""

    def __init__(self, latents: np.ndarray, reals: np.ndarray, num_latents: int, fallback: np.ndarray) -> None:
        """`latents` (N,) and `reals` (N,) int64: the labelled transitions, paired by index (N may
        be 0); `fallback` the real actions an unseen latent draws from."""
        latents, reals = np.asarray(latents, dtype=np.int64).ravel(), np.asarray(reals, dtype=np.int64).ravel()
        if latents.shape != reals.shape:
            raise ValueError(f"latents and real actions must pair up, got {latents.shape} and {reals.shape}")
        if len(latents) and (latents.min() < 0 or latents.max() >= num_latents):
            raise ValueError(f"latent ids must lie in [0, {num_latents}), got {latents.min()}..{latents.max()}")
        self.fallback = np.asarray(fallback, dtype=np.int64)
        if not len(self.fallback):
            raise ValueError("fallback needs at least one real action")
        self.table = [reals[latents == k] for k in range(num_latents)]  # the real actions seen with each latent

    @property
    def num_labels(self) -> int:
        return sum(len(r) for r in self.table)

    def sample(self, latents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Real actions (B,) int64 for latent ids (B,): one draw each from its list, or the fallback."""
        latents = np.asarray(latents, dtype=np.int64).ravel()
        out = np.empty(len(latents), dtype=np.int64)
        for i, k in enumerate(latents):
            seen = self.table[k]
            out[i] = seen[rng.integers(len(seen))] if len(seen) else self.fallback[rng.integers(len(self.fallback))]
        return out

    def majority(self) -> np.ndarray:
        """(num_latents,) int64: the real action seen most often with each latent, −1 if never seen."""
        return np.array([np.bincount(r).argmax() if len(r) else -1 for r in self.table], dtype=np.int64)
