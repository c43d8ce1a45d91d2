"""Seed-style blueprints: a network described as a sequence of `(name, kwargs)` pairs.

    desc = (
        ("causal", {"in_channels": 3, "out_channels": 64, "kernel_size": 3}),
        ("residual", {"in_channels": 64, "n_rep": 2}),
    )
    net = build(desc)          # a Blueprint module; `desc` is left exactly as it was

Every block of a blueprint takes and returns a video tensor `(B, C, T, H, W)`. Blocks that
accept conditioning (`cond`) or a key/value cache (`cache`) declare it with the class
attribute `accepts = ("cond", "cache")`; the container passes those only to them.

The original Open-Genie builder popped keys out of the (shared, module-level) preset dicts,
so building a preset twice gave two different networks. Here kwargs are deep-copied first.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable

import torch
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

BlockDesc = tuple[str, dict[str, Any]]


def register(*names: str) -> Callable:
    """Class decorator: make a block buildable under one or more blueprint names."""

    def wrap(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        for name in names:
            _REGISTRY[name] = cls
        return cls

    return wrap


def registered() -> list[str]:
    """The block names a blueprint may use."""
    _import_blocks()
    return sorted(_REGISTRY)


def _import_blocks() -> None:
    # Blocks register themselves when their module is imported.
    from opengenie.nn import conv, st_transformer  # noqa: F401


def normalize(desc: BlockDesc | Iterable[BlockDesc]) -> list[BlockDesc]:
    """Accept one `(name, kwargs)` pair or a sequence of them; check the shape of each."""
    if isinstance(desc, tuple) and len(desc) == 2 and isinstance(desc[0], str):
        desc = [desc]
    out = []
    for i, item in enumerate(desc):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], dict)):
            raise ValueError(f"blueprint entry {i} must be a (name, kwargs) pair, got {item!r}")
        out.append((item[0], item[1]))
    return out


def build(desc: BlockDesc | Iterable[BlockDesc]) -> "Blueprint":
    """Build the blocks a blueprint describes, without mutating the description."""
    _import_blocks()
    blocks: list[nn.Module] = []
    for name, kwargs in normalize(desc):
        if name not in _REGISTRY:
            raise ValueError(f"unknown blueprint block {name!r}; known blocks: {registered()}")
        kwargs = copy.deepcopy(kwargs)
        n_rep = int(kwargs.pop("n_rep", 1))
        for rep in range(n_rep):
            blocks.append(_REGISTRY[name](**kwargs))
            # A repeated block that changes width keeps the new width after its first copy.
            if rep == 0 and "out_channels" in kwargs and "in_channels" in kwargs:
                kwargs["in_channels"] = kwargs["out_channels"]
    return Blueprint(blocks)


class Blueprint(nn.Module):
    """The blocks of a blueprint applied in order to a video `(B, C, T, H, W)`."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, **extra: Any) -> torch.Tensor:
        for block in self.blocks:
            wanted = {k: v for k, v in extra.items() if k in getattr(block, "accepts", ())}
            x = block(x, **wanted)
        return x
