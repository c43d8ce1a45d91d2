"""`opengenie train` as a person meets it: a quiet console and a closing summary with learning
curves; a re-run into an earlier run's folder, a damaged checkpoint, a misspelt option and a
bad config value each refused with one line and exit status 2; checkpoints written whole."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")
pytest.importorskip("procgen")

from opengenie.cli import main as opengenie  # noqa: E402
from opengenie.training.checkpoints import checkpoint_problem  # noqa: E402
from test_training import CONFIGS, SEQ, coinrun  # noqa: E402,F401 -- shared fixture

TINY = str(CONFIGS / "tokenizer" / "tiny.yaml")


def _train_args(data: Path, run: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "tokenizer", "--config", TINY, "--data.data", str(data), "--data.seq_len", str(SEQ),
            "--data.batch_size", "2", "--data.num_workers", "0", "--data.train_split", "null",
            "--data.val_split", "train", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
            "--trainer.max_steps", str(steps), "--trainer.log_every_n_steps", "1",
            "--trainer.default_root_dir", str(run), "--trainer.enable_progress_bar", "false",
            "--checkpoint.dirpath", str(run / "ckpt"), "--checkpoint.every_n_train_steps", "2",
            "--images.every_n_steps", "0", "--throughput.peak_flops", "1e12", *extra]


@pytest.fixture(scope="module")
def finished(coinrun, tmp_path_factory):
    """A real 4-step stage-1 run through the `opengenie` command in its own process: (folder, console)."""
    run = tmp_path_factory.mktemp("run")
    code = "import sys; from opengenie.cli import main; main(sys.argv[1:])"
    done = subprocess.run([sys.executable, "-c", code, *_train_args(coinrun, run, 4)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return run, done.stdout + done.stderr


def _refused(capsys, args: list[str]) -> str:
    """The error line of a command that must exit with status 2."""
    with pytest.raises(SystemExit) as exit_:
        opengenie(args)
    assert exit_.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("opengenie train: error: "), errors  # one line, no traceback
    return errors[0]


def test_closing_summary_and_learning_curves(finished):
    """The run ends with a summary (steps, wall-clock, final train and val metrics, where the
    checkpoints are) and writes curves.png beside its logs."""
    from PIL import Image

    run, console = finished
    summary = console[console.index("Training finished"):]
    assert summary.startswith("Training finished: 4 steps in ")
    assert "final train: loss " in summary and "final val: loss " in summary and "psnr" in summary
    assert f"checkpoints: {run / 'ckpt'} (" in summary and "last.ckpt" in summary
    curves = Path(summary.split("learning curves: ")[1].split()[0])
    assert curves.is_file() and curves.parent.parent.parent == run  # run/lightning_logs/version_0/curves.png
    image = Image.open(curves)
    assert image.format == "PNG" and image.width >= 400 and image.height >= 2 * 250  # loss and PSNR panels
    assert len(set(image.convert("RGB").getdata())) > 3  # lines drawn, not a blank canvas


def test_console_has_no_adverts_or_noise(finished):
    """No Lightning advert (litlogger / litmodels tips), no '0 Total Flops' line, no gym banner;
    the model summary itself still prints."""
    _, console = finished
    assert "Trainable params" in console
    for noise in ("💡", "Tip:", "litlogger", "litmodels", "Total Flops", "unmaintained", "Gymnasium"):
        assert noise not in console, noise


def test_rerun_into_an_earlier_runs_folder_is_refused(finished, coinrun, capsys):
    """Starting a run where checkpoints already are says how to resume, move or overwrite,
    instead of silently writing last-v1.ckpt."""
    run, _ = finished
    line = _refused(capsys, _train_args(coinrun, run, 4))
    assert str(run / "ckpt") in line and "last.ckpt" in line
    assert "--ckpt_path last" in line and "--checkpoint.dirpath" in line and "--checkpoint.overwrite true" in line
    assert not list((run / "ckpt").glob("last-v*"))


def test_overwrite_starts_afresh(finished, coinrun, tmp_path):
    """--checkpoint.overwrite true deletes the folder's checkpoints, and the new run writes last.ckpt,
    holding its final step even when max_steps (3) is no multiple of every_n_train_steps (2)."""
    run = tmp_path / "again"
    shutil.copytree(finished[0] / "ckpt", run / "ckpt")
    opengenie(_train_args(coinrun, run, 3, "--checkpoint.overwrite", "true"))
    assert sorted(p.name for p in (run / "ckpt").glob("*.ckpt")) == ["epoch=0-step=2.ckpt", "last.ckpt"]
    assert torch.load(run / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_resume_last_without_a_checkpoint_folder(coinrun, tmp_path):
    """--ckpt_path last resumes a run whose checkpoints went to Lightning's default folder (no
    --checkpoint.dirpath), although the new run writes to a new version folder: the newest
    last.ckpt under the root, not a file called "last", nor a fresh start."""
    run = tmp_path / "default-folder"
    args = [a for a in _train_args(coinrun, run, 2) if a != str(run / "ckpt")]
    args[args.index("--checkpoint.dirpath") + 1:args.index("--checkpoint.dirpath") + 1] = ["null"]
    opengenie(args)
    opengenie([*args[:args.index("--trainer.max_steps") + 1], "3", *args[args.index("--trainer.max_steps") + 2:],
               "--ckpt_path", "last"])
    first, resumed = sorted(run.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)  # version_0, version_1
    assert torch.load(first, weights_only=True)["global_step"] == 2
    assert torch.load(resumed, weights_only=True)["global_step"] == 3
    # went on from step 2: a fresh start would have saved its own step 2 there
    assert [p.name for p in resumed.parent.glob("*.ckpt")] == ["last.ckpt"]


def test_damaged_checkpoint_is_refused_naming_the_intact_ones(finished, coinrun, tmp_path, capsys):
    """A truncated last.ckpt (--ckpt_path last) or a file that is no checkpoint (a path) is refused
    in one sentence naming it, what is wrong, and the intact checkpoints beside it."""
    run = tmp_path / "damaged"
    shutil.copytree(finished[0] / "ckpt", run / "ckpt")
    last = run / "ckpt" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    line = _refused(capsys, _train_args(coinrun, run, 6, "--ckpt_path", "last"))
    assert f"cannot resume from {last}: it is truncated" in line
    assert "intact checkpoints beside it: epoch=0-step=2.ckpt, epoch=0-step=4.ckpt" in line
    other = run / "ckpt" / "notes.ckpt"
    other.write_text("not a checkpoint")
    line = _refused(capsys, _train_args(coinrun, run, 6, "--ckpt_path", str(other)))
    assert f"cannot resume from {other}: it is not a PyTorch checkpoint" in line and "epoch=0-step=4.ckpt" in line


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("the disk filled up")


def test_a_failed_write_leaves_the_previous_checkpoint_intact(finished, tmp_path):
    """A checkpoint write that fails half-way (through the trainer's own writer) leaves the old
    last.ckpt byte for byte, and no temp file behind."""
    from lightning.fabric.plugins import TorchCheckpointIO

    from opengenie.training.callbacks import AtomicCheckpointIO

    last = tmp_path / "last.ckpt"
    shutil.copy(finished[0] / "ckpt" / "last.ckpt", last)
    before = last.read_bytes()
    big = {"state_dict": {"w": torch.zeros(1_000_000)}, "after": _Unpicklable()}
    with pytest.raises(RuntimeError, match="disk filled up"):
        AtomicCheckpointIO(TorchCheckpointIO()).save_checkpoint(big, last)
    assert last.read_bytes() == before and checkpoint_problem(last) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    AtomicCheckpointIO(TorchCheckpointIO()).save_checkpoint({"state_dict": {"w": torch.ones(3)}}, last)
    assert torch.equal(torch.load(last, weights_only=True)["state_dict"]["w"], torch.ones(3))


def test_misspelt_option_is_refused(capsys):
    """`--trainer.max_step 5` (for max_steps) is not taken as an abbreviation: exit 2, one line
    naming it and the option meant."""
    line = _refused(capsys, ["train", "tokenizer", "--config", TINY, "--trainer.max_step", "5"])
    assert line.endswith("unknown option --trainer.max_step (did you mean --trainer.max_steps?)")


@pytest.mark.parametrize("extra, message", [
    (["--model.init_args.preset", "huge"], "unknown preset 'huge'; choose one of ['coinrun', 'small', 'tiny']"),
    (["--trainer.max_steps", "many"], "trainer.max_steps: expected int, got many"),
    (["--config", "missing.yaml"], "config: file does not exist: "),
])
def test_config_errors_are_one_line(extra, message, capsys, tmp_path):
    """A bad preset name, a wrong type or a missing config file: the one line that matters, exit 2."""
    line = _refused(capsys, ["train", "tokenizer", "--config", TINY, "--checkpoint.dirpath", str(tmp_path), *extra])
    assert message in line and "Given value" not in line and "Subtypes" not in line
