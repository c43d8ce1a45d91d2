"""Bad inputs at every entry point end in one sentence a user can act on.

Each case is a piece of user input that cannot work: a flag out of range, a damaged world
folder, an empty data folder, a malformed websocket message. The property under test is the
same for all of them: the command ends with exit status 2 and a message naming the problem
(the library raises its documented exception), no traceback is printed, and nothing is written
where the command would have written its output.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from opengenie import Genie, presets
from opengenie.cli import main
from opengenie.data.episodes import write_episode
from opengenie.data.manifest import write_manifest
from opengenie.genie import WorldFileError

WORLD = Path(__file__).resolve().parent.parent / "worlds" / "coinrun-small"


# --- shared inputs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A folder with a world copy, episode folders (good and bad), a prompt and an empty dir."""
    return make_inputs(tmp_path_factory.mktemp("bad-inputs"))


def make_inputs(root: Path) -> Path:
    """Fill `root` with the inputs the cases name ({root}/world, {root}/data, ...)."""
    shutil.copytree(WORLD, root / "world", ignore=shutil.ignore_patterns("prompts", "README.md"))
    rng = np.random.default_rng(0)

    def episodes(name: str, actions_of) -> None:
        folder = root / name
        folder.mkdir()
        entries = []
        for i, split in enumerate(["train", "test", "test"]):
            file = f"level_{i:06d}.npz"
            write_episode(folder / file, rng.integers(0, 256, (12, 64, 64, 3), dtype=np.uint8),
                          actions=actions_of(i))
            entries.append({"file": file, "frames": 12, "group": str(i), "split": split})
        write_manifest(folder, source="test", settings={"num_actions": 15}, episodes=entries)

    episodes("data", lambda i: rng.integers(0, 15, 12))
    episodes("data-actions-high", lambda i: np.full(12, 20))
    episodes("data-actions-negative", lambda i: np.full(12, -1))
    (root / "empty").mkdir()
    (root / "broken-manifest").mkdir()
    (root / "broken-manifest" / "manifest.json").write_text('{"format": ,}')
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / "prompt.png")
    (root / "not-an-image.png").write_text("hello")
    (root / "empty.yaml").write_text("")
    (root / "bad.ckpt").write_bytes(b"PK\x03\x04 not a checkpoint")
    return root


def _damage(root: Path, name: str, how: str) -> Path:
    """A copy of the bundled world, damaged in one way (see `DAMAGES`)."""
    world = root / f"damaged-{name}"
    if world.exists():
        return world
    shutil.copytree(root / "world", world)
    config, weights = world / "config.json", world / "model.safetensors"
    c = json.loads(config.read_text())
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[:100_000])
    elif how == "not-safetensors":
        weights.write_bytes(b"\x80\x04this is a pickle, not safetensors" * 10)
    elif how == "empty-weights":
        weights.write_bytes(b"")
    elif how in ("shape", "missing-key", "extra-key", "nan", "inf"):
        state = load_file(str(weights))
        key = "dynamics.head.weight" if "dynamics.head.weight" in state else sorted(state)[-1]
        if how == "shape":
            state[key] = torch.zeros(3, 3)
        elif how == "missing-key":
            del state[key]
        elif how == "extra-key":
            state["dynamics.surprise"] = torch.zeros(2)
        else:
            state[key] = state[key].clone()
            state[key].view(-1)[7] = float("nan") if how == "nan" else float("inf")
        save_file(state, str(weights))
    elif how == "config-json":
        config.write_text(config.read_text()[:40])
    elif how == "config-list":
        config.write_text("[1, 2, 3]")
    elif how == "config-string-dim":
        c["dynamics"]["dim"] = "128"
        config.write_text(json.dumps(c))
    elif how == "config-float-depth":
        c["tokenizer"]["depth"] = 2.5
        config.write_text(json.dumps(c))
    elif how == "config-huge-dim":
        c["tokenizer"]["dim"] = 2**20
        config.write_text(json.dumps(c))
    elif how == "config-negative-depth":
        c["action"]["depth"] = -3
        config.write_text(json.dumps(c))
    elif how == "config-unknown-field":
        c["dynamics"]["dimm"] = 128
        config.write_text(json.dumps(c))
    elif how == "config-missing-part":
        del c["action"]
        config.write_text(json.dumps(c))
    elif how == "config-part-not-dict":
        c["tokenizer"] = 7
        config.write_text(json.dumps(c))
    elif how == "config-image-size":
        c["tokenizer"]["image_size"] = [64]
        config.write_text(json.dumps(c))
    elif how == "no-weights":
        weights.unlink()
    else:
        raise AssertionError(how)
    return world


