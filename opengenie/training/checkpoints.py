"""Configs and checkpoints of training runs: a preset plus overrides becomes the three model
configs; Lightning checkpoints become a frozen tokenizer (stage 2) or an exported `Genie`.

A stage's checkpoint carries the full model config in its hyper-parameters
(`hyper_parameters["genie_config"]`), and its weights under the same prefixes as `Genie`'s
own (`tokenizer.`, `action_model.`, `dynamics.`), so loading needs only the path.
Checkpoints are read with `torch.load(weights_only=True)`: no pickled code is ever run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from opengenie import presets
from opengenie.config import DynamicsConfig, GenieConfig, LatentActionConfig, TokenizerConfig, from_dict, world_fields
from opengenie.genie import CONFIG_FILE, WEIGHTS_FILE, Genie
from opengenie.tokenizer import DECODER_FIELDS, VideoTokenizer, same_tokens

PARTS = {"tokenizer": TokenizerConfig, "action": LatentActionConfig, "dynamics": DynamicsConfig}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_config(preset: str, overrides: dict | None = None,
                   tokenizer: TokenizerConfig | None = None) -> dict[str, Any]:
    """The three model configs `{"tokenizer": ..., "action": ..., "dynamics": ...}` of a run.

    preset: "tiny" | "small" | "coinrun"; overrides: `{part: {field: value}}` on top of it;
    tokenizer: the trained tokenizer's config (stage 2), which replaces the preset's.
    Fields that must agree between parts (the dynamics' vocab_size and grid, its num_actions,
    the action model's image_size) follow their source unless an override sets them.
    """
    base = presets.get(preset)
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(PARTS)
    if unknown:
        raise ValueError(f"model.overrides may hold {sorted(PARTS)}, got {sorted(unknown)}")
    fields = {name: {**dataclasses.asdict(getattr(base, name)), **(overrides.get(name) or {})} for name in PARTS}
    if tokenizer is not None:
        fields["tokenizer"] = dataclasses.asdict(tokenizer)
    given = {name: set(overrides.get(name) or {}) for name in PARTS}
    tok = _build("tokenizer", fields["tokenizer"])
    if "image_size" not in given["action"]:
        fields["action"]["image_size"] = tok.image_size
    action = _build("action", fields["action"])
    derived = world_fields(tok, action)
    fields["dynamics"].update({k: v for k, v in derived.items() if k not in given["dynamics"]})
    return {"tokenizer": tok, "action": action, "dynamics": _build("dynamics", fields["dynamics"])}


def _build(part: str, fields: dict) -> Any:
    try:
        return from_dict(PARTS[part], fields)
    except (ValueError, TypeError) as err:
        raise ValueError(f"model config, {part}: {err}") from None


def parts_from_dict(d: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `config_dict`: the three configs from a checkpoint's `genie_config`."""
    return {name: _build(name, d[name]) for name in PARTS}


def config_dict(parts: dict[str, Any]) -> dict[str, Any]:
    """JSON-able form of resolved parts (what goes into a checkpoint's hyper-parameters); a world's
    measured labels (`GenieConfig.action_labels`, `arrow_keys`) are not part of a training run."""
    return {name: json.loads(json.dumps(dataclasses.asdict(parts[name]))) for name in PARTS}


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """The fields two `config_dict`s disagree on, each as `dotted.name: saved -> current`."""
    out = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A Lightning checkpoint as a dict, loaded without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- any failure means "not one of our checkpoints"
        raise ValueError(f"{path} is not a readable training checkpoint ({type(err).__name__}: {err})") from None
    if "state_dict" not in ckpt or "genie_config" not in ckpt.get("hyper_parameters", {}):
        raise ValueError(f"{path} is not an opengenie training checkpoint (no state_dict or genie_config)")
    return ckpt


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_tokenizer(path: str | os.PathLike) -> VideoTokenizer:
    """A trained tokenizer from a Lightning checkpoint (stage 1 or 2) or an exported world dir."""
    path = Path(path)
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{path} has no {CONFIG_FILE}: expected a dir written by `opengenie export`")
        from safetensors.torch import load_file

        config = from_dict(TokenizerConfig, json.loads((path / CONFIG_FILE).read_text())["tokenizer"])
        state = _prefixed(load_file(str(path / WEIGHTS_FILE)), "tokenizer.")
    else:
        ckpt = read_checkpoint(path)
        config = from_dict(TokenizerConfig, ckpt["hyper_parameters"]["genie_config"]["tokenizer"])
        state = _prefixed(ckpt["state_dict"], "tokenizer.")
    # A GAN tokenizer saved its discriminator with it before the discriminator moved to its trainer.
    state = {k: v for k, v in state.items() if not k.startswith("discriminator.")}
    tokenizer = VideoTokenizer(config)
    own = tokenizer.state_dict()
    tokenizer.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in state.items()})
    return tokenizer


def tokenizer_fingerprint(tokenizer: VideoTokenizer) -> str:
    """A short hash of a tokenizer's config and weights: token caches name the tokenizer they used."""
    fields = dataclasses.asdict(tokenizer.config)
    if not fields["pixel_head_channels"]:  # no head: the hash tokenizers had before heads existed
        for name in DECODER_FIELDS:
            del fields[name]
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    return _hash_weights(h, tokenizer)


