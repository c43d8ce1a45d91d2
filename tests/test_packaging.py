"""The package as a user gets it: lazy public names, the command's version, and a wheel that
carries its configs and static files."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import opengenie

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_public_names_resolve():
    """Every name in `__all__` resolves to the object its defining module holds."""
    from opengenie import dynamics, genie, latent_action, tokenizer

    names = {name: getattr(opengenie, name) for name in opengenie.__all__}
    assert names["Genie"] is genie.Genie
    assert names["VideoTokenizer"] is tokenizer.VideoTokenizer
    assert names["DynamicsModel"] is dynamics.DynamicsModel
    assert names["LatentAction"] is latent_action.LatentActionModel  # the seed's name
    assert callable(names["presets"].tiny)
    assert set(opengenie.__all__) <= set(dir(opengenie))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        opengenie.nope  # noqa: B018


def test_import_does_not_load_torch(tmp_path):
    """`import opengenie` and `opengenie --help` stay cheap: torch loads only when a model is used."""
    code = ("import sys, opengenie, opengenie.cli; opengenie.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'numpy', 'lightning') if m in sys.modules))")
    out = _run(sys.executable, "-c", code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_version_flag():
    """`opengenie --version` prints the package's version."""
    out = _run(sys.executable, "-m", "opengenie.cli", "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"opengenie {opengenie.__version__}"


def test_wheel_trains_from_a_packaged_config(tmp_path):
    """A wheel built from the checkout, installed alone into a fresh venv and run outside the
    checkout, finds `--config tiny` among the configs it ships (and ships the play page)."""
    wheels = tmp_path / "wheels"
    out = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
               str(ROOT), cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = wheels.glob("opengenie-*.whl")
    files = zipfile.ZipFile(wheel).namelist()
    assert "opengenie/configs/tokenizer/tiny.yaml" in files and "opengenie/configs/dynamics/small.yaml" in files
    assert "opengenie/play/static/play.js" in files

    # A fresh venv holding only the wheel; its dependencies come from this venv's site-packages,
    # appended by a .pth after the venv's own (so the checkout's editable install stays out).
    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", "--without-pip", str(venv)).returncode == 0
    python = venv / "bin" / "python"
    out = _run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel),
               timeout=300)
    assert out.returncode == 0, out.stderr
    site = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = _run(str(python), "-c", "import opengenie; print(opengenie.__file__)", cwd=work, env=env)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
    out = _run(str(venv / "bin" / "opengenie"), "train", "tokenizer", "--config", "tiny", "--print_config",
               cwd=work, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "class_path: opengenie.training.TokenizerModule" in out.stdout
    assert "preset: tiny" in out.stdout and "max_steps: 800" in out.stdout
    version = _run(str(venv / "bin" / "opengenie"), "--version", cwd=work, env=env)
    assert version.stdout.strip() == f"opengenie {opengenie.__version__}"
