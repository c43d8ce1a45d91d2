"""Genie: the three models under one config, saved and loaded without pickle, and the
rollout engine that turns them into a world a person can step.

    world = Genie.from_pretrained("worlds/coinrun")
    frame = world.reset("level.png")          # (H, W, 3) uint8
    frame = world.step(3)                     # the next frame after latent action 3

The networks stay stateless; the engine state (token history and the key/value caches of the
dynamics model and of the tokenizer's decoder) lives in a `Rollout` (`opengenie.engine`).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from opengenie.config import GenieConfig
from opengenie.dynamics import DynamicsModel
from opengenie.engine import Rollout, check_sampling  # noqa: F401 (check_sampling: the library's one check)
from opengenie.images import ImageLike, load_frames, to_frames, to_video
from opengenie.latent_action import LatentActionModel
from opengenie.nn.checks import check_video, is_int
from opengenie.tokenizer import VideoTokenizer

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
_REDO = "export the world again (`opengenie export`) or copy it anew"


class WorldFileError(ValueError):
    """A saved world's config.json or model.safetensors cannot be loaded; the message names the
    file, what is wrong with it and what to do."""


def read_config(path: str | Path) -> GenieConfig:
    """The `GenieConfig` in a world folder's config.json; WorldFileError if it is not a valid one."""
    file = Path(path) / CONFIG_FILE
    try:
        d = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WorldFileError(f"{file} is not valid JSON ({err}); {_REDO}") from None
    try:
        return GenieConfig.from_dict(d)
    except (ValueError, TypeError) as err:
        raise WorldFileError(f"{file}: {err}; fix that field or {_REDO}") from None


