"""Data-parallel training on CPU processes (gloo): a DDP run of stage 1 through the CLI, and
VQ dead-code restarts and codebook warm-ups that keep every rank's codebook identical, stage-2 validation NMI pooled
over ranks holding different numbers of clips."""

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from opengenie.nn.quantize import VectorQuantizer

ROOT = Path(__file__).parent.parent
TIMEOUT = 180  # seconds for a pair of ranks; they take a few


def _run_ranks(worker, tmp_path: Path, world: int = 2) -> None:
    """Run `worker(rank, world, init_file, out_dir)` in `world` fresh processes and wait for them.

    Spawned, not forked: a fork of this multi-threaded test process can inherit a lock that some
    thread held at that moment and then wait on it for ever. A rank that is not done within
    TIMEOUT fails the test instead of hanging the run."""
    ctx = torch.multiprocessing.start_processes(worker, args=(world, str(tmp_path / "init"), str(tmp_path)),
                                                nprocs=world, start_method="spawn", join=False)
    deadline = time.monotonic() + TIMEOUT
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            stuck = [rank for rank, process in enumerate(ctx.processes) if process.is_alive()]
            for process in ctx.processes:
                process.kill()
                process.join()
            pytest.fail(f"ranks {stuck} of {world} did not finish within {TIMEOUT} s")


def _init(rank: int, world: int, init: str) -> None:
    """Join the gloo group; a collective that waits on a missing rank fails well before TIMEOUT."""
    torch.set_num_threads(1)  # one core per rank
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=TIMEOUT // 3))


def _finish() -> None:
    """Leave once every rank has written its result. The process exits without tearing down the
    gloo group or the interpreter: gloo's worker threads can outlive that teardown and abort the
    process ("terminate called without an active exception"), a torch shutdown race that says
    nothing about what the test checks."""
    dist.barrier()
    os._exit(0)


def _restart_worker(rank: int, world: int, init: str, out: str) -> None:
    _init(rank, world, init)
    torch.manual_seed(0)  # the same initial codebook everywhere, as DDP makes it
    vq = VectorQuantizer(16, 4, dead_code_steps=2).train()
    start = vq.codebook.detach().clone()
    torch.manual_seed(100 + rank)  # but each rank its own data and its own random draws
    for _ in range(5):
        vq(torch.randn(32, 4) + 4.0 * rank)  # far-apart encodings: the ranks use different codes
    torch.save({"start": start, "codebook": vq.codebook.detach(), "idle": vq.idle_steps}, f"{out}/rank{rank}.pt")
    _finish()


def test_dead_code_restarts_stay_in_sync(tmp_path):
    """With torch.distributed initialised, ranks that see different batches agree on which
    codes are dead and revive them with the same vectors: the codebooks stay identical."""
    _run_ranks(_restart_worker, tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert torch.equal(r0["start"], r1["start"])
    assert not torch.equal(r0["codebook"], r0["start"])  # codes were restarted
    assert torch.equal(r0["codebook"], r1["codebook"]) and torch.equal(r0["idle"], r1["idle"])


def _warmup_worker(rank: int, world: int, init: str, out: str) -> None:
    _init(rank, world, init)
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, warmup_steps=2).train()
    # An encoder in front, as in a model: DDP then insists that every parameter, the codebook
    # included, receives a gradient at every step.
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), vq)
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    torch.manual_seed(100 + rank)  # each rank its own encodings and its own k-means draws
    for _ in range(4):
        q = ddp(torch.randn(32, 2) + 4.0 * rank)
        (q.codes.sum() + q.loss).backward()
    torch.save({"codebook": vq.codebook.detach()}, f"{out}/rank{rank}.pt")
    _finish()


def test_warmup_kmeans_codebook_is_the_same_on_every_rank(tmp_path):
    """Under DDP the warm-up steps train like any other, and after them ranks that remembered
    different encodings start quantising from the same k-means codebook (rank 0's)."""
    _run_ranks(_warmup_worker, tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert torch.equal(r0["codebook"], r1["codebook"])
    assert r0["codebook"].mean(0).abs().max() < 1.5  # rank 0's encodings (around 0), not rank 1's (around 4)


def test_stage1_ddp_two_cpu_processes(tmp_path):
    """The tiny stage-1 config runs unchanged with strategy=ddp on 2 CPU processes (gloo),
    dead-code restarts included; each step consumes a batch per rank."""
    pytest.importorskip("lightning")
    pytest.importorskip("procgen")
    from opengenie.data import generate_coinrun

    generate_coinrun(tmp_path / "data", levels=2, steps_per_level=30, progress=False)
    cmd = [sys.executable, "-m", "opengenie.training", "fit", "--config", str(ROOT / "configs/tokenizer/tiny.yaml"),
           "--data.data", str(tmp_path / "data"), "--data.seq_len", "4", "--data.batch_size", "2",
           "--data.num_workers", "0", "--data.train_split", "null", "--data.val_split", "null",
           "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
           "--trainer.max_steps", "3", "--trainer.default_root_dir", str(tmp_path / "run"),
           "--trainer.enable_progress_bar", "false", "--checkpoint.dirpath", str(tmp_path / "run/ckpt"),
           "--images.every_n_steps", "2", "--model.init_args.overrides", "{tokenizer: {dead_code_steps: 1}}"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = torch.load(tmp_path / "run/ckpt/last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3 and ckpt["GenieDataModule"]["consumed"] == 3 * 2 * 2


VALIDATE = """
import sys, torch, lightning as L
from opengenie.training import DynamicsModule, GenieDataModule
from opengenie.evaluation.actions import nmi
world, data_dir = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
module = DynamicsModule(world)
data = GenieDataModule(data_dir, seq_len=4, batch_size=2, num_workers=0, train_split=None, val_split=None)
data.setup()
data.val_set = torch.utils.data.Subset(data.train_set, range(5))  # 5 clips: ranks hold 3 and 2
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False,
                    enable_model_summary=False)
logged = trainer.validate(module, datamodule=data, verbose=False)[0]["val/action/nmi"]
if trainer.global_rank == 0:
    clips = [data.val_set[i] for i in range(5)]
    video = torch.stack([c["video"] for c in clips])
    true = torch.stack([torch.as_tensor(c["actions"]) for c in clips])[:, :-1]
    print("NMI", logged, nmi(module.infer_actions(video), true))
"""


def test_stage2_validation_nmi_pools_uneven_ranks(tmp_path):
    """Under DDP, val/action/nmi is the NMI of every rank's validation clips together, also when
    the ranks hold different numbers of clips."""
    pytest.importorskip("lightning")
    pytest.importorskip("procgen")
    from opengenie import Genie, presets
    from opengenie.data import generate_coinrun

    generate_coinrun(tmp_path / "data", levels=2, steps_per_level=30, progress=False)
    torch.manual_seed(0)
    Genie(presets.tiny()).save_pretrained(tmp_path / "world")
    (tmp_path / "validate.py").write_text(VALIDATE)
    done = subprocess.run([sys.executable, "validate.py", str(tmp_path / "world"), str(tmp_path / "data")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    logged, pooled = (float(x) for x in done.stdout.split("NMI")[-1].split())
    assert logged == pytest.approx(pooled, abs=1e-6)
