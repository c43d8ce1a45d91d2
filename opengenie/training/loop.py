"""The one training loop (STYLE §9): every stage is a `GenieStage` that says what it trains.

A stage (`tokenizer_stage.py`, `dynamics_stage.py`) supplies `compute_loss` and
`trained_modules`; the loop, the optimisers and schedules, gradient clipping, logging, the
finite-loss check that names the step, and the random state that makes a resumed run repeat
the uninterrupted one live here.

Exact resumption: every random draw of a training step (MaskGIT masks, dead-code restarts,
k-means, warm-up noise, LFQ's sampled positions, the GAN's frames, dropout) comes from the
torch generators, and a training step runs on a stream of its own — the generators' state is
swapped in before the step and out after it — which travels in every checkpoint
(`checkpoint["rng"]["train"]`). Nothing else a run does draws from that stream: validation
(whose DataLoader takes a seed from the global generator each time it starts its workers),
image logging, FLOP counting, Lightning itself. So a run resumed at any step takes exactly the
draws of the uninterrupted one. The quantizers' warm-up memory travels too (`quantizers`).
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import lightning as L
import numpy as np
import torch
from torch import nn

from opengenie.config import without_retired
from opengenie.nn.checks import check_finite
from opengenie.nn.st_transformer import compile_blocks
from opengenie.training.checkpoints import config_dict, config_differences, parts_from_dict
from opengenie.training.schedule import build_optimizer, check_schedule


@dataclass
class StepLoss:
    """One batch's loss (the scalar to minimise) and what to log about it (scalars)."""

    loss: torch.Tensor
    logs: dict[str, torch.Tensor]


