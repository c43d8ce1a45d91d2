"""What a researcher watches during training, and the checkpoint that survives preemption.

    ImageLogger      every N steps: stage 1 reconstructions, stage 2 rollouts with inferred
                     (and random) actions, on fixed clips, to TensorBoard (PNG files with CSV)
    Throughput       tokens/s, clips/s and MFU in the logs and the progress bar
    GenieCheckpoint  a checkpoint every N steps plus last.ckpt, and last.ckpt on SIGTERM, each
                     written whole or not at all (a temp file, fsync, os.replace)

The closing summary and curves.png of a run are in `summary.py`.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from opengenie.training.checkpoints import write_atomically
from opengenie.training.throughput import measure_peak_flops, precision_dtype, step_flops_per_clip


def video_grid(rows: list[torch.Tensor], names: list[str], labels: list | None = None) -> torch.Tensor:
    """Clips side by side as one picture: (3, H', W') float in [0, 1].

    rows: videos (B, C, T, H, W) in [-1, 1], all alike in shape; clip b shows as one block of
    len(rows) strips of T frames, each strip named on its left. labels[r][b][t] (optional, None
    for a row without) is drawn on frame t of clip b in row r, e.g. the action that made it.
    """
    from PIL import Image, ImageDraw

    b, _, t, h, w = rows[0].shape
    name_w, gap, pad = 110, 6, 1
    width = name_w + t * (w + pad)
    height = b * (len(rows) * (h + pad) + gap)
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    for i in range(b):
        for r, video in enumerate(rows):
            top = i * (len(rows) * (h + pad) + gap) + r * (h + pad)
            draw.text((4, top + h // 2 - 6), names[r], fill=(230, 230, 230))
            frames = ((video[i].float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()  # (C, T, H, W)
            frames = frames.permute(1, 2, 3, 0).numpy()  # (T, H, W, C)
            for j in range(t):
                left = name_w + j * (w + pad)
                canvas.paste(Image.fromarray(np.ascontiguousarray(frames[j])), (left, top))
                text = labels[r][i][j] if labels and labels[r] is not None else ""
                if text:
                    draw.rectangle((left, top, left + 6 * len(text) + 3, top + 11), fill=(0, 0, 0))
                    draw.text((left + 2, top), text, fill=(255, 220, 0))
    return torch.from_numpy(np.array(canvas)).permute(2, 0, 1).float() / 255.0


def log_image(trainer: L.Trainer, tag: str, image: torch.Tensor, step: int) -> None:
    """Send (3, H, W) in [0, 1] to every logger: TensorBoard images, W&B-style `log_image`,
    else PNG files under the logger's directory (the CSV logger)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, step)
        elif hasattr(logger, "log_image"):
            logger.log_image(key=tag, images=[image], step=step)
        elif getattr(logger, "log_dir", None):
            from PIL import Image

            out = Path(logger.log_dir) / "images"
            out.mkdir(parents=True, exist_ok=True)
            pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(out / f"{tag.replace('/', '_')}_{step:07d}.png")


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


class ImageLogger(Callback):
    """Every `every_n_steps` steps, log the stage's `images()` on `clips` fixed clips (the
    first validation clips when there are any, else the first training batch), so the
    pictures of different steps show the same scenes. Off with every_n_steps: 0."""

    def __init__(self, every_n_steps: int = 500, clips: int = 4) -> None:
        self.every_n_steps, self.clips = every_n_steps, clips
        self._fixed: dict | None = None
        self._last = -1  # the step of the last pictures (checkpointed: a resumed run draws none extra)

    def state_dict(self) -> dict:
        return {"last": self._last}

    def load_state_dict(self, state: dict) -> None:
        self._last = int(state.get("last", -1))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # At the start of a step, so the pictures show the model after `global_step` steps
        # (the first at step 0) and the step's own timing (Throughput) leaves them out.
        step = trainer.global_step
        if self.every_n_steps <= 0 or step // self.every_n_steps == self._last // self.every_n_steps:
            return
        self._last = step
        if "fsdp" in type(trainer.strategy).__name__.lower():
            rank_zero_warn("ImageLogger: skipped under FSDP (the networks' weights are sharded)")
            self.every_n_steps = 0
            return
        if not trainer.is_global_zero:
            return  # rank 0's module alone, outside the DDP wrapper: no collectives involved
        if self._fixed is None:
            sample = getattr(trainer.datamodule, "sample_batch", None)
            fixed = sample(self.clips) if sample is not None else None
            self._fixed = fixed if fixed is not None else {k: v[: self.clips] for k, v in batch.items()
                                                           if torch.is_tensor(v)}
        was = pl_module.training
        pl_module.eval()
        try:
            with torch.random.fork_rng(devices=[pl_module.device] if pl_module.device.type == "cuda" else []):
                images = pl_module.images(_to(self._fixed, pl_module.device))
        finally:
            pl_module.train(was)
        for name, image in images.items():
            log_image(trainer, f"images/{name}", image, step)


