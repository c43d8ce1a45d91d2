"""`opengenie eval` on a tiny world and real CoinRun episodes: files, keys, determinism, errors."""

import json
import re

import pytest
import torch

from opengenie import Genie, presets
from opengenie.cli import main
from opengenie.data import generate_coinrun
from opengenie.evaluation import weights
from opengenie.evaluation.report import run_eval

KEYS = {
    "tokenizer": {"psnr", "ssim", "lpips", "psnr_per_frame"},
    "rollout": {"psnr", "ssim", "psnr_per_frame", "ssim_per_frame"},
    "controllability": {"t", "delta_t_psnr", "delta_psnr_per_frame", "psnr_random_per_frame"},
    "dynamics": {"masked_ce", "masked_accuracy", "next_frame_ce", "next_frame_accuracy", "window"},
    "actions": {"num_actions", "usage", "perplexity", "shares", "nmi"},
    "settings": {"model", "data", "split", "num_clips", "frames", "seed", "batch_size", "skip", "fvd_resize"},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models run fastest single-threaded on a shared CPU
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def coinrun(tmp_path_factory):
    """Five real procgen CoinRun levels of 40 frames; levels 51 and 55 hash to the test split."""
    out = tmp_path_factory.mktemp("coinrun")
    generate_coinrun(out, levels=5, steps_per_level=40, start_level=51)
    return out


@pytest.fixture(scope="session")
def model(tmp_path_factory):
    torch.manual_seed(0)
    return Genie(presets.tiny()).save_pretrained(tmp_path_factory.mktemp("world"))


def test_cli_writes_every_metric_and_the_figures(coinrun, model, tmp_path, capsys):
    """metrics.json holds every metric and setting; report.md references PNGs that exist."""
    weights.fetch(["alexnet"])
    out = tmp_path / "eval"
    main(["eval", "--model", str(model), "--data", str(coinrun), "--num-clips", "3", "--batch-size", "2",
          "--seed", "0", "--skip", "fvd", "--out", str(out)])
    m = json.loads((out / "metrics.json").read_text())
    for section, keys in KEYS.items():
        assert keys <= set(m[section]), f"{section} lacks {keys - set(m[section])}"
    assert m["fvd"] is None and m["settings"]["skip"] == ["fvd"] and m["settings"]["split"] == "test"
    assert m["settings"]["num_clips"] == 3 and m["settings"]["frames"] == 16
    assert len(m["rollout"]["psnr_per_frame"]) == 16 and len(m["controllability"]["delta_psnr_per_frame"]) == 15
    assert m["tokenizer"]["lpips"] > 0 and 0 < m["tokenizer"]["psnr"] < 60
    assert 0 <= m["actions"]["nmi"] <= 1 and 0 < m["actions"]["usage"] <= 1  # CoinRun records true actions
    report = (out / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) == 3 and all((out / name).is_file() for name in images)
    assert "ΔtPSNR" in report and "wrote" in capsys.readouterr().out


def test_metrics_repeat_exactly_for_a_seed(coinrun, model, tmp_path):
    """Two evaluations with the same seed give identical metrics; another seed draws other random actions."""
    runs = [run_eval(model, coinrun, num_clips=2, frames=8, seed=s, batch_size=2, out=tmp_path / f"r{i}",
                     skip=("fvd", "lpips"), progress=False) for i, s in enumerate((3, 3, 4))]
    for r in runs:
        del r["settings"]["seconds"]
    assert runs[0] == runs[1]
    assert runs[0]["controllability"]["psnr_random_per_frame"] != runs[2]["controllability"]["psnr_random_per_frame"]


def test_bad_inputs_give_clear_errors(coinrun, model, tmp_path, monkeypatch, capsys):
    """Each input a user can get wrong exits with a message that says what to do."""
    base = ["eval", "--model", str(model), "--data", str(coinrun), "--out", str(tmp_path / "o"),
            "--num-clips", "2", "--skip", "fvd,lpips"]
    (tmp_path / "empty").mkdir()
    cases = [
        (["--model", str(tmp_path / "nope")], "Genie.save_pretrained"),
        (["--model", str(tmp_path / "empty")], "config.json is missing"),
        (["--data", str(tmp_path / "nope")], "opengenie data coinrun"),
        (["--data", str(tmp_path / "empty")], "no episodes in"),
        (["--split", "nope"], "invalid choice"),
        (["--split", "val"], "--split all"),
        (["--frames", "64"], "--frames 64 is too long"),
        (["--skip", "lpips", "--frames", "8"], "FVD needs clips of at least 9 frames"),
        (["--skip", "psnr"], "--skip takes fvd, lpips"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(base + extra)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err, extra
    monkeypatch.setenv("OPENGENIE_CACHE", str(tmp_path / "no-cache"))
    with pytest.raises(SystemExit):
        main(base + ["--skip", "fvd"])
    err = capsys.readouterr().err
    assert "opengenie weights fetch" in err and "--skip lpips" in err


@pytest.mark.slow
def test_fvd_of_sixteen_frame_rollouts(coinrun, model, tmp_path):
    """With FVD on, 16-frame rollouts of the 8-frame tiny world get a finite, positive FVD."""
    weights.fetch(["i3d", "alexnet"])
    m = run_eval(model, coinrun, num_clips=4, frames=16, seed=0, batch_size=2, out=tmp_path, progress=False)
    assert m["fvd"]["clips"] == 4 and m["fvd"]["frames"] == 16
    assert 0 < m["fvd"]["fvd"] < float("inf")