def weights_hash(module: torch.nn.Module) -> str:
    """A short hash of a module's weights, names and bytes (a distillation's teacher, checked on resume)."""
    return _hash_weights(hashlib.sha256(), module)


def _hash_weights(h, module: torch.nn.Module) -> str:
    for name, value in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def genie_from_checkpoints(dynamics: str | os.PathLike, tokenizer: str | os.PathLike | None = None) -> Genie:
    """A `Genie` from a stage-2 checkpoint (which holds its frozen tokenizer too).

    If `tokenizer` (a stage-1 checkpoint or an exported dir) is given, it must give the tokens the
    dynamics model was trained on: a different tokenizer's codes would mean nothing to it. Its
    encoder and codebook must be the ones stage 2 used; its decoder may have been trained further
    (`TokenizerModule(train_part="decoder")`), perhaps with a pixel head added, and the world
    then decodes with it.
    """
    ckpt = read_checkpoint(dynamics)
    state = ckpt["state_dict"]
    if not any(k.startswith("dynamics.") for k in state):
        raise ValueError(f"{dynamics} is a tokenizer (stage 1) checkpoint; pass the stage-2 checkpoint "
                         "of `opengenie train dynamics` as --dynamics")
    config = GenieConfig.from_dict(ckpt["hyper_parameters"]["genie_config"])
    keep = {k: v for k, v in state.items() if k.split(".")[0] in ("tokenizer", "action_model", "dynamics")}
    if tokenizer is not None:
        given = load_tokenizer(tokenizer)
        weights, trained = given.state_dict(), _prefixed(state, "tokenizer.")
        tokens = {k: v for k, v in weights.items() if k.split(".")[0] in VideoTokenizer.TOKEN_SIDE}
        if (not same_tokens(given.config, config.tokenizer)
                or tokens.keys() != {k for k in trained if k.split(".")[0] in VideoTokenizer.TOKEN_SIDE}
                or any(not torch.equal(v.to(trained[k].dtype), trained[k]) for k, v in tokens.items())):
            raise ValueError(f"the dynamics checkpoint {dynamics} was trained on another tokenizer than "
                             f"{tokenizer}; export with the tokenizer it was trained on, or one whose decoder "
                             "alone was trained further (or leave out --tokenizer)")
        keep = {k: v for k, v in keep.items() if not k.startswith("tokenizer.")}
        keep.update({f"tokenizer.{k}": v for k, v in weights.items()})
        config = dataclasses.replace(config, tokenizer=given.config)  # its decoder may have grown a head
    genie = Genie(config)
    genie.load_state_dict(keep)
    return genie.eval()


def export(dynamics: str | os.PathLike, out: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
           dtype: str = "fp32", frame_skip: int = 1, sampling: dict | None = None) -> Path:
    """Write the directory `Genie.from_pretrained` loads (config.json + model.safetensors).
    `frame_skip`: the `data.frame_skip` stage 2 was trained at (a world step = that many frames).
    `sampling`: `Genie.set_sampling` keywords the world then plays with by default, e.g.
    {"action_guidance": 1.0, "guidance_against": "none"}."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    genie = genie_from_checkpoints(dynamics, tokenizer)
    genie.config = dataclasses.replace(genie.config, frame_skip=frame_skip)
    genie.set_sampling(**(sampling or {}))
    return genie.save_pretrained(out, dtype=None if dtype == "fp32" else DTYPES[dtype])


# --- checkpoint files: written whole or not at all, and checked before a resume ------------

def write_atomically(path: str | os.PathLike, write) -> None:
    """Call `write(tmp)` to write a file (or a directory) beside `path`, flush it to disk, and
    move it onto `path` in one step (`os.replace`): a crash leaves the old file or the new one,
    never a truncated one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        if tmp.is_file():
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        elif path.is_dir():  # a sharded checkpoint is a directory, which os.replace cannot overwrite
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_file():
            tmp.unlink()
    try:  # the rename itself is durable once the directory is flushed (not possible on every OS)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with the checkpoint file `path` (None when it looks whole), found without
    loading it: torch writes a zip archive whose directory is at its very end, so a truncated
    file has none. A directory (a sharded checkpoint) is not checked."""
    path = Path(path)
    if path.is_dir():
        return None
    if not path.is_file():
        return "it does not exist"
    size = path.stat().st_size
    if size == 0:
        return "it is empty (0 bytes)"
    with open(path, "rb") as f:
        magic = f.read(4)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        if magic == b"PK\x03\x04":
            return f"it is truncated ({size:,} bytes, the end of the archive is missing)"
        return "it is not a PyTorch checkpoint"
    if not any(name.endswith("data.pkl") for name in names):
        return "it is a zip archive but not a PyTorch checkpoint"
    return None


def check_resumable(path: str | os.PathLike) -> None:
    """Raise a one-sentence ValueError naming `path`, what is wrong with it and the intact
    checkpoints beside it, if `path` cannot be resumed from."""
    problem = checkpoint_problem(path)
    if problem is None:
        return
    path = Path(path)
    beside = sorted(p.name for p in path.parent.glob("*.ckpt") if p != path and checkpoint_problem(p) is None) \
        if path.parent.is_dir() else []
    others = (f"intact checkpoints beside it: {', '.join(beside)} (resume from one with --ckpt_path PATH)"
              if beside else "there is no intact checkpoint beside it")
    raise ValueError(f"cannot resume from {path}: {problem}; {others}")