# (how the world is damaged, fragment of the message that must name the problem)
DAMAGES = [
    ("truncated", "model.safetensors"),
    ("not-safetensors", "not a safetensors file"),
    ("empty-weights", "model.safetensors"),
    ("shape", "dynamics.head.weight"),
    ("missing-key", "missing"),
    ("extra-key", "dynamics.surprise"),
    ("nan", "NaN"),
    ("inf", "inf"),
    ("config-json", "config.json"),
    ("config-list", "config.json"),
    ("config-string-dim", "dim"),
    ("config-float-depth", "depth"),
    ("config-huge-dim", "dim"),
    ("config-negative-depth", "depth"),
    ("config-unknown-field", "dimm"),
    ("config-missing-part", "action"),
    ("config-part-not-dict", "tokenizer"),
    ("config-image-size", "image_size"),
    ("no-weights", "model.safetensors is missing"),
]


def _cli(args: list[str], capsys) -> tuple[int, str]:
    """Run `opengenie ARGS` in-process → (exit status, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def _assert_refused(args: list[str], fragment: str, capsys, out: Path | None = None) -> None:
    code, err = _cli(args, capsys)
    assert "Traceback" not in err, err
    assert code == 2, f"exit {code} for {args}: {err[-500:]}"
    assert fragment.lower() in err.lower(), f"{fragment!r} not in: {err[-500:]}"
    if out is not None:
        assert not out.exists(), f"{out} was written although the command was refused"


# --- Genie.from_pretrained and the commands that load a world -----------------------------


@pytest.mark.parametrize("how,fragment", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_damaged_world_is_refused_on_load(root, how, fragment):
    """Every damaged world raises WorldFileError (a ValueError) naming the file and the fault."""
    world = _damage(root, how, how)
    error = FileNotFoundError if how == "no-weights" else WorldFileError
    with pytest.raises(error) as exc:
        Genie.from_pretrained(world)
    message = str(exc.value)
    assert fragment.lower() in message.lower(), message
    assert str(world) in message, message  # the folder (and so the file) is named


@pytest.mark.parametrize("how,fragment", [d for d in DAMAGES if d[0] in ("truncated", "nan", "config-string-dim")])
def test_damaged_world_via_cli(root, how, fragment, capsys):
    """`generate` and `play` turn a damaged world into exit 2 and the same sentence."""
    world, out = _damage(root, how, how), root / f"gen-{how}.gif"
    _assert_refused(["generate", "--model", str(world), "--prompt", str(root / "prompt.png"), "--out", str(out)],
                    fragment, capsys, out)
    _assert_refused(["play", "--model", str(world), "--port", "1"], fragment, capsys)


# --- command-line flags --------------------------------------------------------------------

# (arguments with placeholders {root}, fragment of the message, path that must not be written)
CLI_CASES = [
    # data
    (["data", "coinrun", "--out", "{root}/o1", "--levels", "0", "--steps-per-level", "5"], "--levels", "o1"),
    (["data", "coinrun", "--out", "{root}/o1", "--levels", "1", "--steps-per-level", "0"], "--steps-per-level", "o1"),
    (["data", "coinrun", "--out", "{root}/o1", "--levels", "1", "--steps-per-level", "5", "--workers", "0"],
     "--workers", "o1"),
    (["data", "coinrun", "--out", "{root}/o1", "--levels", "1", "--steps-per-level", "5", "--start-level", "-1"],
     "--start-level", "o1"),
    (["data", "videos", "--src", "{root}/empty", "--out", "{root}/o2", "--fps", "-5"], "--fps", "o2"),
    (["data", "videos", "--src", "{root}/empty", "--out", "{root}/o2", "--fps", "nan"], "--fps", "o2"),
    (["data", "videos", "--src", "{root}/empty", "--out", "{root}/o2", "--size", "0"], "--size", "o2"),
    (["data", "videos", "--src", "{root}/empty", "--out", "{root}/o2", "--chunk-frames", "0"], "--chunk-frames", "o2"),
    (["data", "videos", "--src", "{root}/empty", "--out", "{root}/o2"], "no video files", "o2"),
    (["data", "videos", "--src", "{root}/missing", "--out", "{root}/o2"], "does not exist", "o2"),
    (["data", "shards", "--src", "{root}/empty", "--out", "{root}/o3"], "no episodes", "o3"),
    (["data", "shards", "--src", "{root}/data", "--out", "{root}/o3", "--max-shard-mb", "0"], "--max-shard-mb", "o3"),
    (["data", "shards", "--src", "{root}/data", "--out", "{root}/o3", "--chunk-frames", "0"], "--chunk-frames", "o3"),
    (["data", "shards", "--src", "{root}/broken-manifest", "--out", "{root}/o3"], "manifest.json", "o3"),
    # train (LightningCLI)
    (["train", "tokenizer", "--config", "{root}/missing.yaml"], "missing.yaml", None),
    (["train", "tokenizer", "--config", "configs/tokenizer/tiny.yaml", "--trainer.max_stepz", "3"], "max_stepz", None),
    (["train", "tokenizer", "--config", "configs/tokenizer/tiny.yaml", "--model.init_args.preset", "hughe"], "hughe", None),
    (["train", "dynamics", "--config", "configs/dynamics/tiny.yaml", "--ckpt_path", "{root}/bad.ckpt"], "bad.ckpt", None),
    # tokenize
    (["tokenize", "--model", "{root}/world", "--data", "{root}/data", "--seq-len", "0"], "--seq-len", "data/tokens"),
    (["tokenize", "--model", "{root}/world", "--data", "{root}/data", "--batch-size", "0"], "--batch-size", "data/tokens"),
    (["tokenize", "--model", "{root}/world", "--data", "{root}/data", "--frame-skip", "0"], "--frame-skip", "data/tokens"),
    (["tokenize", "--model", "{root}/world", "--data", "{root}/data", "--stride", "-2"], "--stride", "data/tokens"),
    (["tokenize", "--model", "{root}/world", "--data", "{root}/empty"], "no episodes", "empty/tokens"),
    (["tokenize", "--model", "{root}/missing", "--data", "{root}/data"], "missing", "data/tokens"),
    # export
    (["export", "--dynamics", "{root}/missing.ckpt", "--out", "{root}/o4"], "does not exist", "o4"),
    (["export", "--dynamics", "{root}/bad.ckpt", "--out", "{root}/o4"], "bad.ckpt", "o4"),
    (["export", "--dynamics", "{root}/bad.ckpt", "--out", "{root}/o4", "--frame-skip", "0"], "--frame-skip", "o4"),
    # label
    (["label", "--model", "{root}/world", "--data", "{root}/data", "--prompts", "0"], "--prompts", None),
    (["label", "--model", "{root}/world", "--data", "{root}/empty"], "no episodes", None),
    (["label", "--model", "{root}/missing", "--data", "{root}/data"], "missing", None),
    # generate
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--temperature", "nan"], "--temperature", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--temperature", "1e9"], "--temperature", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--fps", "inf"], "--fps", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--action-guidance", "-1"], "--action-guidance", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--action-guidance", "nan"], "--action-guidance", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--action-guidance", "3", "--guidance-against", "walk left"], "names no action of this world", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--action-guidance", "3", "--guidance-against", "9"], "guidance_against", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--actions", ""], "--actions", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--actions", " , "], "--actions", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--actions", "0,x"], "--actions", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--actions", "-1"], "0..7", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--actions", "0,8"], "0..7", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--actions", "9" * 5000], "--actions", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--random", "0"], "--random", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--random", "100000000"], "--random", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.png", "--grid",
      "--frames-per-action", "0"], "--frames-per-action", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif",
      "--steps", "0"], "--steps", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/missing.png", "--out", "{root}/g/a.gif"],
     "missing.png", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/not-an-image.png", "--out", "{root}/g/a.gif"],
     "not-an-image.png", "g"),
    (["generate", "--model", "{root}/world", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.png"],
     "--grid", "g"),
    (["generate", "--model", "{root}/missing", "--prompt", "{root}/prompt.png", "--out", "{root}/g/a.gif"],
     "missing", "g"),
    # play (each must fail before the server listens)
    (["play", "--model", "{root}/world", "--idle-timeout", "-1"], "--idle-timeout", None),
    (["play", "--model", "{root}/world", "--idle-timeout", "0"], "--idle-timeout", None),
    (["play", "--model", "{root}/world", "--idle-timeout", "nan"], "--idle-timeout", None),
    (["play", "--model", "{root}/world", "--threads", "-1"], "--threads", None),
    (["play", "--model", "{root}/world", "--port", "70000"], "--port", None),
    (["play", "--model", "{root}/world", "--temperature", "inf"], "--temperature", None),
    (["play", "--model", "{root}/world", "--prompt", "{root}/missing.png"], "missing.png", None),
    (["play", "--model", "{root}/world", "--data", "{root}/missing"], "missing", None),
    (["play", "--model", "{root}/world", "--allow-origin", "example.org"], "--allow-origin", None),
    # eval
    (["eval", "--model", "{root}/world", "--data", "{root}/data", "--out", "{root}/e", "--batch-size", "0"],
     "--batch-size", "e"),
    (["eval", "--model", "{root}/world", "--data", "{root}/data", "--out", "{root}/e", "--frames", "0"],
     "--frames", "e"),
    (["eval", "--model", "{root}/world", "--data", "{root}/data", "--out", "{root}/e", "--prompts", "-1"],
     "--prompts", "e"),
    (["eval", "--model", "{root}/world", "--data", "{root}/data", "--out", "{root}/e", "--hold-steps", "0"],
     "--hold-steps", "e"),
    (["eval", "--model", "{root}/world", "--data", "{root}/data", "--out", "{root}/e", "--threads", "0"],
     "--threads", "e"),
    (["eval", "--model", "{root}/world", "--data", "{root}/data", "--out", "{root}/e", "--skip", "fvdd"],
     "--skip", "e"),
    (["eval", "--model", "{root}/world", "--data", "{root}/empty", "--out", "{root}/e", "--split", "all"],
     "no episodes", "e"),
    (["eval", "--model", "{root}/world", "--data", "{root}/data-actions-high", "--out", "{root}/e",
      "--skip", "fvd,lpips", "--num-clips", "2", "--frames", "9"], "0..14", "e"),
    (["eval", "--model", "{root}/world", "--data", "{root}/data-actions-negative", "--out", "{root}/e",
      "--skip", "fvd,lpips", "--num-clips", "2", "--frames", "9"], "-1", "e"),
    (["eval", "--model", "{root}/world", "--data", "{root}/broken-manifest", "--out", "{root}/e"],
     "manifest.json", "e"),
]


def _case_id(case) -> str:
    args = case.values[0] if hasattr(case, "values") else case[0]
    return "-".join(a.lstrip("-") for a in args[:2] + [a for a in args[2:] if a.startswith("--")][-1:])[:60]


@pytest.mark.parametrize("args,fragment,out", CLI_CASES, ids=[_case_id(c) for c in CLI_CASES])
def test_cli_refuses(root, args, fragment, out, capsys, monkeypatch):
    """Each bad flag or input ends with exit 2 and a message naming it, before any work."""
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)  # a run that got past its checks would write runs/ here, not into the checkout
    args = [a.replace("{root}", str(root)) for a in args]
    args = [str(repo / a) if a.startswith("configs/") else a for a in args]
    # Lightning's log handlers keep the stderr they first saw; under capsys that is an earlier
    # test's closed capture, so point them at this test's stream.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                monkeypatch.setattr(handler, "stream", sys.stderr)
    _assert_refused(args, fragment, capsys, None if out is None else root / out)


# --- library entry points ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_world():
    torch.manual_seed(0)
    return Genie(presets.tiny()).eval()


@pytest.mark.parametrize("action", [8, -1, 1.5, "3", None, True, np.array([1, 2])])
def test_env_refuses_bad_actions(tiny_world, action):
    """GenieEnv.step raises ValueError naming the action range for anything but an id in range."""
    from opengenie.envs.genie_env import GenieEnv

    env = GenieEnv(tiny_world)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"0\.\.7"):
        env.step(action)


def test_env_step_before_reset(tiny_world):
    """Stepping an environment that was never reset is a RuntimeError that says to reset."""
    from opengenie.envs.genie_env import GenieEnv

    with pytest.raises(RuntimeError, match="reset"):
        GenieEnv(tiny_world).step(0)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"max_steps": 0}, "max_steps"),
    ({"max_steps": 2.5}, "max_steps"),
    ({"render_mode": "human"}, "render_mode"),
    ({"maskgit_steps": 0}, "maskgit_steps"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": -1.0}, "temperature"),
])
def test_env_refuses_bad_settings(tiny_world, kwargs, fragment):
    """GenieEnv's settings are checked when it is made, not at the first step."""
    from opengenie.envs.genie_env import GenieEnv

    with pytest.raises(ValueError, match=fragment):
        GenieEnv(tiny_world, **kwargs)


