"""The end of a run: a closing summary on the console and the learning curves as curves.png.

    RunSummary       at the end of fit: steps, wall-clock, final metrics, where the checkpoints
                     are, and the learning curves as a PNG beside the logs
    learning_curves  the PIL image of those curves
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


CURVES = ("loss", "psnr", "dynamics/cross_entropy", "action/psnr")  # panels of curves.png, when logged


class RunSummary(Callback):
    """At the end of fit, a closing summary on the console — steps, wall-clock, the final train
    and val metrics, where the checkpoints are — and the learning curves (train/val loss and
    the stage's quality metric against the step) as `curves.png` beside the logs.

    The curves are recorded every `trainer.log_every_n_steps` steps and travel in checkpoints,
    so a resumed run draws its whole history.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[list[float]]] = {}  # "train/loss" -> [[step, value], ...]
        self._start = time.perf_counter()
        self._first_step = 0
        self.curves: Path | None = None

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.history = {k: [list(p) for p in v] for k, v in state.get("history", {}).items()}

    def on_train_start(self, trainer, pl_module) -> None:
        self._start, self._first_step = time.perf_counter(), trainer.global_step

    def _record(self, trainer, split: str) -> None:
        for name in CURVES:
            value = trainer.callback_metrics.get(f"{split}/{name}")
            if value is not None:
                self.history.setdefault(f"{split}/{name}", []).append([trainer.global_step, float(value)])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self._record(trainer, "train")

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, "val")

    def on_fit_end(self, trainer, pl_module) -> None:
        folder = Path(trainer.log_dir or trainer.default_root_dir)  # a collective: on every rank
        if not trainer.is_global_zero:
            return
        if any(len(v) > 1 for v in self.history.values()):
            folder.mkdir(parents=True, exist_ok=True)
            self.curves = folder / "curves.png"
            learning_curves(self.history).save(self.curves)
        print(self.summary(trainer), flush=True)

    def summary(self, trainer) -> str:
        seconds = time.perf_counter() - self._start
        steps = trainer.global_step
        resumed = f", resumed at step {self._first_step}" if self._first_step else ""
        lines = [f"Training finished: {steps} steps in {_duration(seconds)} ({steps - self._first_step} this run{resumed})."]
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        for split in ("train", "val"):
            shown = [f"{k[len(split) + 1:]} {v:.4g}" for k, v in metrics.items() if k.startswith(f"{split}/")]
            if shown:
                lines.append(f"  final {split}: " + ", ".join(shown))
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.dirpath and os.path.isdir(ckpt.dirpath):
            names = sorted(p.name for p in Path(ckpt.dirpath).glob("*.ckpt"))
            lines.append(f"  checkpoints: {ckpt.dirpath} ({', '.join(names)})")
            lines.append("  resume or extend with --ckpt_path last (and a larger --trainer.max_steps)")
        if self.curves is not None:
            lines.append(f"  learning curves: {self.curves}")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m {s:02d}s" if hours else f"{m}m {s:02d}s" if m else f"{seconds:.1f} s"


def learning_curves(history: dict[str, list[list[float]]], panel: tuple[int, int] = (640, 300)):
    """A PIL image of one panel per metric of `CURVES` in `history`: train and val against the step."""
    from PIL import Image, ImageDraw

    from opengenie.evaluation.figures import BACKGROUND, COLOURS, INK, _Axes, _limits

    names = [n for n in CURVES if f"train/{n}" in history or f"val/{n}" in history]
    w, h = panel
    img = Image.new("RGB", (w, h * len(names)), BACKGROUND)
    for row, name in enumerate(names):
        series = {split: history.get(f"{split}/{name}", []) for split in ("train", "val")}
        points = [p for s in series.values() for p in s]
        first, last = min(p[0] for p in points), max(p[0] for p in points)
        part = Image.new("RGB", panel, BACKGROUND)  # one panel at a time: the axes draw at fixed offsets
        draw, top = ImageDraw.Draw(part), 0
        ax = _Axes(draw, (60, 30, w - 120, h - 40), (first, max(last, first + 1)), _limits([p[1] for p in points]))
        ax.frame("step", name, f"{name} (train every logged step, val at each validation)")
        for i, (split, s) in enumerate(series.items()):
            if not s:
                continue
            xy = [ax.px(x, y) for x, y in s]
            if len(xy) > 1:
                draw.line(xy, fill=COLOURS[i], width=2)
            for x, y in xy if split == "val" else xy[-1:]:
                draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=COLOURS[i])
            draw.line([(w - 110, top + 40 + 16 * i), (w - 90, top + 40 + 16 * i)], fill=COLOURS[i], width=3)
            draw.text((w - 85, top + 34 + 16 * i), split, fill=INK)
        img.paste(part, (0, row * h))
    return img
