"""procgen's action ids as CoinRun reads them, and the parts of an action the evaluation asks
about (left/right, jump). Shared by the CoinRun data, the expert and the evaluation."""

from __future__ import annotations

import numpy as np

NUM_ACTIONS = 15  # procgen's full action set, the same for every game
# procgen's combos(): 0 LEFT+DOWN, 1 LEFT, 2 LEFT+UP, 3 DOWN, 4 none, 5 UP, 6 RIGHT+DOWN,
# 7 RIGHT, 8 RIGHT+UP, 9..14 the D A W S Q E keys, which do nothing in CoinRun.
LEFT, NOOP, UP, DOWN, RIGHT, RIGHT_UP, LEFT_UP = 1, 4, 5, 3, 7, 8, 2
HORIZONTAL_KEYS = ("left", "none", "right")


def horizontal_key(actions: np.ndarray) -> np.ndarray:
    """The left/right part of procgen actions: 0 left, 1 neither, 2 right (`HORIZONTAL_KEYS`)."""
    actions = np.asarray(actions)
    return np.where(np.isin(actions, (0, 1, 2)), 0, np.where(np.isin(actions, (6, 7, 8)), 2, 1))


def jump_key(actions: np.ndarray) -> np.ndarray:
    """1 where a procgen action presses UP (jump in CoinRun), else 0."""
    return np.isin(np.asarray(actions), (2, 5, 8)).astype(np.int64)