def test_env_missing_world(tmp_path):
    """A missing world folder is a FileNotFoundError naming the missing file."""
    from opengenie.envs.genie_env import GenieEnv

    with pytest.raises(FileNotFoundError, match="config.json"):
        GenieEnv(tmp_path / "nowhere")


def test_world_step_settings(tiny_world):
    """Genie.start / rollout refuse bad MaskGIT settings by name; a rollout refuses bad actions."""
    world = Genie(presets.tiny()).eval()
    video = torch.zeros(1, 3, 1, 64, 64)
    with pytest.raises(ValueError, match="temperature"):
        world.start(video, temperature=float("nan"))
    with pytest.raises(ValueError, match="maskgit_steps"):
        world.start(video, maskgit_steps=0)
    with pytest.raises(ValueError, match="maskgit_steps"):
        world.rollout(video, torch.zeros(1, 2, dtype=torch.long), maskgit_steps=1.5)
    state, _ = world.start(video)
    with pytest.raises(ValueError, match=r"action must lie in 0\.\.7"):
        state.step(torch.tensor([8]))
    with pytest.raises(ValueError, match=r"one action per rollout row"):
        state.step(torch.tensor([0, 1]))


@pytest.mark.parametrize("part,field,value,fragment", [
    ("tokenizer", "dim", 2**20, "dim"),
    ("tokenizer", "depth", 0, "depth"),
    ("tokenizer", "patch_size", 0, "patch_size"),
    ("tokenizer", "image_size", (64, 64, 3), "image_size"),
    ("action", "heads", 0, "heads"),
    ("action", "mlp_ratio", float("nan"), "mlp_ratio"),
    ("dynamics", "max_frames", 1, "max_frames"),
    ("dynamics", "temperature", float("inf"), "temperature"),
    ("dynamics", "grid", (8,), "grid"),
])
def test_config_checks_before_allocating(part, field, value, fragment):
    """A config field out of range is refused in __post_init__, before any weight is allocated."""
    import dataclasses

    base = getattr(presets.tiny(), part)
    with pytest.raises(ValueError, match=fragment):
        dataclasses.replace(base, **{field: value})


