"""Preset worlds: plain functions returning a `GenieConfig`; each part is usable alone
(`tiny().tokenizer`, `coinrun().dynamics`, ...)."""

from __future__ import annotations

from opengenie.config import DynamicsConfig, GenieConfig, LatentActionConfig, TokenizerConfig


def tiny() -> GenieConfig:
    """A world small enough to train in seconds on a CPU: for tests and first experiments."""
    return GenieConfig(
        tokenizer=TokenizerConfig(patch_size=8, dim=64, depth=2, decoder_depth=2, heads=4,
                                  codebook_size=64, code_dim=16, max_frames=8, dead_code_steps=20),
        action=LatentActionConfig(patch_size=16, dim=64, depth=2, decoder_depth=2, heads=4,
                                  codebook_size=8, code_dim=16, max_frames=8, dead_code_steps=20),
        dynamics=DynamicsConfig(dim=64, depth=2, heads=4,
                                max_frames=8, maskgit_steps=8),
    )


def coinrun() -> GenieConfig:
    """The paper's CoinRun case study (Genie §3.4, App. D): fits one 16 GB accelerator.

    Tokenizer 8+8 layers × 512, 1024 codes, patch 4; action model 8+8 × 512, 6 actions,
    patch 16; dynamics 12 × 512; 16-frame clips of 64×64; MaskGIT at temperature 1. One
    departure: the dynamics model reads its action as one extra token per frame (the library's
    default), not as the paper's additive embedding; `dynamics.action_conditioning: additive`
    restores the paper's.
    """
    return GenieConfig(
        tokenizer=TokenizerConfig(patch_size=4, dim=512, depth=8, decoder_depth=8, heads=8,
                                  codebook_size=1024, code_dim=32, max_frames=16),
        action=LatentActionConfig(patch_size=16, dim=512, depth=8, decoder_depth=8, heads=8,
                                  codebook_size=6, max_frames=16),
        dynamics=DynamicsConfig(dim=512, depth=12,
                                heads=8, max_frames=16, maskgit_steps=25, temperature=1.0),
    )


def small() -> GenieConfig:
    """A CoinRun world sized for a 2-core CPU: the bundled world (`worlds/coinrun-small`).

    Tokenizer 4+4 layers × 128, 512 codes, patch 8 (an 8×8 grid per 64×64 frame); action
    model 2+2 × 128, 8 actions, patch 16; dynamics 4 × 128; MaskGIT with 8 steps.
    """
    return GenieConfig(
        tokenizer=TokenizerConfig(patch_size=8, dim=128, depth=4, decoder_depth=4, heads=4,
                                  codebook_size=512, code_dim=32, max_frames=8),
        action=LatentActionConfig(patch_size=16, dim=128, depth=2, decoder_depth=2, heads=4,
                                  codebook_size=8, code_dim=16, max_frames=16),
        dynamics=DynamicsConfig(dim=128, depth=4, heads=4,
                                max_frames=16, maskgit_steps=8),
    )


PRESETS = {"tiny": tiny, "small": small, "coinrun": coinrun}


def get(name: str) -> GenieConfig:
    """A preset by name."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
