"""Training through Lightning: the stages as LightningModules, the data, the callbacks, the CLI.

    TokenizerModule, DynamicsModule   the two stages (tokenizer_stage.py, dynamics_stage.py),
                                      one loop (loop.py)
    GenieDataModule                   resumable clip stream over an episode folder or tar shards (data.py)
    tokenize_episodes, TokenClipDataset  cached tokens for stage 2 (tokens.py)
    export, genie_from_checkpoints    a trained run → the dir `Genie.from_pretrained` loads
    main                              the LightningCLI entry (`opengenie train ...`)

Needs the `train` extra: `pip install 'opengenie[train]'` (Lightning, jsonargparse, TensorBoard).
"""

from opengenie.training.checkpoints import export, genie_from_checkpoints, load_tokenizer, resolve_config
from opengenie.training.cli import main
from opengenie.training.data import GenieDataModule, ResumableSampler
from opengenie.training.dynamics_stage import DynamicsModule
from opengenie.training.loop import GenieStage
from opengenie.training.tokenizer_stage import TokenizerModule
from opengenie.training.tokens import TokenClipDataset, tokenize_episodes

__all__ = [
    "DynamicsModule", "GenieDataModule", "GenieStage", "ResumableSampler", "TokenClipDataset", "TokenizerModule",
    "export", "genie_from_checkpoints", "load_tokenizer", "main", "resolve_config", "tokenize_episodes",
]
