"""opengenie: Genie (Generative Interactive Environments) in PyTorch.

Learn a world from unlabelled video — a video tokenizer, a latent action model and a MaskGIT
dynamics model — then play it one key press per frame.

The public names below load on first use, so `import opengenie` (and the `opengenie` command's
`--help`) does not pay for importing torch until a model is actually needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "presets": "opengenie.presets",
    "LATENT_ACT_ENC": "opengenie.blueprints",
    "MAGVIT2_DEC_DESC": "opengenie.blueprints",
    "MAGVIT2_ENC_DESC": "opengenie.blueprints",
    "DynamicsConfig": "opengenie.config",
    "GenieConfig": "opengenie.config",
    "LatentActionConfig": "opengenie.config",
    "TokenizerConfig": "opengenie.config",
    "DynamicsModel": "opengenie.dynamics",
    "Genie": "opengenie.genie",
    "LatentAction": "opengenie.latent_action",
    "LatentActionModel": "opengenie.latent_action",
    "VideoTokenizer": "opengenie.tokenizer",
}

__all__ = [
    "DynamicsConfig", "DynamicsModel", "Genie", "GenieConfig", "LATENT_ACT_ENC", "LatentAction",
    "LatentActionConfig", "LatentActionModel", "MAGVIT2_DEC_DESC", "MAGVIT2_ENC_DESC",
    "TokenizerConfig", "VideoTokenizer", "presets",
]


def __getattr__(name: str) -> Any:
    """PEP 562: import the module behind a public name the first time it is asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'opengenie' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name == "presets" else getattr(module, name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static tools see the names as plain imports
    from opengenie import presets
    from opengenie.blueprints import LATENT_ACT_ENC, MAGVIT2_DEC_DESC, MAGVIT2_ENC_DESC
    from opengenie.config import DynamicsConfig, GenieConfig, LatentActionConfig, TokenizerConfig
    from opengenie.dynamics import DynamicsModel
    from opengenie.genie import Genie
    from opengenie.latent_action import LatentAction, LatentActionModel
    from opengenie.tokenizer import VideoTokenizer