def read_weights(path: str | Path, expected: dict[str, torch.Tensor], device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a world folder's model.safetensors, checked against `expected` (the model's
    state dict): same names, same shapes, every value finite. WorldFileError names what differs."""
    file = Path(path) / WEIGHTS_FILE
    try:
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            names = set(f.keys())
            missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
            if missing or unexpected:
                raise WorldFileError(
                    f"{file} does not fit its config.json: " + "; ".join(
                        part for part in (_names("missing", missing), _names("unexpected", unexpected)) if part)
                    + f"; {_REDO}")
            state = {}
            for name in sorted(names):
                shape, want = tuple(f.get_slice(name).get_shape()), tuple(expected[name].shape)
                if shape != want:
                    raise WorldFileError(f"{file}: tensor {name} has shape {shape} but config.json needs {want}; "
                                         f"{_REDO}")
                tensor = f.get_tensor(name)
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    bad = "NaN" if torch.isnan(tensor).any() else "inf"
                    raise WorldFileError(f"{file}: tensor {name} holds {bad} values, so every frame would be "
                                         f"broken; the training run diverged: {_REDO} from an earlier checkpoint")
                state[name] = tensor.to(expected[name].dtype)
    except SafetensorError as err:
        raise WorldFileError(f"{file} is not a safetensors file, or is truncated ({err}); {_REDO}") from None
    return state


def _names(what: str, names: list[str]) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{len(names)} {what} tensor{'s' if len(names) > 1 else ''} ({shown})"


class Genie(nn.Module):
    """Tokenizer + latent action model + dynamics. `Genie(presets.tiny())` builds a tiny world."""

    def __init__(self, config: GenieConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = VideoTokenizer(config.tokenizer)
        self.action_model = LatentActionModel(config.action)
        self.dynamics = DynamicsModel(config.dynamics)
        self.state: Rollout | None = None  # what reset / step play
        self.frames: list[np.ndarray] = []  # what reset / step have shown, (H, W, 3) uint8 each

    @property
    def num_actions(self) -> int:
        return self.config.dynamics.num_actions

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.config.tokenizer.image_size)

    # --- saving and loading --------------------------------------------------------------

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write `config.json` + `model.safetensors` (optionally stored in fp16/bf16)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_FILE).write_text(self.config.to_json())
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
                 for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_FILE), metadata={"format": "pt", "library": "opengenie"})
        # safetensors writes through a private temporary file (mode 0600); a world is meant to be
        # shared like its config.json, so the weights take the mode config.json was given.
        os.chmod(path / WEIGHTS_FILE, stat.S_IMODE((path / CONFIG_FILE).stat().st_mode))
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> "Genie":
        """Load a world saved by `save_pretrained` / `opengenie export`. No pickle is involved.

        Raises FileNotFoundError when a file is missing and `WorldFileError` (a ValueError) when
        config.json or model.safetensors is damaged: invalid JSON, a field out of range (checked
        before any weight is allocated), a truncated file, tensors that do not fit the config,
        NaN or inf weights."""
        path = Path(path)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path} is not a saved world: {name} is missing "
                                        f"(write one with Genie.save_pretrained or `opengenie export`)")
        model = cls(read_config(path))
        model.load_state_dict(read_weights(path, model.state_dict(), device=str(device)))
        return model.to(device).eval()

    # --- the engine ----------------------------------------------------------------------

    @property
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def compile_play(self, warm_up: bool = True) -> bool:
        """Compile this world's play step with torch.compile (weights frozen in: for playing,
        not training) → whether it compiled. Every later `start` / `reset` plays compiled;
        see `opengenie.engine.compile_play`."""
        from opengenie.engine import compile_play

        return compile_play(self.tokenizer, self.dynamics, warm_up) is not None

    def set_sampling(self, maskgit_steps: int | None = None, temperature: float | None = None,
                     action_guidance: float | None = None, guidance_against: int | str | None = None) -> "Genie":
        """Change how every later step of this world draws its frames (None: keep the world's
        own): MaskGIT iterations, temperature, action guidance (`DynamicsConfig.action_guidance`)
        and what it contrasts with (`DynamicsConfig.guidance_against`): "mean" (the mean over
        every latent action), "none" (the model told no action, for worlds trained with action
        dropout), or an action, by id or by one of the world's labels. Out-of-range values raise
        ValueError. Returns the world."""
        changes = {k: v for k, v in (("maskgit_steps", maskgit_steps), ("temperature", temperature),
                                     ("action_guidance", action_guidance)) if v is not None}
        if guidance_against is not None:
            changes["guidance_against"] = self._action_id(guidance_against)
        self.dynamics.config = replace(self.dynamics.config, **changes)
        self.config = replace(self.config, dynamics=self.dynamics.config)
        return self

    def _action_id(self, action: int | str) -> int | None:
        """An action id, one of this world's action labels, "none" → an id (`num_actions` for
        none); "mean" → None."""
        if isinstance(action, str) and not action.lstrip("-").isdigit():
            if action in ("mean", "none"):
                return None if action == "mean" else self.num_actions
            labels = list(self.config.action_labels)
            if labels.count(action) != 1:
                raise ValueError(f"{action!r} names no action of this world: its labels are "
                                 f"{labels or 'none'}; give an action id 0..{self.num_actions - 1}, 'none' or 'mean'")
            return labels.index(action)
        return int(action)

    def start(self, video: torch.Tensor, seed: int | None = None, use_cache: bool = True,
              maskgit_steps: int | None = None, temperature: float | None = None) -> tuple[Rollout, torch.Tensor]:
        """Begin rollouts from prompt frames: video (B, C, T, H, W) in [-1, 1] →
        (Rollout, reconstructed prompt (B, C, T, H, W)). Prompt actions come from the action
        model; `rollout.step(actions)` then plays (the engine, `opengenie.engine`)."""
        c = self.config.tokenizer
        check_video(video, c.in_channels, c.patch_size, c.image_size)
        return Rollout.start(self.tokenizer, self.action_model, self.dynamics, video.to(self._device), seed,
                             use_cache, maskgit_steps, temperature)

    def reset(self, prompt: ImageLike | Sequence[ImageLike], seed: int | None = None) -> np.ndarray:
        """Start playing from one or more prompt images (paths, bytes, PIL images or uint8 arrays,
        any size: resized). Returns the world's first frame (H, W, 3) uint8."""
        video = to_video(load_frames(prompt, self.image_size))
        self.state, recon = self.start(video, seed)
        self.frames = [to_frames(recon[0, :, -1:])[0]]
        return self.frames[0]

    def step(self, action: int) -> np.ndarray:
        """Take latent action `action` in [0, num_actions) → the next frame (H, W, 3) uint8."""
        if self.state is None:
            raise RuntimeError("call reset(prompt) before step(action)")
        if not is_int(action):
            raise ValueError(f"action must be an integer in 0..{self.num_actions - 1}, got {action!r}")
        self.frames.append(to_frames(self.state.step(torch.tensor([int(action)]))[0])[0])
        return self.frames[-1]

    @torch.no_grad()
    def rollout(self, prompt: torch.Tensor, actions: torch.Tensor, maskgit_steps: int | None = None,
                temperature: float | None = None, seed: int | None = None, use_cache: bool = True) -> torch.Tensor:
        """Batched play: prompt video (B, C, T0, H, W) in [-1, 1], actions (B, n) int64 →
        video (B, C, T0 + n, H, W): the reconstructed prompt followed by n generated frames.
        `maskgit_steps`: MaskGIT iterations per frame (None: the model's)."""
        if actions.dim() != 2 or actions.shape[0] != prompt.shape[0]:
            raise ValueError(f"expected actions (B, n) with B={prompt.shape[0]}, got {tuple(actions.shape)}")
        state, recon = self.start(prompt, seed, use_cache, maskgit_steps, temperature)
        actions = actions.to(self._device)
        return torch.cat([recon] + [state.step(actions[:, i]) for i in range(actions.shape[1])], dim=2)
