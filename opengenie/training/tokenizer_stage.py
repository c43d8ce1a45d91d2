"""Stage 1 of Genie's training as a LightningModule: the video tokenizer (Genie §2.2: "we first
train the video tokenizer"), by the VQ-VAE loss; the MagViT-2 variant with gan_loss_weight > 0
also trains its discriminator, by its own optimiser. It runs in the one loop of `loop.py`.

The model sizes come from a preset name plus overrides; the resolved configs are saved in the
checkpoint's hyper-parameters (`genie_config`), so a checkpoint is complete on its own.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from torch import nn

from opengenie.config import TokenizerConfig
from opengenie.tokenizer import DECODER_FIELDS, VideoTokenizer, criterion_for, same_tokens
from opengenie.training.checkpoints import config_dict, load_tokenizer, parts_from_dict, resolve_config
from opengenie.training.loop import GenieStage, StepLoss, count, psnr_of_mse
from opengenie.training.schedule import Schedule


def _grown(config: TokenizerConfig, overrides: dict | None) -> TokenizerConfig:
    """A trained tokenizer's config with a decoder head added by `overrides` (DECODER_FIELDS only:
    any other change would make its trained weights and ids mean something else)."""
    if not overrides:
        return config
    fields = overrides.get("tokenizer") if set(overrides) == {"tokenizer"} else None
    if not isinstance(fields, dict) or not set(fields) <= set(DECODER_FIELDS):
        raise ValueError("model.init takes the trained tokenizer's config; model.overrides may only add a "
                         f"decoder head, as {{'tokenizer': {{...}}}} with keys from {list(DECODER_FIELDS)}")
    return replace(config, **fields)


def _load_start(tokenizer: VideoTokenizer, start: VideoTokenizer, init: str) -> None:
    """Load the trained tokenizer `start` into `tokenizer`, which may add a pixel head to it."""
    if not same_tokens(start.config, tokenizer.config):
        raise ValueError(f"genie_config.tokenizer does not match the tokenizer in {init}")
    if start.config == tokenizer.config:
        tokenizer.load_state_dict(start.state_dict())
        return
    if start.pixel_head is not None:
        have = (start.config.pixel_head_channels, start.config.pixel_head_blocks)
        want = (tokenizer.config.pixel_head_channels, tokenizer.config.pixel_head_blocks)
        raise ValueError(f"model.init {init} has a pixel head of {have[0]} channels × {have[1]} blocks, and this "
                         f"run's config asks for {want[0]} × {want[1]}: a trained head cannot be removed or "
                         "reshaped; match its shape in model.overrides, or start from a tokenizer without one")
    missing, _ = tokenizer.load_state_dict(start.state_dict(), strict=False)
    if any(not k.startswith("pixel_head.") for k in missing):
        raise ValueError(f"{init} lacks weights besides the new pixel head: {missing}")


class TokenizerModule(GenieStage):
    """Stage 1: train the video tokenizer on clips `{"video": (B, 3, T, H, W) in [-1, 1]}`.

    preset / overrides: model sizes, e.g. preset "tiny" with overrides
        {"tokenizer": {"codebook_size": 256}}; genie_config (written into checkpoints) wins.
    lr, warm-up, schedule: Genie's CoinRun tokenizer uses 3e-4 after 10k warm-up steps, constant.
    disc_lr: the discriminator's lr (GAN variant only; default lr).
    init: start from a trained tokenizer (a stage-1 checkpoint or a world dir): its config and
        weights; preset is then not used, and overrides may only add a pixel head to its decoder
        ({"tokenizer": {"pixel_head_channels": 32}}, which starts as the decoder it is added to).
    train_part: "all", or "decoder" to train only the decoder (st-vivit) with the encoder and the
        codebook frozen: every clip keeps its token ids, so a stage 2 trained on them stays valid
        and can be exported with the fine-tuned decoder (`opengenie export --tokenizer`).
    """

    def __init__(self, preset: str = "tiny", overrides: dict | None = None, genie_config: dict | None = None,
                 lr: float = 3e-4, min_lr: float | None = None, warmup_steps: int = 10_000,
                 schedule: Schedule = "constant", betas: tuple[float, float] = (0.9, 0.9),
                 weight_decay: float = 1e-4, grad_clip: float | None = 1.0, disc_lr: float | None = None,
                 init: str | None = None, train_part: Literal["all", "decoder"] = "all",
                 compile: bool = False) -> None:
        super().__init__(lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, schedule=schedule, betas=betas,
                         weight_decay=weight_decay, grad_clip=grad_clip, compile=compile)
        if train_part not in ("all", "decoder"):
            raise ValueError(f"train_part must be 'all' or 'decoder', got {train_part!r}")
        start = load_tokenizer(init) if init is not None else None
        if genie_config:
            parts = parts_from_dict(genie_config)
        elif start is not None:
            parts = resolve_config(preset, tokenizer=_grown(start.config, overrides))
        else:
            parts = resolve_config(preset, overrides)
        self.save_hyperparameters()
        self.hparams.genie_config = config_dict(parts)
        self.tokenizer = VideoTokenizer(parts["tokenizer"])
        # The perceptual and GAN terms are this trainer's, not the model's: a world never holds them.
        self.criterion = criterion_for(self.tokenizer.config)
        if start is not None:
            _load_start(self.tokenizer, start, init)
        if train_part == "decoder":
            if self.tokenizer.config.kind != "st-vivit" or self._discriminator is not None:
                raise ValueError("train_part 'decoder' needs an st-vivit tokenizer without a discriminator")
            for module in self._token_side():
                module.requires_grad_(False)
        # Two players (tokenizer vs discriminator) need two optimisers stepped in turn.
        self.automatic_optimization = self._discriminator is None
        self._tokens_per_clip: int | None = None

    @property
    def _discriminator(self) -> nn.Module | None:
        return None if self.criterion is None else self.criterion.discriminator

    def compute_loss(self, batch: dict, generator: torch.Generator | None = None) -> StepLoss:
        loss, parts = self.tokenizer(batch["video"], criterion=self.criterion)
        logs = {"loss": loss, "recon": parts.recon, "psnr": psnr_of_mse(parts.recon.detach()),
                "quant": parts.quant, "codebook/perplexity": parts.perplexity, "codebook/usage": parts.usage}
        if self.criterion is not None and self.criterion.perceptual is not None:
            logs["perceptual"] = parts.perceptual
        if self._discriminator is not None:
            logs["gan"] = parts.gan
        if self.training and hasattr(self.tokenizer.quantizer, "restarted_codes"):
            logs["codebook/restarted"] = count(self.tokenizer.quantizer.restarted_codes)
        return StepLoss(loss, logs)

    def _token_side(self) -> list[nn.Module]:
        """The modules that decide a clip's token ids (frozen under train_part 'decoder')."""
        if self.hparams.train_part == "all":
            return []
        return [getattr(self.tokenizer, name) for name in VideoTokenizer.TOKEN_SIDE]

    def train(self, mode: bool = True) -> "TokenizerModule":
        super().train(mode)
        for module in self._token_side():
            module.eval()  # fixed ids: no dead-code restarts, no dropout in the encoder
        return self

    def trained_modules(self) -> list[nn.Module]:
        return [self.tokenizer]  # the optimiser takes only parameters that require grad

    def adversary_modules(self) -> list[nn.Module]:
        return [] if self._discriminator is None else [self._discriminator]

    def adversary_loss(self, batch: dict) -> torch.Tensor:
        return self.tokenizer.discriminator_loss(batch["video"], criterion=self.criterion)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        # Checkpoints from before the discriminator moved out of the tokenizer.
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("tokenizer.discriminator.")]:
            state["criterion." + key[len("tokenizer."):]] = state.pop(key)

    def tokens_per_clip(self, batch: dict) -> int:
        if self._tokens_per_clip is None:
            # In eval mode: a training-mode pass would count as a codebook step (dead-code
            # counters, restarts drawn from the random stream) that a resumed run repeats.
            was = self.tokenizer.training
            self.tokenizer.eval()
            try:
                with torch.no_grad():
                    self._tokens_per_clip = self.tokenizer.tokenize(batch["video"][:1])[1].numel()
            finally:
                self.tokenizer.train(was)
        return self._tokens_per_clip

    @torch.no_grad()
    def images(self, batch: dict) -> dict[str, torch.Tensor]:
        from opengenie.training.callbacks import video_grid

        video = batch["video"][:4]
        recon = self.tokenizer.decode(self.tokenizer.tokenize(video)[0]).clamp(-1, 1)
        return {"reconstruction": video_grid([video, recon], ["real", "reconstruction"])}
