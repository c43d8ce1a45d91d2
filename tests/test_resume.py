"""Exact resumption: a run stopped after its codebooks have restarted dead codes (and, in stage 2,
during the action codebook's warm-up) and resumed from last.ckpt logs the uninterrupted run's
losses at every step and ends with bit-identical weights — with validation, persistent data
workers, image logging and the throughput callback all running, as in a real run."""

import os
import signal

import pytest
import torch

pytest.importorskip("lightning")
pytest.importorskip("procgen")

import lightning as L  # noqa: E402

from opengenie.training.cli import GenieCLI  # noqa: E402
from test_training import _args, coinrun, tokenizer_run  # noqa: E402,F401 -- shared fixtures

# Everything that draws randomness outside a training step runs too: validation (whose loader
# seeds its workers from the global generator), persistent workers, pictures, FLOP counting.
BUSY = ["--data.num_workers", "1", "--data.val_split", "train", "--trainer.val_check_interval", "3",
        "--trainer.limit_val_batches", "1", "--images.every_n_steps", "3", "--throughput.peak_flops", "1e12",
        "--model.init_args.warmup_steps", "3"]


class _Record(L.Callback):
    """Every step's loss and the codes restarted so far (`metric`); SIGTERM after step `stop`."""

    def __init__(self, metric: str, stop: int | None = None) -> None:
        self.metric, self.stop = metric, stop
        self.losses: dict[int, float] = {}
        self.restarted = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = float(outputs["loss"])
        self.restarted = float(trainer.callback_metrics[self.metric])
        if trainer.global_step == self.stop:
            os.kill(os.getpid(), signal.SIGTERM)  # Lightning finishes the step, then writes last.ckpt


def _fit(args: list[str], record: _Record, ckpt_path: str | None = None) -> GenieCLI:
    cli = GenieCLI(args=args, run=False)  # seeds everything from the config, as `opengenie train` does
    cli.trainer.callbacks.append(record)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    return cli


def _compare(whole: GenieCLI, resumed: GenieCLI, losses: dict[int, float], parts: dict[int, float]) -> str:
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    gap = max(abs(losses[s] - parts[s]) for s in losses) if losses.keys() == parts.keys() else float("nan")
    return f"max |loss difference| {gap:.3g}; {len(differing)} of {len(a)} weights differ, e.g. {differing[:3]}"


def _check_resume(args: list[str], metric: str, steps: int, stops: list[int], run) -> None:
    whole_record = _Record(metric)
    whole = _fit(_args(*args[:2], run / "whole", steps, *args[2:])[1:], whole_record)
    parts: dict[int, float] = {}
    restarted = []
    for i, stop in enumerate(stops):
        record = _Record(metric, stop=stop)
        with pytest.raises(SystemExit):
            _fit(_args(*args[:2], run / "parts", steps, *args[2:])[1:], record, ckpt_path="last" if i else None)
        assert max(record.losses) == stop and (run / "parts" / "ckpt" / "last.ckpt").is_file()
        parts.update(record.losses)
        restarted.append(record.restarted)
    final = _Record(metric)
    resumed = _fit(_args(*args[:2], run / "parts", steps, *args[2:])[1:], final, ckpt_path="last")
    parts.update(final.losses)
    assert [p.name for p in (run / "parts" / "ckpt").glob("last*")] == ["last.ckpt"]  # refreshed, not last-v1
    assert restarted[-1] > 0, f"no dead code was restarted before the last stop ({metric} = {restarted})"
    assert final.restarted >= restarted[-1]  # the count travels with the checkpoint
    assert sorted(parts) == list(range(1, steps + 1)) == sorted(whole_record.losses)
    report = _compare(whole, resumed, whole_record.losses, parts)
    assert parts == whole_record.losses, report
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), report


def test_tokenizer_resume_after_dead_code_restarts_is_exact(coinrun, tmp_path):
    """Stage 1 stopped at step 5 (dead codes restarted from step 2 on) and resumed to step 8 equals
    the 8-step run exactly: every loss and every weight (torch.equal)."""
    args = ["tokenizer/tiny.yaml", coinrun, *BUSY, "--model.init_args.overrides", "{tokenizer: {dead_code_steps: 2}}"]
    _check_resume(args, "train/codebook/restarted", steps=8, stops=[5], run=tmp_path)


def test_dynamics_resume_in_warmup_and_after_restarts_is_exact(coinrun, tokenizer_run, tmp_path):
    """Stage 2 stopped during the action codebook's warm-up (step 1), resumed, stopped again after
    k-means placed the codes and dead codes were restarted (step 5), and resumed to step 7 equals
    the 7-step run exactly (MaskGIT masks, warm-up noise, k-means, restarts)."""
    overrides = "{action: {dead_code_steps: 1, codebook_warmup_steps: 2}}"
    args = ["dynamics/tiny.yaml", coinrun, *BUSY, "--data.tokens", "false", "--model.init_args.tokenizer",
            str(tokenizer_run / "ckpt" / "last.ckpt"), "--model.init_args.overrides", overrides]
    _check_resume(args, "train/action/restarted", steps=7, stops=[1, 5], run=tmp_path)
