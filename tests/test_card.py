"""World cards: README.md written from a world's config.json, its training runs and an evaluation."""

from __future__ import annotations

import copy
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from opengenie import Genie, presets
from opengenie.card import (GENERATED, _provenance_rows, card, mark_kept_evaluations, provenance_from_checkpoints,
                            weights_digest, write_card)

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("still", "walk right", "walk left", "jump", "fall", "still 2", "jump right", "jump left")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models run fastest single-threaded on a shared CPU
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny world labelled as `opengenie label` writes it, stored in fp16 at frame skip 2."""
    torch.manual_seed(0)
    config = presets.tiny()
    config = replace(config, action_labels=LABELS[:config.dynamics.num_actions], frame_skip=2,
                     arrow_keys={"ArrowRight": 1, "ArrowLeft": 2, "ArrowUp": 3})
    model = Genie(config)
    path = model.save_pretrained(tmp_path_factory.mktemp("world"), dtype=torch.float16)
    return path, sum(p.numel() for p in model.state_dict().values())


def _rows(markdown: str, header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header line starts with `header`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_card_lists_the_configs_labels_keys_and_sizes(world):
    """The card names every action with its label and arrow key, the parameter count, dtype and frame step."""
    path, parameters = world
    text = card(path)
    config = json.loads((path / "config.json").read_text())
    rows = _rows(text, "| action | label | key |")
    assert [r[1] for r in rows] == config["action_labels"]
    assert [r[2] for r in rows][:4] == ["", "→", "←", "↑"]
    assert f"{parameters / 1e6:.1f}M parameters, fp16" in text
    assert f"{config['dynamics']['maskgit_steps']} MaskGIT steps" in text
    assert "2 video frames per world step (`frame_skip` 2)" in text
    assert "Arrow keys: → action 1, ← action 2, ↑ action 3; ↓ unmapped." in text
    assert "## Evaluation" not in text  # no metrics given or kept beside the world


def test_card_shows_the_evaluation_beside_its_baselines(world, tmp_path):
    """With a real `opengenie eval` metrics.json the card holds each video's PSNR (world, random, copy,
    tokenizer), the held-action motion beside the real game's keys, and limitations drawn from them.
    An evaluation kept with the world rewrites its generated card; one of other weights is left out."""
    from opengenie.data import generate_coinrun
    from opengenie.evaluation.report import run_eval

    path, _ = world
    data = tmp_path / "coinrun"
    generate_coinrun(data, levels=3, steps_per_level=24, start_level=51)
    readme = path / "README.md"
    write_card(path)  # a generated card, without an evaluation yet
    try:
        m = run_eval(path, data, split=None, num_clips=2, frames=8, seed=0, batch_size=2, out=path / "eval",
                     skip=("fvd", "lpips"), prompts=1, hold_steps=2, progress=False)
        assert m["settings"]["weights_sha256"] == weights_digest(path)
        text = card(path, metrics=path / "eval" / "metrics.json")
        (psnr,) = _rows(text, "| | world, inferred actions")
        for cell, key in zip(psnr[1:], ("inferred", "random", "copy", "reconstruction")):
            assert cell.startswith(f"{m['videos'][key]['psnr']['mean']:.2f}".replace("-", "−") + " [")
        motion = _rows(text, "| action | label | key | dx | dy | broken |")
        assert [r[1] for r in motion[:len(LABELS)]] == list(LABELS)
        # The stored labels come from other prompts: the last column is what these rows read as.
        assert [r[6] for r in motion[:len(LABELS)]] == [a["label"] for a in m["playability"]["actions"]]
        assert [r[0] for r in motion[len(LABELS):]] == ["real RIGHT", "real LEFT", "real UP", "real none"]
        assert motion[0][3] == f"{m['playability']['actions'][0]['dx_total']:.1f}".replace("-", "−")
        assert f"ΔtPSNR@{m['controllability']['t']}" in text
        worst = max(m["playability"]["actions"], key=lambda r: r["broken"])
        # Named only when some frame broke.
        assert (f"Up to {worst['broken']:.1%} of an action's frames visibly break" in text) == (worst["broken"] > 0)
        # Kept beside the world, the same metrics are found without being named, and the eval wrote them in.
        assert card(path) == text and readme.read_text() == text
        # Weights exported over the folder since: the kept evaluation is not theirs, and the card says so.
        stale = json.loads((path / "eval" / "metrics.json").read_text())
        stale["settings"]["weights_sha256"] = "0" * 64
        (path / "eval" / "metrics.json").write_text(json.dumps(stale))
        left = card(path)
        assert "| PSNR" not in left and "`eval/metrics.json` measured other weights" in left
        assert f"opengenie eval --model {path} --data {data.resolve()} --split all --out {path / 'eval'}`" in left
        with pytest.raises(ValueError, match="other weights"):
            card(path, metrics=stale)
        # A fresh one in eval/ wins over a stale one kept beside it.
        (path / "metrics.json").write_text(json.dumps(stale))
        (path / "eval" / "metrics.json").write_text(json.dumps(m))
        assert card(path) == text
        (path / "metrics.json").unlink()
        # Sampled at other MaskGIT steps than the world's: the card's command says so.
        other = copy.deepcopy(m)
        other["settings"]["maskgit_steps"] += 1
        assert f"--maskgit-steps {other['settings']['maskgit_steps']}`" in card(path, metrics=other)
        other["settings"]["action_guidance"] = 3.0  # and with action guidance the world does not use
        assert f"--maskgit-steps {other['settings']['maskgit_steps']} --action-guidance 3`" in card(path, metrics=other)
        assert "--guidance-against" not in card(path, metrics=other)  # against the mean, as the world's own
        other["settings"]["guidance_against"] = "none"  # against no action
        assert "--action-guidance 3 --guidance-against none`" in card(path, metrics=other)
        # One written before digests were recorded is taken; an export stamps it with the weights it
        # replaces, so the card of the new weights leaves it out.
        legacy = copy.deepcopy(m)
        del legacy["settings"]["weights_sha256"]
        (path / "eval" / "metrics.json").write_text(json.dumps(legacy))
        assert card(path) == text
        moved = shutil.copytree(path, tmp_path / "copy")
        assert mark_kept_evaluations(moved) == [moved / "eval" / "metrics.json"] and mark_kept_evaluations(moved) == []
        torch.manual_seed(1)
        Genie(Genie.from_pretrained(moved).config).save_pretrained(moved, dtype=torch.float16)  # other weights
        left = card(moved)
        assert "| PSNR" not in left and f"--data {data.resolve()} --split all --out {moved / 'eval'}`" in left
    finally:
        shutil.rmtree(path / "eval", ignore_errors=True)
        readme.unlink(missing_ok=True)


def test_write_card_refreshes_generated_cards_and_keeps_hand_written_ones(world, tmp_path):
    """A generated README.md is rewritten when the config changes; a hand-written one is left alone."""
    path, _ = world
    readme = path / "README.md"
    assert write_card(path) == readme and GENERATED in readme.read_text()
    config = json.loads((path / "config.json").read_text())
    config["action_labels"][0] = "stand"
    (path / "config.json").write_text(json.dumps(config))
    write_card(path)
    assert "| 0 | stand |" in readme.read_text()
    write_card(path, provenance={"training": "stage 2 2 steps", "machine": "a laptop"})
    write_card(path)  # a refresh keeps what was known of the runs
    assert "| training | stage 2 2 steps |" in readme.read_text() and "| machine | a laptop |" in readme.read_text()
    readme.write_text("# my world\n\nNotes by hand.\n")
    assert write_card(path) is None and readme.read_text() == "# my world\n\nNotes by hand.\n"


@pytest.mark.parametrize("name", ["coinrun-small", "coinrun-wander"])
def test_bundled_cards_match_their_config(name, monkeypatch):
    """The bundled worlds' hand-written cards have the generated card's summary rows and label every
    action as their config.json does."""
    path = ROOT / "worlds" / name
    config = json.loads((path / "config.json").read_text())
    hand, generated = (path / "README.md").read_text(), card(path)
    table = _rows(hand, "| action | label |")
    assert [r[1] for r in table if r[0].isdigit()] == config["action_labels"]  # not the real game's rows
    assert "## What its actions do" in hand and "## Limitations" in generated
    if "| model |" in hand:  # the summary table of coinrun-small's card
        params = re.search(r"(\d+\.\d)M parameters, (\w+)", generated).groups()
        assert f"{params[0]}M parameters, {params[1]}" in hand
        assert "frame step" in hand and f"`frame_skip` {config['frame_skip']}" in hand
    if GENERATED in hand:  # coinrun-wander's: written from its files, its evaluation of these very weights
        monkeypatch.chdir(ROOT)  # the card names the world by the path it was written with
        assert card(Path("worlds", name), provenance=_provenance_rows(hand)) == hand and "| PSNR frames" in hand


def test_export_writes_the_card(tmp_path):
    """`opengenie export` after two short training stages writes README.md with the run's steps, its
    data folder's source and policy, and the world's actions."""
    from opengenie.cli import main as opengenie
    from opengenie.data import generate_coinrun
    from opengenie.training import main

    data = tmp_path / "coinrun"
    generate_coinrun(data, levels=2, steps_per_level=24, progress=False)

    def args(config: str, run: Path, *extra: str) -> list[str]:
        return ["fit", "--config", str(ROOT / "configs" / config), "--data.data", str(data), "--data.seq_len", "4",
                "--data.batch_size", "2", "--data.num_workers", "0", "--data.train_split", "null",
                "--data.val_split", "null", "--trainer.max_steps", "2", "--trainer.default_root_dir", str(run),
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                "--checkpoint.dirpath", str(run / "ckpt"), "--images.every_n_steps", "100", *extra]

    main(args("tokenizer/tiny.yaml", tmp_path / "tok"), stage="tokenizer")
    tokenizer = tmp_path / "tok" / "ckpt" / "last.ckpt"
    main(args("dynamics/tiny.yaml", tmp_path / "dyn", "--data.tokens", "false",
              "--model.init_args.tokenizer", str(tokenizer)), stage="dynamics")
    dynamics = tmp_path / "dyn" / "ckpt" / "last.ckpt"
    known = provenance_from_checkpoints(dynamics, tokenizer)
    assert known["training"].startswith("tokenizer 2 steps in ") and "stage 2 (action model + dynamics) 2 steps" in known["training"]
    assert "coinrun" in known["data"] and "random policy" in known["data"] and str(data) in known["data"]
    opengenie(["export", "--dynamics", str(dynamics), "--tokenizer", str(tokenizer), "--out", str(tmp_path / "w")])
    text = (tmp_path / "w" / "README.md").read_text()
    assert GENERATED in text and f"| training | {known['training']} |" in text and f"| data | {known['data']} |" in text
    assert "Not measured yet: the 8 latent actions have no names." in text
    # `opengenie label` refreshes the card with the labels and the motion behind them, keeping the runs' rows.
    opengenie(["label", "--model", str(tmp_path / "w"), "--data", str(data), "--split", "all", "--prompts", "2",
               "--hold-steps", "2"])
    text = (tmp_path / "w" / "README.md").read_text()
    labels = json.loads((tmp_path / "w" / "config.json").read_text())["action_labels"]
    assert [r[1] for r in _rows(text, "| action | label | key | dx | dy |")] == labels
    assert f"| training | {known['training']} |" in text
    # Stage 2 trained further from the saved world, on clips cut at episode ends and with action
    # dropout: the new card tells both runs.
    main(args("dynamics/tiny.yaml", tmp_path / "more", "--data.tokens", "false", "--data.across_episode_ends", "false",
              "--model.init_args.tokenizer", str(tokenizer), "--model.init_args.init", str(tmp_path / "w"),
              "--model.init_args.action_dropout", "0.5"), stage="dynamics")
    further = provenance_from_checkpoints(tmp_path / "more" / "ckpt" / "last.ckpt")
    assert further["training"].startswith(f"{known['training']}; then trained further: stage 2 (action model + dynamics) 2 steps")
    assert further["training"].endswith("of 2 × 4 frames within episodes, action dropout 0.5")
    assert "within episodes" not in known["training"] and "dropout" not in known["training"]
    # Its decoder trained further from the same world too: the world's runs are told once, then both new ones.
    main(args("tokenizer/tiny.yaml", tmp_path / "dec", "--model.init_args.init", str(tmp_path / "w"),
              "--model.init_args.train_part", "decoder", "--model.init_args.warmup_steps", "1"), stage="tokenizer")
    both = provenance_from_checkpoints(tmp_path / "more" / "ckpt" / "last.ckpt", tmp_path / "dec" / "ckpt" / "last.ckpt")
    head, tail = both["training"].split("; then trained further: ")
    assert head == known["training"] and both["training"].count(known["training"]) == 1
    assert tail.startswith("tokenizer decoder (encoder and codebook frozen) 2 steps") and "; stage 2 (action model" in tail
    # Exported with that stage 2 and the guidance it was trained for, its world plays guided by
    # default and its card tells both; a decoder trained further from that world and exported with
    # the same stage 2 tells the stage 2 once, then the new decoder.
    opengenie(["export", "--dynamics", str(tmp_path / "more" / "ckpt" / "last.ckpt"), "--out", str(tmp_path / "w2"),
               "--action-guidance", "1.5", "--guidance-against", "none"])
    dynamics_config = json.loads((tmp_path / "w2" / "config.json").read_text())["dynamics"]
    assert dynamics_config["action_guidance"] == 1.5 and dynamics_config["guidance_against"] == dynamics_config["num_actions"]
    assert "MaskGIT steps, action guidance 1.5 against no action;" in (tmp_path / "w2" / "README.md").read_text()
    assert "action guidance" not in text  # the plain world's card
    main(args("tokenizer/tiny.yaml", tmp_path / "dec2", "--model.init_args.init", str(tmp_path / "w2"),
              "--model.init_args.train_part", "decoder", "--model.init_args.warmup_steps", "1"), stage="tokenizer")
    again = provenance_from_checkpoints(tmp_path / "more" / "ckpt" / "last.ckpt", tmp_path / "dec2" / "ckpt" / "last.ckpt")
    assert again["training"].count("stage 2 (action model + dynamics) 2 steps") == 2  # the first stage 2, then "more"
    assert again["training"].startswith(further["training"] + "; then trained further: tokenizer decoder")
    # Its guidance distilled into a plain world: the action model frozen, one pass a draw; the card says so.
    main(args("dynamics/tiny.yaml", tmp_path / "distil", "--data.tokens", "false",
              "--model.init_args.tokenizer", str(tmp_path / "w2"), "--model.init_args.init", str(tmp_path / "w2"),
              "--model.init_args.distill_guidance", "1.5"), stage="dynamics")
    opengenie(["export", "--dynamics", str(tmp_path / "distil" / "ckpt" / "last.ckpt"), "--out", str(tmp_path / "w3")])
    assert json.loads((tmp_path / "w3" / "config.json").read_text())["dynamics"]["action_guidance"] == 0
    distilled = (tmp_path / "w3" / "README.md").read_text()
    assert "MaskGIT steps, action guidance" not in distilled
    assert ("stage 2 (dynamics, action model frozen) 2 steps" in distilled
            and "learning to draw in one pass its action guidance 1.5 against no action" in distilled)
    resume = ("--data.tokens", "false", "--model.init_args.tokenizer", str(tmp_path / "w2"),
              "--model.init_args.init", str(tmp_path / "w2"), "--model.init_args.distill_guidance", "1.5",
              "--ckpt_path", str(tmp_path / "distil" / "ckpt" / "last.ckpt"))
    main(args("dynamics/tiny.yaml", tmp_path / "distil", "--trainer.max_steps", "3", *resume), stage="dynamics")
    assert torch.load(tmp_path / "distil" / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 3
    # Trained further from the distilled world, still learning from the guided one it came from; a
    # teacher with another action model (the world before "more" trained it) is refused.
    further = ("--data.tokens", "false", "--model.init_args.tokenizer", str(tmp_path / "w2"),
               "--model.init_args.init", str(tmp_path / "w3"), "--model.init_args.distill_guidance", "1.5")
    main(args("dynamics/tiny.yaml", tmp_path / "distil2", *further,
              "--model.init_args.distill_teacher", str(tmp_path / "w2")), stage="dynamics")
    teacher = torch.load(tmp_path / "distil2" / "ckpt" / "last.ckpt", weights_only=True)["distill_teacher"]
    assert teacher == torch.load(tmp_path / "distil" / "ckpt" / "last.ckpt", weights_only=True)["distill_teacher"]
    with pytest.raises(ValueError, match="needs model.init's dynamics config and action model"):
        main(args("dynamics/tiny.yaml", tmp_path / "distil3", *further,
                  "--model.init_args.distill_teacher", str(tmp_path / "w")), stage="dynamics")
    # Exported over the world it learned from, the teacher is gone: resuming the run says so
    # instead of distilling from its own student.
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tmp_path / "w3" / name, tmp_path / "w2" / name)
    with pytest.raises(ValueError, match="holds other weights than the teacher"):
        main(args("dynamics/tiny.yaml", tmp_path / "distil", "--trainer.max_steps", "4", *resume), stage="dynamics")
