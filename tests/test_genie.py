"""The world engine: building, saving, loading and stepping a Genie."""

import numpy as np
import pytest
import torch
from PIL import Image

from opengenie import Genie, GenieConfig, presets


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    return Genie(presets.tiny()).eval()


def test_reset_and_step_give_frames(world, tmp_path):
    """reset takes any-size images (array, PIL, path); step returns (H, W, 3) uint8 frames."""
    img = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "p.png")
    for prompt in (img, Image.fromarray(img), tmp_path / "p.png", str(tmp_path / "p.png")):
        frame = world.reset(prompt, seed=0)
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    for a in range(world.num_actions):
        frame = world.step(a)
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert len(world.frames) == world.num_actions + 1


def test_many_steps_slide_past_training_length(world):
    """Stepping past max_frames keeps working (the caches slide)."""
    world.reset(np.zeros((64, 64, 3), np.uint8), seed=0)
    for i in range(2 * world.config.dynamics.max_frames):
        world.step(i % world.num_actions)
    assert len(world.state.dynamics_cache) == world.config.dynamics.max_frames - 1


def test_bad_prompts_and_actions(world, tmp_path):
    """Non-images and out-of-range actions give clear errors."""
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        world.reset(tmp_path / "x.png")
    with pytest.raises(FileNotFoundError):
        world.reset(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="uint8"):
        world.reset(np.zeros((64, 64, 3), np.float32))
    world.reset(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"0\.\.7"):
        world.step(8)
    with pytest.raises(ValueError, match=r"0\.\.7"):
        world.step(-1)


def test_rollout_cached_equals_uncached(world):
    """Batched rollouts with and without the key/value caches give identical frames."""
    prompt = torch.rand(2, 3, 2, 64, 64) * 2 - 1
    actions = torch.randint(0, world.num_actions, (2, 4))
    a = world.rollout(prompt, actions, maskgit_steps=4, seed=3, use_cache=True)
    b = world.rollout(prompt, actions, maskgit_steps=4, seed=3, use_cache=False)
    assert a.shape == (2, 3, 6, 64, 64)
    assert torch.allclose(a, b, atol=1e-4)


def test_save_and_load_round_trip(world, tmp_path):
    """save_pretrained writes config.json + safetensors; from_pretrained restores the same world."""
    path = world.save_pretrained(tmp_path / "w")
    assert {p.name for p in path.iterdir()} == {"config.json", "model.safetensors"}
    loaded = Genie.from_pretrained(path)
    assert loaded.config == world.config
    for (k, v), (k2, v2) in zip(world.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    small = world.save_pretrained(tmp_path / "half", dtype=torch.bfloat16)
    assert (small / "model.safetensors").stat().st_size < (path / "model.safetensors").stat().st_size * 0.6
    Genie.from_pretrained(small).reset(np.zeros((64, 64, 3), np.uint8))


def test_missing_files_are_named(tmp_path):
    """Loading a folder that is not a saved world names the missing file."""
    with pytest.raises(FileNotFoundError, match="config.json"):
        Genie.from_pretrained(tmp_path)


def test_config_consistency_is_checked():
    """A world whose parts disagree is refused with a message saying what to change."""
    from dataclasses import replace

    cfg = presets.tiny()
    with pytest.raises(ValueError, match="vocab_size"):
        GenieConfig(cfg.tokenizer, cfg.action, replace(cfg.dynamics, vocab_size=32))
    assert GenieConfig.from_dict(cfg.to_dict()) == cfg


def test_dynamics_fields_are_derived_from_the_other_parts():
    """A world's dynamics reads the tokenizer's codebook and grid and the action model's
    codebook: left unset they are filled in from there; a dynamics model alone needs them."""
    from dataclasses import replace

    from opengenie import DynamicsConfig, DynamicsModel

    cfg = presets.tiny()
    tokenizer, action = replace(cfg.tokenizer, codebook_size=48), replace(cfg.action, codebook_size=5)
    world = GenieConfig(tokenizer, action, DynamicsConfig(dim=64, depth=2, heads=4, max_frames=8))
    assert (world.dynamics.vocab_size, world.dynamics.num_actions, world.dynamics.grid) == (48, 5, (8, 8))
    assert GenieConfig.from_dict(world.to_dict()) == world
    with pytest.raises(ValueError, match="num_actions"):
        GenieConfig(tokenizer, action, DynamicsConfig(num_actions=8, dim=64, depth=2, heads=4, max_frames=8))
    with pytest.raises(ValueError, match="needs vocab_size and num_actions"):
        DynamicsModel(DynamicsConfig(dim=64, depth=2, heads=4))


def test_retired_config_fields_are_dropped_on_read():
    """A config.json written when `gan_discriminate` was a field still loads, as the same config;
    an unknown field that was never retired is still refused."""
    import json
    from pathlib import Path

    from opengenie.config import without_retired

    cfg = presets.tiny()
    old = cfg.to_dict()
    old["tokenizer"]["gan_discriminate"] = "frames"
    assert GenieConfig.from_dict(old) == cfg
    assert without_retired(old) == cfg.to_dict()
    for world in ("coinrun-small", "coinrun-wander"):
        saved = json.loads((Path(__file__).parent.parent / "worlds" / world / "config.json").read_text())
        assert json.loads(GenieConfig.from_dict(saved).to_json()) == without_retired(saved)
    old["tokenizer"]["gan_discriminat"] = "frames"
    with pytest.raises(ValueError, match="unknown TokenizerConfig fields \\['gan_discriminat'\\]"):
        GenieConfig.from_dict(old)


def test_saved_world_files_are_readable_like_any_new_file(tmp_path):
    """model.safetensors gets the umask's mode, as config.json does (not the 0600 of a private temp file)."""
    import os

    path = Genie(presets.tiny()).save_pretrained(tmp_path / "w")
    modes = {f.name: os.stat(f).st_mode & 0o777 for f in path.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"]