# --- the play server's websocket -----------------------------------------------------------

WS_CASES = [
    ("[" * 100_000 + "]" * 100_000, "nested"),
    ('{"type": "action", "action": ' + "9" * 5000 + "}", "digits"),
    ('{"type": "action", "action": 8}', "0..7"),
    ('{"type": "action", "action": -1}', "0..7"),
    ('{"type": "action", "action": 1.0}', "0..7"),
    ('{"type": "action", "action": "1"}', "0..7"),
    ('{"type": "action"}', "0..7"),
    ('{"type": "jump"}', "expected"),
    ('{"type": "sample", "index": 0}', "--data"),
    ("not json", "JSON"),
    ("[1, 2]", "expected"),
    ('{"type": "action", "action": NaN}', "0..7"),
]


def test_websocket_refuses_bad_messages(tiny_world):
    """Every malformed message gets an error reply naming the problem; the session plays on."""
    websockets = pytest.importorskip("websockets")
    from opengenie.play.server import BackgroundServer, create_app

    async def talk(url: str) -> list[dict]:
        async with websockets.connect(url, max_size=2**22) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            assert json.loads(await ws.recv())["type"] == "frame"
            replies = []
            for text, _ in WS_CASES:
                await ws.send(text)
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            await ws.send(b"\x00binary")
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            await ws.send(json.dumps({"type": "action", "action": 1}))
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            return replies

    app = create_app(tiny_world, max_sessions=2)
    with BackgroundServer(app) as url:
        replies = asyncio.run(talk(url.replace("http://", "ws://") + "/ws"))
    for (text, fragment), reply in zip(WS_CASES + [("binary", "binary")], replies):
        assert reply["type"] == "error", (text[:40], reply)
        assert fragment.lower() in reply["message"].lower(), (text[:40], reply["message"])
        assert "failed to step" not in reply["message"] and len(reply["message"]) < 300
    assert replies[-1]["type"] == "frame"  # the session still plays