class Throughput(Callback):
    """tokens/s, clips/s (whole job) and MFU (per device), averaged over the last `window` steps.

    A step's time is its compute plus the wait for its batch; validation and image logging
    are left out. peak_flops: the device's peak in FLOP/s; None measures it once at the start
    (a second of bf16 or fp32 matmuls, as the trainer's precision says). List this callback
    after ImageLogger (the CLI does), so that its step clock starts after the pictures.
    """

    def __init__(self, window: int = 20, peak_flops: float | None = None) -> None:
        self.window, self.peak_flops = window, peak_flops
        self._steps: deque[float] = deque(maxlen=window)
        self._flops: float | None = None
        self._tokens = 0
        self._start = self._end = None

    def on_train_start(self, trainer, pl_module) -> None:
        if self.peak_flops is None:
            dtype = precision_dtype(trainer.precision)
            self.peak_flops = measure_peak_flops(pl_module.device, dtype)
            rank_zero_info(f"Throughput: measured peak {self.peak_flops / 1e12:.3g} TFLOP/s ({dtype}, "
                           f"{pl_module.device.type}) for MFU")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._flops is None:
            self._tokens = pl_module.tokens_per_clip(batch)
            try:
                self._flops = step_flops_per_clip(pl_module, batch)
            except Exception as err:  # noqa: BLE001 -- e.g. sharded weights: report no MFU, train on
                rank_zero_warn(f"Throughput: could not count model FLOPs ({err}); MFU is not logged")
                self._flops = 0.0
            self._end = None
        self._start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self._end = None  # the next batch's wait would include validation

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        wait = self._start - self._end if self._end is not None else 0.0
        self._steps.append(now - self._start + wait)
        self._end = now
        per_step = sum(self._steps) / len(self._steps)
        b = batch["video"].shape[0]
        clips = b / per_step  # on this device
        world = trainer.world_size
        pl_module.log("perf/clips_per_s", clips * world, batch_size=b)
        pl_module.log("perf/tokens_per_s", clips * world * self._tokens, batch_size=b)
        pl_module.log("tok/s", clips * world * self._tokens, prog_bar=True, logger=False, batch_size=b)
        if self._flops and self.peak_flops:
            mfu = clips * self._flops / self.peak_flops
            pl_module.log("perf/mfu", mfu, batch_size=b)
            pl_module.log("mfu", mfu, prog_bar=True, logger=False, batch_size=b)


class GenieCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with training-run defaults — every `every_n_train_steps`
    steps, plus `last.ckpt` — that also writes `last.ckpt` when the job is told to stop
    (SIGTERM: preemption, a scheduler's time limit, `kill`). Lightning turns SIGTERM into an
    exception after the current step, on every rank at once; the checkpoint is written then,
    and `--ckpt_path last` resumes from that step exactly.

    Every file is written to a temp file in the same folder, flushed to disk and renamed onto
    its name, so a crash mid-write leaves the previous checkpoint intact. overwrite: a new run
    (no --ckpt_path) into a folder that already holds checkpoints first deletes them; without
    it, the CLI refuses such a run (it would otherwise write last-v1.ckpt beside last.ckpt)."""

    def __init__(self, dirpath: str | None = None, every_n_train_steps: int | None = 1000,
                 save_last: bool = True, save_top_k: int = -1, monitor: str | None = None,
                 mode: str = "min", filename: str | None = None, overwrite: bool = False, **kwargs) -> None:
        super().__init__(dirpath=dirpath, every_n_train_steps=every_n_train_steps, save_last=save_last,
                         save_top_k=save_top_k, monitor=monitor, mode=mode, filename=filename, **kwargs)
        self.overwrite = overwrite

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if not isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO):
            trainer.strategy.checkpoint_io = AtomicCheckpointIO(trainer.strategy.checkpoint_io)

    def on_fit_start(self, trainer, pl_module) -> None:
        # A fresh run (nothing restored) told to overwrite: the old files go before the first save.
        if self.overwrite and not trainer.ckpt_path and self.dirpath and trainer.is_global_zero:
            for old in Path(self.dirpath).glob("*.ckpt"):
                old.unlink()

    def on_train_end(self, trainer, pl_module) -> None:
        # The last step is saved even when max_steps is no multiple of every_n_train_steps, so
        # last.ckpt is always the finished model (what `opengenie export` reads).
        super().on_train_end(trainer, pl_module)
        if self.save_last and self.dirpath and trainer.global_step != self._last_global_step_saved:
            self._save_last(trainer)

    def _save_last(self, trainer) -> str:
        path = os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)
        if trainer.is_global_zero and os.path.islink(path):
            os.unlink(path)  # a `save_last: link` symlink: write a file, not through the link
        # Recorded in the callback's state, so the resumed run keeps writing last.ckpt
        # (rather than last-v1.ckpt beside a file it does not know).
        self.last_model_path = path
        trainer.save_checkpoint(path, weights_only=False)
        self._last_global_step_saved = trainer.global_step
        return path

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)  # Lightning's own `save_on_exception`
        if not isinstance(exception, SIGTERMException) or self.dirpath is None:
            return
        path = self._save_last(trainer)
        rank_zero_info(f"SIGTERM: saved {path} at step {trainer.global_step}; resume with --ckpt_path last")


class AtomicCheckpointIO(CheckpointIO):
    """A strategy's checkpoint writer whose local files appear whole or not at all
    (`write_atomically`); remote paths (`s3://...`) are written as the wrapped writer does."""

    def __init__(self, inner: CheckpointIO) -> None:
        self.inner = inner

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if "://" in str(path):
            self.inner.save_checkpoint(checkpoint, path, storage_options=storage_options)
        else:
            write_atomically(path, lambda tmp: self.inner.save_checkpoint(checkpoint, tmp, storage_options=storage_options))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        kwargs = {} if map_location is None else {"map_location": map_location}
        return self.inner.load_checkpoint(path, weights_only=weights_only, **kwargs)

    def remove_checkpoint(self, path) -> None:
        self.inner.remove_checkpoint(path)

    def teardown(self) -> None:
        self.inner.teardown()
