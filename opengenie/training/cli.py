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

import difflib
import logging
import re
import signal
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from opengenie.training.callbacks import GenieCheckpoint, ImageLogger, Throughput
from opengenie.training.checkpoints import check_resumable
from opengenie.training.data import GenieDataModule
from opengenie.training.loop import GenieStage
from opengenie.training.dynamics_stage import DynamicsModule
from opengenie.training.tokenizer_stage import TokenizerModule
from opengenie.training.summary import RunSummary

STAGES = {"tokenizer": TokenizerModule, "dynamics": DynamicsModule}

# The data stream shards itself over ranks (see data.py), and it never ends: training is
# bounded by max_steps and validated every val_check_interval steps, not per epoch.
TRAINER_DEFAULTS = {"use_distributed_sampler": False, "check_val_every_n_epoch": None, "max_epochs": -1}

# Expected, so not worth a warning: stage 2's frozen tokenizer stays in eval mode, and
# `opengenie train` hands LightningCLI its arguments while sys.argv (kept for DDP's
# re-launch of the same command) holds the full command line.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")  # Lightning's own


class _QuietConsole(logging.Filter):
    """Drops Lightning's adverts ("💡 Tip: ... litlogger / litmodels") and the model summary's
    "0 Total Flops" line (FLOPs are not counted there; the Throughput callback logs MFU)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            if record.msg.startswith("💡 Tip:"):
                return False
            record.msg = re.sub(r"\n\s*0\s+Total Flops$", "", record.msg)
        return True


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.callbacks.model_summary"):
    logging.getLogger(_name).addFilter(_QuietConsole())

# Options must be spelt out (no argparse prefix matching: `--trainer.max_step` is a typo, not
# max_steps), and parse errors are raised, to be shown as one line (`one_line`).
_PARSER = {"allow_abbrev": False, "exit_on_error": False}
PARSER_KWARGS = {**_PARSER, **{sub: dict(_PARSER) for sub in ("fit", "validate", "test", "predict")}}


def one_line(message: str, options: list[str] = ()) -> str:
    """The line that matters of a jsonargparse error: the reason of a failed Union (not the
    NoneType alternative), `key: reason` for a parser key, a suggestion for an unknown option."""
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    if "Errors:" in lines:
        reasons = [line[2:] for line in lines[lines.index("Errors:") + 1:] if line.startswith("- ")]
        reasons = [r for r in reasons if not r.startswith("Expected a <class 'NoneType'>")]
        if reasons:
            return one_line(reasons[0], options)
    text = " ".join(lines)
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    text = re.sub(r'^Parser key "([^"]+)":\s*', r"\1: ", text)
    text = re.sub(r"Expected an? ([\w.\[\], ]+)\. Got value: (.*)", r"expected \1, got \2", text)
    text = text.replace(": File does not exist:", ": file does not exist:")
    unknown = re.match(r"unrecognized arguments: (.*)", text)
    if unknown:
        names = [a for a in unknown.group(1).split() if a.startswith("--")]
        hints = []
        for name in names:
            name = name.split("=")[0]
            close = difflib.get_close_matches(name, [o for o in options if not name.startswith(o + ".")], 1, 0.8)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        return f"unknown option{'s' if len(hints) > 1 else ''} {', '.join(hints) or unknown.group(1)}"
    return text


class GenieCLI(LightningCLI):
    """LightningCLI over the Genie stages; `stage` (from `opengenie train STAGE`) must match
    the config's model."""

    def __init__(self, args: list[str] | None = None, stage: str | None = None, run: bool = True,
                 parse_only: bool = False) -> None:
        if stage is not None and stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose one of {sorted(STAGES)}")
        self.stage, self.parse_only = stage, parse_only
        super().__init__(GenieStage, GenieDataModule, subclass_mode_model=True, args=args, run=run,
                         trainer_defaults={**TRAINER_DEFAULTS, "callbacks": [RunSummary()]},
                         save_config_kwargs={"overwrite": True}, parser_kwargs=PARSER_KWARGS)

    def parse_arguments(self, parser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            parsers = [parser, *getattr(self, "_subcommand_parsers", {}).values()]
            options = [o for p in parsers for o in p._option_string_actions]
            raise ValueError(one_line(err, options)) from None

    def _parse_ckpt_path(self) -> None:
        # Lightning would parse the saved hyper-parameters of an explicit path over the config
        # given, but not those of "last" (resolved later, in fit): the config given (file and
        # command line) builds the run either way, and what differs from the checkpoint's run is
        # said. A changed model config is refused when the checkpoint loads (GenieStage).
        if self.config.get("subcommand") == "fit":
            path = self._check_checkpoint_folder(self.config["fit"])
            if path is not None:
                self._note_changed_settings(self.config["fit"], path)

    @staticmethod
    def _note_changed_settings(config, path: Path) -> None:
        import torch
        from lightning.pytorch.utilities import rank_zero_info

        saved = torch.load(path, weights_only=True, map_location="cpu", mmap=True).get("hyper_parameters", {})
        model = config.get("model") or {}
        given = {"class_path": model.get("class_path"), **dict(model.get("init_args") or {})}
        saved = {"class_path": saved.get("_class_path"), **saved}
        changed = [f"{name} {_plain(saved[name])} -> {_plain(value)}" for name, value in given.items()
                   if name in saved and name != "genie_config" and _plain(saved[name]) != _plain(value)]
        if changed:
            rank_zero_info(f"resuming {path} with the config given, whose model settings differ from its run's: "
                           + ", ".join(changed))

    def _check_checkpoint_folder(self, config) -> Path | None:
        """Refuse a damaged checkpoint to resume from, and a new run into an earlier run's folder.
        Returns the local checkpoint the run resumes from, if any."""
        ckpt_path, checkpoint = config.get("ckpt_path"), config.get("checkpoint") or {}
        folder = Path(checkpoint["dirpath"]) if checkpoint.get("dirpath") else None
        resumed = None
        if ckpt_path == "last":
            if folder is not None:  # Lightning looks there and takes the newest
                last = sorted(folder.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
            else:
                # Without a dirpath each run writes to a new lightning_logs/version_N folder, where
                # Lightning would look for "last" and find nothing: resume the newest run under
                # the root instead of silently starting afresh.
                root = Path((config.get("trainer") or {}).get("default_root_dir") or ".")
                last = sorted(root.glob("**/checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime)
                if last:
                    config["ckpt_path"] = str(last[-1])
            if last:
                check_resumable(last[-1])
                resumed = last[-1]
        elif ckpt_path and _local_file(str(ckpt_path)):
            check_resumable(ckpt_path)
            resumed = Path(ckpt_path)
        if not ckpt_path and folder is not None and folder.is_dir() and not checkpoint.get("overwrite"):
            earlier = sorted(p.name for p in folder.glob("*.ckpt"))
            if earlier:
                raise ValueError(
                    f"{folder} already holds checkpoints of an earlier run ({', '.join(earlier)}); resume it with "
                    "--ckpt_path last, write this run elsewhere with --checkpoint.dirpath DIR, or start it afresh "
                    "there with --checkpoint.overwrite true (deletes those checkpoints)")
        return resumed

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(GenieCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ImageLogger, "images")
        parser.add_lightning_class_args(Throughput, "throughput")  # after ImageLogger: see Throughput

    def instantiate_classes(self) -> None:
        if not self.parse_only:  # parse_only: check a config (types, names) without building models
            try:
                super().instantiate_classes()
            except ValueError as err:
                raise ValueError(one_line(err)) from None

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


def _plain(value):
    """A setting as plain data (namespaces as dicts, tuples as lists), to compare saved with given."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _local_file(ckpt_path: str) -> bool:
    """Whether --ckpt_path names a local file (not "best", "hpc", a registry entry or a URL)."""
    return ckpt_path not in ("best", "hpc", "registry") and not ckpt_path.startswith("registry:") \
        and "://" not in ckpt_path


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
