"""`opengenie eval` on a tiny world and real CoinRun episodes: files, keys, determinism, errors."""

import json
import re
from pathlib import Path

import pytest
import torch

from opengenie import Genie, presets
from opengenie.cli import main
from opengenie.data import generate_coinrun
from opengenie.features import weights
from opengenie.evaluation.evaluate import fvd_precision_for
from opengenie.evaluation.report import _shown, run_eval

KEYS = {
    "videos": {"reconstruction", "copy", "inferred", "random"},
    "controllability": {"t", "delta", "inferred_minus_copy", "copy_minus_random", "per_frame"},
    "verdict": {"inferred_beats_copy_at", "inferred_loses_to_copy_at", "random_loses_to_copy_at"},
    "dynamics": {"masked_ce", "masked_accuracy", "next_frame_ce", "next_frame_accuracy", "window"},
    "actions": {"num_actions", "usage", "perplexity", "shares", "nmi", "transitions", "latent_motion"},
    "playability": {"prompts", "steps", "broken_below_db", "actions", "real"},
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
          "--seed", "0", "--skip", "fvd", "--prompts", "2", "--hold-steps", "3", "--out", str(out)])
    m = json.loads((out / "metrics.json").read_text())
    for section, keys in KEYS.items():
        assert keys <= set(m[section]), f"{section} lacks {keys - set(m[section])}"
    assert m["fvd"] is None and m["settings"]["skip"] == ["fvd"] and m["settings"]["split"] == "test"
    assert m["settings"]["num_clips"] == 3 and m["settings"]["frames"] == 16 and m["clips"] == 3
    assert m["settings"]["action_guidance"] == 0.0  # the world's own: plain draws
    assert len(m["videos"]["inferred"]["psnr_per_frame"]["mean"]) == 16
    assert len(m["controllability"]["per_frame"]["delta"]["mean"]) == 15
    rec = m["videos"]["reconstruction"]
    assert rec["lpips"]["mean"] > 0 and 0 < rec["psnr"]["mean"] < 60
    low, high = rec["psnr"]["ci95"]
    assert low <= rec["psnr"]["mean"] <= high and rec["psnr"]["n"] == 3
    nmi = m["actions"]["nmi"]  # CoinRun records true actions: every label is there
    assert set(nmi) == {"true_action", "horizontal_key", "jump", "camera_dx", "camera_dy"}
    assert all(0 <= x["nmi"] <= 1 and 0 <= x["chance"] <= 1 for x in nmi.values())
    assert m["actions"]["transitions"] == 2 * 39  # both test levels, every transition (no restart in 40 steps)
    play = m["playability"]
    assert len(play["actions"]) == 8 and play["prompts"] == 2 and play["steps"] == 3
    assert [r["action"] for r in play["real"]] == ["RIGHT", "LEFT", "UP", "none"] and play["real_matches_data"]
    assert set(play["real_episode_ended"]) == {"RIGHT", "LEFT", "UP", "none"}  # a coin or death stops the camera
    per_clip = json.loads((out / "per_clip.json").read_text())
    assert len(per_clip["inferred_psnr"]) == 3 and len(per_clip["inferred_psnr"][0]) == 16
    report = (out / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) == 5 and all((out / name).is_file() for name in images)
    assert "ΔtPSNR" in report and "copy the prompt" in report and "wrote" in capsys.readouterr().out


def test_metrics_repeat_exactly_for_a_seed(coinrun, model, tmp_path):
    """Two evaluations with the same seed give identical metrics; another seed draws other random actions."""
    runs = [run_eval(model, coinrun, num_clips=2, frames=8, seed=s, batch_size=2, out=tmp_path / f"r{i}",
                     skip=("fvd", "lpips"), prompts=1, hold_steps=2, progress=False) for i, s in enumerate((3, 3, 4))]
    for r in runs:  # wall-clock times are the only thing allowed to differ
        del r["settings"]["seconds"], r["settings"]["seconds_per_part"]
    assert runs[0] == runs[1]
    random = [r["videos"]["random"]["psnr_per_frame"]["mean"] for r in runs]
    assert random[0] != random[2]


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
        (["--batch-size", "0"], "--batch-size: must be >= 1"),
        (["--prompts", "0"], "--prompts: must be >= 1"),
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
    m = run_eval(model, coinrun, num_clips=4, frames=16, seed=0, batch_size=2, out=tmp_path, prompts=1,
                 hold_steps=2, progress=False)
    assert m["fvd"]["clips"] == 4 and m["fvd"]["frames"] == 16 and m["fvd"]["half_clips"] == [2, 2]
    assert all(0 < m["fvd"][k] < float("inf") for k in ("inferred", "copy", "real_vs_real", "inferred_half"))
    assert m["settings"]["fvd_precision"] == fvd_precision_for(torch.device("cpu"))  # "auto", resolved


def test_fvd_precision_auto_takes_bf16_only_where_it_is_native():
    """auto: bf16 on a GPU; on a CPU only with AVX-512 BF16 or AMX (emulated bf16 is many times slower)."""
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert fvd_precision_for(torch.device("cpu")) == ("bf16" if native else "fp32")
    assert fvd_precision_for(torch.device("cuda")) == "bf16"
    assert fvd_precision_for(torch.device("meta")) == "fp32"


def test_clips_stay_within_one_episode(tmp_path):
    """By default no evaluation clip spans an episode's end (dones); --across-episode-ends cuts blindly."""
    import numpy as np

    from opengenie.data import write_episode
    from opengenie.evaluation.report import _load_clips

    frames = np.zeros((40, 16, 16, 3), np.uint8)
    frames[..., 0] = np.arange(40)[:, None, None]
    dones = np.zeros(40, bool)
    dones[[6, 25]] = True  # episodes [0, 7), [7, 26), [26, 40)
    write_episode(tmp_path / "level_000001.npz", frames, actions=np.zeros(40), dones=dones)
    _, within = _load_clips(tmp_path, None, 4, 50, 0, (16, 16), frame_skip=2)
    starts = sorted(int(c["start"]) for c in within)  # clips of 7 frames: 1, 2 and 2 of them
    assert len(starts) == 5 and starts[0] == 0 and 7 <= starts[1] and starts[2] == starts[1] + 7 <= 19
    assert starts[3] == 26 and starts[4] == 33  # 14 frames: no frame to spare
    for clip in within:  # the pixels say which frames a clip holds
        shown = ((clip["video"][0, :, 0, 0] + 1) * 127.5).round().long().tolist()
        assert not any(dones[shown[0]:shown[-1]])
    _, blind = _load_clips(tmp_path, None, 4, 50, 0, (16, 16), frame_skip=2, across_episode_ends=True)
    assert any(dones[int(c["start"]):int(c["start"]) + 6].any() for c in blind)
    with pytest.raises(ValueError, match="across-episode-ends"):  # 21 frames: longer than every episode
        _load_clips(tmp_path, None, 11, 50, 0, (16, 16), frame_skip=2)


def test_settings_name_paths_under_the_working_directory_relatively(tmp_path, monkeypatch):
    """A world evaluated from the repository records `worlds/...`, not the machine's absolute path."""
    (tmp_path / "worlds" / "w").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert _shown(Path("worlds/w")) == _shown(tmp_path / "worlds" / "w") == str(Path("worlds/w"))
    assert _shown(tmp_path.parent) == str(tmp_path.parent.resolve())  # outside: absolute
