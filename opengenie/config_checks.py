"""Checks behind the configs' `__post_init__`: each field against its annotation, and ranges
with generous but finite bounds, each failure a ValueError that names the field and the fix.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from numbers import Integral, Real
from typing import Any, Literal

# Generous but finite bounds: a config past them is a typo (2**20 for 2**10), not a model, and
# building it would try to allocate terabytes before any other check could speak.
MAX_DIM, MAX_DEPTH, MAX_HEADS, MAX_SIDE, MAX_FRAMES = 16384, 256, 256, 4096, 4096
MAX_CODES, MAX_CODE_DIM, MAX_STEPS = 2**20, 4096, 10_000
MAX_TEMPERATURE = 100.0  # MaskGIT sampling temperature; far past it every draw is uniform noise
MAX_GUIDANCE = 100.0  # action guidance weight; far past it the draws follow the contrast alone
MAX_PARAMS = 20 * 10**9  # about 80 GB of fp32 weights per model


def is_int(value) -> bool:
    """An integer (Python or NumPy), and not a bool: True and False are ints to Python, never ids."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A real number (Python or NumPy), and not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool)


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


def _check_fields(config: Any) -> None:
    """Check every field of a config dataclass against its annotation (ints are ints, floats are
    finite, tuples have their length); lists are accepted where tuples are expected (JSON, YAML)."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(config):
        value, kind = getattr(config, f.name), hints[f.name]
        if isinstance(value, list) and _wants_tuple(kind):
            value = _tuplify(value)
            object.__setattr__(config, f.name, value)  # frozen: the one place a field is normalised
        if not _matches(value, kind):
            raise ValueError(f"{cls.__name__}.{f.name} must be {_describe(kind)}, got {value!r}")


def _wants_tuple(kind: Any) -> bool:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return any(_wants_tuple(k) for k in typing.get_args(kind))
    return kind is tuple or typing.get_origin(kind) is tuple


def _matches(value: Any, kind: Any) -> bool:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return True
    if kind is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, k) for k in args)
    if origin is Literal:
        return isinstance(value, str) and value in args
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and is_int(value)  # is_int alone would also take NumPy's ints
    if kind is float:  # an int is a fine float; NaN and inf never are
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is str:
        return isinstance(value, str)
    if kind is tuple or origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return not args or (len(value) == len(args) and all(_matches(v, k) for v, k in zip(value, args)))
    if kind is dict or origin is dict:
        return isinstance(value, dict) and (not args or all(_matches(k, args[0]) and _matches(v, args[1])
                                                            for k, v in value.items()))
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(k) for k in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if kind is float:
        return "a finite number"
    if kind in (int, bool, str):
        return {int: "an integer", bool: "true or false", str: "a string"}[kind]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"a list of {_describe(args[0])}s"
    if origin is tuple:
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    if kind is dict or origin is dict:
        return "a mapping"
    return getattr(kind, "__name__", str(kind))


def _check_range(name: str, value: float, low: float, high: float | None = None, hint: str = "") -> None:
    ok = value >= low and (high is None or value <= high)
    bounds = f">= {low}" if high is None else f"in {low}..{high}"
    _check(ok, f"{name} must be {bounds}, got {value}" + (f"; {hint}" if hint else ""))


def _check_stack(name: str, dim: int, depths: dict[str, int], heads: int, mlp_ratio: float, max_frames: int) -> None:
    """Width, depths, heads and clip length of ST-transformers within what can be built."""
    _check_range(f"{name}: dim", dim, 1, MAX_DIM, "a width past that is a typo, not a model")
    for field_name, depth in depths.items():
        _check_range(f"{name}: {field_name}", depth, 1, MAX_DEPTH)
    depth = sum(depths.values())
    _check_range(f"{name}: heads", heads, 1, MAX_HEADS)
    _check(0 < mlp_ratio <= 64, f"{name}: mlp_ratio must be in (0, 64], got {mlp_ratio}")
    _check_range(f"{name}: max_frames", max_frames, 1, MAX_FRAMES)
    # One ST block: spatial and temporal attention (4·dim² each) and one feed-forward (2·r·dim²).
    params = depth * dim * dim * (8 + 2 * mlp_ratio)
    _check(params <= MAX_PARAMS, f"{name}: dim={dim} and depth={depth} make about {params / 1e9:.0f} billion "
                                 f"parameters, more than the {MAX_PARAMS // 10**9} billion one model may have; "
                                 "lower dim or depth")


def _check_image(name: str, image_size: tuple[int, int], in_channels: int, patch_size: int) -> None:
    _check(all(1 <= s <= MAX_SIDE for s in image_size),
           f"{name}: image_size sides must be in 1..{MAX_SIDE}, got {image_size}")
    _check_range(f"{name}: in_channels", in_channels, 1, 64)
    _check_range(f"{name}: patch_size", patch_size, 1, min(image_size), "a patch must fit in the frame")


def _check_grid(name: str, image_size: tuple[int, int], patch_size: int) -> None:
    h, w = image_size
    _check(h % patch_size == 0 and w % patch_size == 0,
           f"{name}: image_size {image_size} must be divisible by patch_size={patch_size}; "
           f"pick a patch size that divides both sides")


def _check_heads(name: str, dim: int, heads: int) -> None:
    _check(dim % heads == 0, f"{name}: dim={dim} must be divisible by heads={heads}")


def _tuplify(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    if isinstance(v, dict):
        return {k: _tuplify(x) for k, x in v.items()}
    return v