@pytest.mark.parametrize("kwargs,fragment", [({"idle_timeout": -1}, "idle_timeout"),
                                             ({"max_sessions": 0}, "max_sessions"),
                                             ({"temperature": float("nan")}, "temperature")])
def test_server_settings(tiny_world, kwargs, fragment):
    """create_app refuses settings that would close every session or never step."""
    from opengenie.play.server import create_app

    with pytest.raises(ValueError, match=fragment):
        create_app(tiny_world, **kwargs)


# --- data library --------------------------------------------------------------------------


def test_broken_manifest_names_its_file(root):
    """A manifest.json that is not JSON is a ValueError naming the file, not a bare decode error."""
    from opengenie.data import EpisodeClipDataset

    with pytest.raises(ValueError, match="manifest.json"):
        EpisodeClipDataset(root / "broken-manifest", seq_len=4)


def test_convert_videos_refuses_bad_fps(root):
    """convert_videos refuses fps <= 0 up front instead of skipping every video."""
    from opengenie.data.videos import convert_videos

    with pytest.raises(ValueError, match="fps"):
        convert_videos(root / "empty", root / "o5", fps=-5)
    assert not (root / "o5").exists()


def test_long_generation_shows_progress(root, tiny_world, tmp_path, capsys):
    """A long `generate` rollout reports its progress on stderr, frame by frame, and finishes."""
    world = tiny_world.save_pretrained(tmp_path / "tiny")
    out = tmp_path / "long.gif"
    main(["generate", "--model", str(world), "--prompt", str(root / "prompt.png"), "--random", "40",
          "--steps", "1", "--scale", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert "40/40" in captured.err and "frames" in captured.err
    assert out.is_file() and "41 frames" in captured.out
