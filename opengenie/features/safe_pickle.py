"""Read numpy arrays out of a pickle without letting the pickle run code.

A pickle is a small program: every `GLOBAL` opcode names a callable that `pickle.load` imports
and calls. The pretrained feature networks we use are published only as pickled dicts of numpy
arrays, so we read them with an unpickler whose `find_class` admits exactly the few callables
numpy needs to rebuild an array and refuses everything else (`os.system`, `builtins.eval`, ...)
before it is imported.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np


def _numpy_reconstruct() -> Any:
    # numpy 2 moved `numpy.core` to `numpy._core`; pickles written by numpy 1 name the old path.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _numpy_scalar() -> Any:
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return scalar


def _numpy_frombuffer() -> Any:
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.numeric import _frombuffer
    return _frombuffer


# (module, name) -> a function returning the object. Both numpy 1 and numpy 2 spellings are
# listed because the module a pickle names depends on the numpy that wrote it.
_ALLOWED = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    # Protocol-5 pickles of arrays go through `_frombuffer`.
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
    # numpy scalars (np.float32(1.0), a step counter) are rebuilt from a dtype and raw bytes.
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    # Protocol 2 has no bytes opcode and spells raw bytes as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): lambda: __import__("codecs").encode,
    # Containers a checkpoint may be nested in; dict/list/tuple have their own opcodes.
    ("collections", "OrderedDict"): lambda: __import__("collections").OrderedDict,
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a callable outside the numpy allow-list."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, dicts, lists and scalars, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: this file may only contain numpy arrays "
                "in dicts and lists; it is not the checkpoint we expected"
            )
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a pickle with persistent ids (not a numpy checkpoint)")


def load_numpy_pickle(data: bytes) -> Any:
    """Unpickle `data`, admitting only numpy arrays and plain containers.

    Raises:
        UnsafePickleError: the pickle names any other callable (it is never imported or run).
    """
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()


def flatten_arrays(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten nested dicts of arrays into {"a/b/c": array}, the keys joined by "/".

    Raises:
        ValueError: a leaf is not a numpy array.
    """
    if isinstance(tree, dict):
        flat: dict[str, np.ndarray] = {}
        for key, value in tree.items():
            flat.update(flatten_arrays(value, f"{prefix}/{key}" if prefix else str(key)))
        return flat
    if isinstance(tree, np.ndarray):
        return {prefix: tree}
    raise ValueError(f"expected only numpy arrays in the checkpoint, found {type(tree).__name__} at {prefix!r}")
