"""The training entry: a LightningCLI in which every run is one YAML file.

    opengenie train tokenizer --config configs/tokenizer/tiny.yaml
    opengenie train dynamics  --config configs/dynamics/tiny.yaml --trainer.max_steps 2000
    opengenie train tokenizer --config configs/tokenizer/tiny.yaml --ckpt_path last    # resume
    python -m opengenie.training fit --config configs/tokenizer/tiny.yaml              # the same

A config has the sections `model` (a stage: class_path + init_args), `data`
(GenieDataModule), `trainer` (Lightning's Trainer: precision, strategy, devices, num_nodes,
max_steps, ...), `checkpoint` (GenieCheckpoint), `images` (ImageLogger) and `throughput`.
Any value can be overridden on the command line (`--model.init_args.lr 1e-4`).
"""

from __future__ import annotations

import signal
import sys
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from opengenie.training.callbacks import GenieCheckpoint, ImageLogger, Throughput
from opengenie.training.data import GenieDataModule
from opengenie.training.loop import GenieStage
from opengenie.training.modules import DynamicsModule, TokenizerModule

STAGES = {"tokenizer": TokenizerModule, "dynamics": DynamicsModule}

# The data stream shards itself over ranks (see data.py), and it never ends: training is
# bounded by max_steps and validated every val_check_interval steps, not per epoch.
TRAINER_DEFAULTS = {"use_distributed_sampler": False, "check_val_every_n_epoch": None, "max_epochs": -1}

# Expected, so not worth a warning: stage 2's frozen tokenizer stays in eval mode, and
# `opengenie train` hands LightningCLI its arguments while sys.argv (kept for DDP's
# re-launch of the same command) holds the full command line.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")


class GenieCLI(LightningCLI):
    """LightningCLI over the Genie stages; `stage` (from `opengenie train STAGE`) must match
    the config's model."""

    def __init__(self, args: list[str] | None = None, stage: str | None = None, run: bool = True,
                 parse_only: bool = False) -> None:
        if stage is not None and stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose one of {sorted(STAGES)}")
        self.stage, self.parse_only = stage, parse_only
        super().__init__(GenieStage, GenieDataModule, subclass_mode_model=True, args=args, run=run,
                         trainer_defaults=TRAINER_DEFAULTS, save_config_kwargs={"overwrite": True})

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(GenieCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ImageLogger, "images")
        parser.add_lightning_class_args(Throughput, "throughput")  # after ImageLogger: see Throughput

    def instantiate_classes(self) -> None:
        if not self.parse_only:  # parse_only: check a config (types, names) without building models
            super().instantiate_classes()

    def before_fit(self) -> None:
        if self.stage is not None and not isinstance(self.model, STAGES[self.stage]):
            raise ValueError(f"`opengenie train {self.stage}` needs a config whose model is "
                             f"{STAGES[self.stage].__name__}, got {type(self.model).__name__}")


def parse(config: str, *overrides: str) -> dict:
    """The parsed, type-checked config of a YAML file (with command-line style overrides),
    its model configs resolved from the preset and overrides: the config errors a run would
    meet, found without building a model or reading data."""
    from opengenie.training.checkpoints import resolve_config

    cli = GenieCLI(args=["--config", config, *overrides], run=False, parse_only=True)
    init = cli.config["model"]["init_args"]
    resolve_config(init["preset"], init.get("overrides"))
    return cli.config.as_dict()


CONFIGS = Path(__file__).parent.parent / "configs"  # configs/<stage>/<name>.yaml, shipped in the wheel


def packaged_configs(args: list[str], stage: str | None) -> list[str]:
    """`--config tiny` names a shipped config (configs/<stage>/tiny.yaml) when no file `tiny`
    exists, so an installed wheel trains without a checkout; file paths pass unchanged."""
    out = list(args)
    for i, arg in enumerate(out):
        name = out[i + 1] if arg == "--config" and i + 1 < len(out) else None
        if stage is not None and name and not Path(name).exists() and (CONFIGS / stage / f"{name}.yaml").is_file():
            out[i + 1] = str(CONFIGS / stage / f"{name}.yaml")
    return out


def main(args: list[str] | None = None, stage: str | None = None) -> GenieCLI:
    """Run the CLI on `args` (default: sys.argv[1:]), e.g. ["fit", "--config", "x.yaml"].
    With a `stage`, `--config NAME` may name a shipped config (`packaged_configs`).

    A run stopped by SIGTERM (after writing last.ckpt) exits with status 143, as a process
    killed by SIGTERM does, so that a scheduler or script sees it did not finish.
    """
    try:
        return GenieCLI(args=None if args is None else packaged_configs(args, stage), stage=stage)
    except SIGTERMException:
        sys.exit(128 + signal.SIGTERM)