def psnr_of_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of videos in [-1, 1] (peak-to-peak 2) from their mean squared error, to log."""
    return 10 * torch.log10(4.0 / mse.clamp(min=1e-10))


def count(n: int) -> torch.Tensor:
    """A host count as a loggable scalar (codes re-seeded by dead-code restart, cumulative)."""
    return torch.tensor(float(n))


def _as_current(saved: dict) -> dict:
    """A checkpoint's `genie_config` as today's code writes it: fields no config has now dropped,
    fields added since at their defaults (they did not exist, so the run had their default)."""
    try:
        return config_dict(parts_from_dict(without_retired(saved)))
    except (KeyError, TypeError, ValueError):  # not a config this code can build: compared as saved
        return without_retired(saved)


class GenieStage(L.LightningModule):
    """The training loop shared by every stage. A stage supplies `compute_loss` and the
    modules it trains; with `adversary_modules` it is trained by manual optimisation, one
    optimiser per player (generator first, then the adversary)."""

    def __init__(self, *, lr: float, min_lr: float | None, warmup_steps: int, schedule: str,
                 betas: tuple[float, float], weight_decay: float, grad_clip: float | None, compile: bool) -> None:
        super().__init__()
        check_schedule(lr, min_lr, warmup_steps, schedule)
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"model.grad_clip must be > 0 or null (no clipping), got {grad_clip}")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"model.betas must be two numbers in [0, 1), got {betas}")
        self._resume_rng: dict | None = None
        self._stream: dict | None = None  # the training steps' generator states (see the module doc)

    # --- what a stage supplies -----------------------------------------------------------

    def compute_loss(self, batch: dict, generator: torch.Generator | None = None) -> StepLoss:
        """The training loss of a batch; `generator` fixes its random draws (masks)."""
        raise NotImplementedError

    def trained_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def adversary_modules(self) -> list[nn.Module]:
        """Modules trained by a second optimiser on `adversary_loss` (a GAN discriminator)."""
        return []

    def adversary_loss(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def tokens_per_clip(self, batch: dict) -> int:
        """Tokens one clip of the batch stands for (for tokens/s)."""
        raise NotImplementedError

    def frozen_forward(self, batch: dict) -> None:
        """Run the part of `compute_loss` that is not trained (counted once, not 3x, in MFU)."""

    def images(self, batch: dict) -> dict[str, torch.Tensor]:
        """Pictures of what the model does on `batch`: name → (3, H, W) float in [0, 1]."""
        return {}

    # --- the loop --------------------------------------------------------------------------

    def _loss(self, batch: dict, generator: torch.Generator | None = None) -> StepLoss:
        out = self.compute_loss(batch, generator)
        # The one finite check of a step, here and not in the models' compute_loss: reading the
        # verdict waits on the device and breaks a compiled graph, so it is paid once per step,
        # and only here is the step known to name it.
        check_finite(out.loss, out.logs, step=self.global_step)
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        with self._training_stream():
            return self._training_step(batch)

    @contextmanager
    def _training_stream(self) -> Iterator[None]:
        """Run the body on the training steps' own random stream (saved in checkpoints)."""
        outside = torch_rng_state(self.device)
        if self._stream is None:  # the first step of a fresh run starts from the seeded generators
            self._stream = outside
        set_torch_rng_state(self._stream, self.device)
        try:
            yield
        finally:
            self._stream = torch_rng_state(self.device)
            set_torch_rng_state(outside, self.device)

    def _training_step(self, batch: dict) -> torch.Tensor | None:
        if self.automatic_optimization:
            out = self._loss(batch)
            self._log(out, "train", batch)
            return out.loss
        (opt_g, opt_d), (sched_g, sched_d) = self.optimizers(), self.lr_schedulers()
        with self._only(opt_g):  # the adversary's weights take no gradient from the generator's loss
            out = self._loss(batch)
            self._manual_step(opt_g, sched_g, out.loss)
        with self._only(opt_d):
            d_loss = self.adversary_loss(batch)
            check_finite(d_loss, {"discriminator": d_loss}, step=self.global_step)
            self._manual_step(opt_d, sched_d, d_loss)
        out.logs["discriminator"] = d_loss.detach()
        self._log(out, "train", batch)
        return None

    @contextmanager
    def _only(self, optimizer) -> Iterator[None]:
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)

    def _manual_step(self, optimizer, scheduler, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self._clip(optimizer)
        optimizer.step()
        scheduler.step()

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # The module owns its clip value, so manual (GAN) and automatic optimisation clip alike.
        self._clip(optimizer, gradient_clip_val)

    def _clip(self, optimizer, value: float | None = None) -> None:
        value = value or self.hparams.grad_clip
        if not value:
            return
        model = self.trainer.model
        if hasattr(model, "clip_grad_norm_"):  # FSDP: the norm must be taken over all shards together
            model.clip_grad_norm_(value)
        else:
            self.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm="norm")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # The same masks at every validation, so the curve moves only when the model does.
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        with torch.random.fork_rng(devices=[]):
            self._log(self._loss(batch, generator), "val", batch)

    def _log(self, out: StepLoss, split: str, batch: dict) -> None:
        b = batch["video"].shape[0]
        step = split == "train"
        logs = {f"{split}/{k}": v.detach().float() for k, v in out.logs.items()}
        self.log_dict(logs, on_step=step, on_epoch=not step, batch_size=b, sync_dist=not step)
        if step:
            self.log("loss", out.loss.detach().float(), prog_bar=True, logger=False, batch_size=b)
            schedulers = self.lr_schedulers()
            first = schedulers[0] if isinstance(schedulers, list) else schedulers
            self.log("train/lr", first.get_last_lr()[0], batch_size=b)

    def configure_optimizers(self):
        hp = self.hparams
        players = 2 if self.adversary_modules() else 1
        total = self.trainer.max_steps if self._trainer is not None else -1
        if hp.schedule == "cosine" and (total is None or total < 1):
            raise ValueError("model.schedule 'cosine' decays over trainer.max_steps; set trainer.max_steps")
        kw = dict(lr=hp.lr, betas=hp.betas, weight_decay=hp.weight_decay, warmup_steps=hp.warmup_steps,
                  total_steps=max(1, total // players), schedule=hp.schedule, min_lr=hp.min_lr)
        adversary = {id(p) for m in self.adversary_modules() for p in m.parameters()}
        main = build_optimizer(self.trained_modules(), exclude=adversary, **kw)
        if players == 1:
            return main
        adv = build_optimizer(self.adversary_modules(), **{**kw, "lr": hp.disc_lr or hp.lr, "min_lr": None})
        return ([main["optimizer"], adv["optimizer"]],
                [main["lr_scheduler"]["scheduler"], adv["lr_scheduler"]["scheduler"]])

    def configure_model(self) -> None:
        if self.hparams.compile:  # in place: parameter names (and so checkpoints) do not change
            for module in self.trained_modules():
                compile_blocks(module)

    # --- exact resumption: the random streams travel with the checkpoint -----------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng"] = {**rng_state(), "train": self._stream or torch_rng_state(self.device)}
        checkpoint["quantizers"] = {name: m.training_state() for name, m in self.named_modules()
                                    if hasattr(m, "training_state")}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Weights of another model config can load without complaint (action conditioning,
        # for one, changes no parameter), so a resumed run must be the model it continues.
        saved = checkpoint.get("hyper_parameters", {}).get("genie_config")
        saved = _as_current(saved) if isinstance(saved, dict) else saved
        if saved is not None and saved != self.hparams.genie_config:
            changed = ", ".join(config_differences(saved, self.hparams.genie_config))
            raise ValueError(f"the checkpoint was trained with another model config ({changed}); "
                             "resume with the config it was trained with")
        self._resume_rng = checkpoint.get("rng")
        modules = dict(self.named_modules())
        for name, state in checkpoint.get("quantizers", {}).items():
            if name in modules:
                modules[name].load_training_state(state)

    def on_train_start(self) -> None:
        # Restored here, the last moment before the first step, so that nothing between
        # loading and training (sanity validation, worker start-up) shifts the streams.
        if self._resume_rng is not None:
            set_rng_state(self._resume_rng)
            # A checkpoint written before the training stream had its own entry: its global state.
            self._stream = self._resume_rng.get("train") or torch_rng_state(self.device)
            self._resume_rng = None


def rng_state() -> dict:
    """Every global random stream, in types `torch.load(weights_only=True)` accepts."""
    version, keys, gauss = random.getstate()
    kind, mt, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": [version, list(keys), gauss],
             "numpy": [kind, torch.from_numpy(mt.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def torch_rng_state(device: torch.device) -> dict:
    """The torch generators a step on `device` draws from: the CPU's, and the GPU's if it runs on one."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_torch_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    kind, mt, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, mt.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

