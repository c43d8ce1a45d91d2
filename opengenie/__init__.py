"""opengenie: Genie (Generative Interactive Environments) in PyTorch.

Learn a world from unlabelled video — a video tokenizer, a latent action model and a MaskGIT
dynamics model — then play it one key press per frame.
"""

from opengenie import presets
from opengenie.blueprints import LATENT_ACT_ENC, MAGVIT2_DEC_DESC, MAGVIT2_ENC_DESC
from opengenie.config import DynamicsConfig, GenieConfig, LatentActionConfig, TokenizerConfig
from opengenie.dynamics import DynamicsModel
from opengenie.genie import Genie
from opengenie.latent_action import LatentAction, LatentActionModel
from opengenie.tokenizer import VideoTokenizer

__version__ = "0.1.0"

__all__ = [
    "DynamicsConfig", "DynamicsModel", "Genie", "GenieConfig", "LATENT_ACT_ENC", "LatentAction",
    "LatentActionConfig", "LatentActionModel", "MAGVIT2_DEC_DESC", "MAGVIT2_ENC_DESC",
    "TokenizerConfig", "VideoTokenizer", "presets",
]
