"""Stage 2 of Genie's training as a LightningModule (Genie §2.2: "the latent action model and
the dynamics model are then co-trained"): the latent action model (its own reconstruction + VQ
loss) and the dynamics model, on the FROZEN tokenizer's tokens and the action model's
stop-gradient actions. It runs in the one loop of `loop.py`.

The model sizes come from a preset name plus overrides (or from the world it starts from); the
resolved configs, the frozen tokenizer's among them, are saved in the checkpoint's
hyper-parameters (`genie_config`), so a checkpoint is complete on its own.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from opengenie.config import GenieConfig
from opengenie.dynamics import DynamicsModel
from opengenie.engine import Rollout
from opengenie.genie import Genie
from opengenie.latent_action import LatentActionModel
from opengenie.tokenizer import VideoTokenizer, same_tokens
from opengenie.training.checkpoints import (config_dict, genie_from_checkpoints, load_tokenizer, resolve_config,
                                            tokenizer_fingerprint, weights_hash)
from opengenie.training.loop import GenieStage, StepLoss, count, psnr_of_mse
from opengenie.training.schedule import Schedule


def _trained_stage2(path: str, tokenizer: VideoTokenizer):
    """The world a stage-2 checkpoint or a world dir holds, checked to be trained on `tokenizer`'s
    tokens (its encoder and codebook; a decoder trained further is fine)."""
    world = Genie.from_pretrained(path) if Path(path).is_dir() else genie_from_checkpoints(path)
    token_side = {k: v for k, v in tokenizer.state_dict().items() if k.split(".")[0] in VideoTokenizer.TOKEN_SIDE}
    if not (same_tokens(tokenizer.config, world.tokenizer.config) and _same_weights(token_side, world.tokenizer)):
        raise ValueError(f"model.init {path} was trained on another tokenizer's tokens than model.tokenizer")
    return world


def _same_weights(state: dict[str, torch.Tensor], module: nn.Module) -> bool:
    """Whether `module` holds every tensor of `state` with the same values (in any dtype: a world
    saved in fp16 against the fp32 checkpoint it came from)."""
    theirs = module.state_dict()
    return all(k in theirs and torch.equal(v.float(), theirs[k].float()) for k, v in state.items())


def _unguided(config):
    """A dynamics config as it plays plain (no action guidance): what a distilled student plays."""
    return dataclasses.replace(config, action_guidance=0.0, guidance_against=None)


class DynamicsModule(GenieStage):
    """Stage 2: the latent action model and the dynamics model, trained together.

    tokenizer: the trained tokenizer — a stage-1 checkpoint (`.ckpt`) or an exported world dir.
        It stays frozen (eval mode, no gradients) and is saved inside this stage's checkpoints.
    Batches are `{"video": (B, 3, T, H, W) in [-1, 1]}`, optionally with cached
    `"tokens": (B, T, H', W')` (see `opengenie tokenize`) and true `"actions"` (only logged:
    the NMI of latent vs true actions at validation).
    lr, warm-up, schedule: Genie's CoinRun dynamics uses 3e-5 → 3e-6 on a cosine after 5k steps.
    action_loss_weight: weight of the action model's own loss in the sum.
    action_grad: co-train the action model through the dynamics loss (Jasmine, GenieRedux; Genie
        itself stops this gradient): once the codes are placed, the dynamics model reads the ids
        through a straight-through one-hot whose gradient reaches the action encoder, so the codes
        learn what the dynamics model needs to know, not only what the action decoder does.
    context_noise: corrupt up to this share of the dynamics model's unmasked context tokens with
        random codes (`DynamicsModel.compute_loss`); 0 (Genie): clean context.
    action_dropout: the share of frames whose incoming action the dynamics model is not told
        (`DynamicsModel.compute_loss`), so that it also learns the unconditional model which action
        guidance can contrast with (`DynamicsConfig.guidance_against`); 0 (Genie): none.
    distill_guidance: guidance distillation. With `init` a world trained with action dropout and
        w > 0, the dynamics model learns to draw in one pass what `init`'s dynamics draws guided at
        w against no action in two (`DynamicsModel.distill_loss`, the KL between the two on the
        masked positions); `init`'s dynamics stays as the teacher, the action model is frozen
        (its codes, and so the world's labels, keep their meaning) and the model plays plain
        (`action_guidance` 0). 0 (Genie): the masked-token cross-entropy.
    distill_teacher: the world (or stage-2 checkpoint) to learn from instead of `init`, with the
        same action model: to train a distilled world further (`init` the distilled world, the
        teacher the guided one it was distilled from). None: `init` is the teacher.
    init: start from a trained stage 2 (a stage-2 checkpoint or a world dir on the same tokenizer):
        its action model and dynamics, their configs and weights (the codebook warm-up, already
        done, is not repeated); preset and overrides are then not used. For training further on
        other clips, e.g. longer ones than the world was trained on.
    """

    def __init__(self, tokenizer: str, preset: str = "tiny", overrides: dict | None = None,
                 genie_config: dict | None = None, lr: float = 3e-5, min_lr: float | None = 3e-6,
                 warmup_steps: int = 5_000, schedule: Schedule = "cosine", betas: tuple[float, float] = (0.9, 0.9),
                 weight_decay: float = 1e-4, grad_clip: float | None = 1.0, action_loss_weight: float = 1.0,
                 action_grad: bool = False, context_noise: float = 0.0, action_dropout: float = 0.0,
                 distill_guidance: float = 0.0, distill_teacher: str | None = None, init: str | None = None,
                 compile: bool = False) -> None:
        super().__init__(lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, schedule=schedule, betas=betas,
                         weight_decay=weight_decay, grad_clip=grad_clip, compile=compile)
        for name, share in (("context_noise", context_noise), ("action_dropout", action_dropout)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"model.{name} must lie in [0, 1], got {share}")
        if distill_guidance < 0:
            raise ValueError(f"model.distill_guidance must be >= 0, got {distill_guidance}")
        if distill_guidance and (init is None or action_dropout or action_grad):
            raise ValueError("model.distill_guidance learns from the world in model.init (required), with its "
                             "action model frozen: leave model.action_dropout and model.action_grad out")
        if distill_teacher is not None and not distill_guidance:
            raise ValueError("model.distill_teacher is the world model.distill_guidance learns from; set both")
        frozen = load_tokenizer(tokenizer)
        start = _trained_stage2(init, frozen) if init is not None else None
        if start is not None and distill_guidance:  # the student plays plain: one pass a draw
            plain = _unguided(start.config.dynamics)
            teacher = start if distill_teacher is None else _trained_stage2(distill_teacher, frozen)
            if teacher is not start and (_unguided(teacher.config.dynamics) != plain
                                         or not _same_weights(start.action_model.state_dict(), teacher.action_model)):
                raise ValueError(f"model.distill_teacher {distill_teacher} needs model.init's dynamics config and "
                                 "action model (the latent actions the labels name)")
            self._teacher = (teacher.dynamics.float().requires_grad_(False).eval(),)  # a tuple: not saved, not trained
            start.config = dataclasses.replace(start.config, dynamics=plain)
        if start is not None and overrides and not genie_config:
            raise ValueError("model.init takes the trained stage 2's config; leave out model.overrides")
        try:
            config = (GenieConfig.from_dict(genie_config) if genie_config
                      else GenieConfig(tokenizer=frozen.config, action=start.config.action,
                                       dynamics=start.config.dynamics) if start is not None
                      else GenieConfig(**resolve_config(preset, overrides, tokenizer=frozen.config)))
        except ValueError as err:
            raise ValueError(f"model config: {err}") from None
        if config.tokenizer != frozen.config:
            raise ValueError(f"genie_config.tokenizer does not match the tokenizer in {tokenizer}")
        self.save_hyperparameters()
        self.hparams.genie_config = config_dict(vars(config))
        self.tokenizer = frozen.requires_grad_(False).eval()
        self.action_model = LatentActionModel(config.action)
        self.dynamics = DynamicsModel(config.dynamics)
        if start is not None:
            if (config.action, config.dynamics) != (start.config.action, start.config.dynamics):
                raise ValueError(f"genie_config does not match the stage 2 in {init}")
            for name in ("action_model", "dynamics"):
                own = getattr(self, name).state_dict()
                getattr(self, name).load_state_dict({k: v.to(own[k].dtype) if k in own else v
                                                     for k, v in getattr(start, name).state_dict().items()})
        self._val_actions: list[tuple[torch.Tensor, torch.Tensor]] = []  # (latent, true) per batch

    def train(self, mode: bool = True) -> "DynamicsModule":
        super().train(mode)
        self.tokenizer.eval()  # frozen: fixed tokens, and no dead-code restarts in its codebook
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.hparams.distill_guidance:
            checkpoint["distill_teacher"] = weights_hash(self._teacher[0])

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("distill_teacher")
        if self.hparams.distill_guidance and saved is not None and saved != weights_hash(self._teacher[0]):
            # The path the run learned from may hold other weights since (an export over it).
            option = "distill_teacher" if self.hparams.distill_teacher else "init"
            raise ValueError(f"model.{option} {self.hparams.get(option)} holds other weights than the teacher this "
                             "run distilled from; put that world back there to resume (e.g. git checkout COMMIT -- DIR)")

    def on_fit_start(self) -> None:
        if self.hparams.distill_guidance:
            self._teacher[0].to(self.device)
        cached = getattr(self.trainer.datamodule, "token_fingerprint", None)
        if cached is not None and cached != tokenizer_fingerprint(self.tokenizer):
            raise ValueError("the cached tokens were made by another tokenizer than model.tokenizer; "
                             "re-run `opengenie tokenize` with this tokenizer, or set data.tokens: false")

    # --- the two inputs the dynamics model learns from -------------------------------------

    @torch.no_grad()
    def tokenize(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, C, T, H, W) → ids (B, T, H', W'), always in fp32: tokens are labels, and
        bf16 noise would flip near-tied codes (and cached tokens would no longer match)."""
        with torch.autocast(video.device.type, enabled=False):
            return self.tokenizer.tokenize(video.float())[1]

    @torch.no_grad()
    def infer_actions(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, C, T, H, W) → latent actions (B, T−1), with no gradient (Genie §2.1: the
        dynamics model's loss does not train the action model). The codebook is left as it
        is here; the action model's own forward pass below counts usage and restarts codes."""
        quantizer = self.action_model.quantizer
        was = quantizer.training
        quantizer.eval()
        try:
            return self.action_model.infer_actions(video)
        finally:
            quantizer.train(was)

    def action_onehot(self, video: torch.Tensor) -> torch.Tensor | None:
        """Straight-through one-hots (B, T−1, A) of the latent actions, with gradient to the action
        model; None while the codebook warm-up has not placed the codes (nothing to choose among)."""
        quantizer = self.action_model.quantizer
        if quantizer._warming():
            return None
        was = quantizer.training
        quantizer.eval()  # as in infer_actions: the action model's own pass counts usage and restarts codes
        try:
            codes = self.action_model.encode(video).actions
        finally:
            quantizer.train(was)
        return quantizer.straight_through_onehot(codes.embeddings, codes.ids)

    def compute_loss(self, batch: dict, generator: torch.Generator | None = None) -> StepLoss:
        video = batch["video"]
        tokens = batch["tokens"] if "tokens" in batch else self.tokenize(video)
        onehot = self.action_onehot(video) if self.hparams.action_grad and self.training else None
        actions = self.infer_actions(video) if onehot is None else onehot.argmax(-1)  # (B, T−1)
        if self.hparams.distill_guidance:
            loss, logs = self._distill_loss(tokens, actions, generator)
        else:
            loss, logs = self._stage2_loss(video, tokens, actions, onehot, generator)
        if not self.training and "actions" in batch:
            # actions[:, t] is the action taken after frame t, as latent action t is. NMI is
            # pooled over the whole validation set at the epoch's end: on one small batch it is
            # biased upwards (a few samples always look more informative than they are).
            self._val_actions.append((actions.flatten(), batch["actions"][:, :-1].flatten()))
        return StepLoss(loss, logs)

    def _stage2_loss(self, video: torch.Tensor, tokens: torch.Tensor, actions: torch.Tensor,
                     onehot: torch.Tensor | None, generator: torch.Generator | None) -> tuple[torch.Tensor, dict]:
        """Genie's stage-2 loss and its logs: the dynamics cross-entropy plus the action model's own loss."""
        lam = self.action_model(video)
        noise, dropout = (self.hparams.context_noise, self.hparams.action_dropout) if self.training else (0.0, 0.0)
        dyn = self.dynamics.compute_loss(tokens, actions, generator=generator, action_onehot=onehot,
                                         context_noise=noise, action_dropout=dropout)
        loss = dyn.loss + self.hparams.action_loss_weight * lam.loss
        logs = {"loss": loss, "dynamics/cross_entropy": dyn.loss, "dynamics/accuracy": dyn.accuracy,
                "dynamics/mask_rate": dyn.mask_rate, "action/loss": lam.loss, "action/recon": lam.parts.recon,
                "action/psnr": psnr_of_mse(lam.parts.recon.detach()), "action/quant": lam.parts.quant,
                "action/perplexity": lam.parts.perplexity, "action/usage": lam.parts.usage}
        if self.training:
            logs["action/restarted"] = count(self.action_model.quantizer.restarted_codes)
        return loss, logs

    def _distill_loss(self, tokens: torch.Tensor, actions: torch.Tensor,
                      generator: torch.Generator | None) -> tuple[torch.Tensor, dict]:
        """Guidance distillation's loss (`distill_guidance`) and its logs: the action model is not trained."""
        noise = self.hparams.context_noise if self.training else 0.0
        dyn = self.dynamics.distill_loss(self._teacher[0], tokens, actions, self.hparams.distill_guidance,
                                         generator=generator, context_noise=noise)
        return dyn.loss, {"loss": dyn.loss, "dynamics/guidance_kl": dyn.loss,
                          "dynamics/teacher_agreement": dyn.accuracy, "dynamics/mask_rate": dyn.mask_rate}

    def on_validation_epoch_start(self) -> None:
        self._val_actions = []

    def on_validation_epoch_end(self) -> None:
        if not self._val_actions:
            return
        from opengenie.evaluation.actions import nmi

        latent, true = (torch.cat(x) for x in zip(*self._val_actions))
        self._val_actions = []
        if self.trainer.world_size > 1:  # every rank's share of the validation set
            # Ranks may hold different numbers of clips; all_gather needs equal shapes, so pad
            # with -1 to the longest share and drop the padding after gathering.
            n = int(self.all_gather(torch.tensor(latent.numel(), device=latent.device)).max())
            latent, true = (self.all_gather(F.pad(x, (0, n - x.numel()), value=-1)).flatten() for x in (latent, true))
            kept = latent >= 0
            latent, true = latent[kept], true[kept]
        self.log("val/action/nmi", float(nmi(latent.cpu(), true.cpu())), batch_size=latent.numel())

    def trained_modules(self) -> list[nn.Module]:
        return [self.dynamics] if self.hparams.distill_guidance else [self.action_model, self.dynamics]

    def tokens_per_clip(self, batch: dict) -> int:
        return batch["video"].shape[2] * math.prod(self.dynamics.config.grid)

    def frozen_forward(self, batch: dict) -> None:
        if "tokens" not in batch:
            self.tokenize(batch["video"])

    @torch.no_grad()
    def images(self, batch: dict) -> dict[str, torch.Tensor]:
        """Real clips, rollouts from their first frame with the inferred actions, and with
        random actions: controllability shows as the middle row following the top one."""
        from opengenie.training.callbacks import video_grid

        video = batch["video"][:4]
        tokens, actions = self.tokenize(video), self.infer_actions(video)
        generator = torch.Generator(device=video.device).manual_seed(0)
        chance = torch.randint(0, self.dynamics.config.num_actions, actions.shape, generator=generator,
                               device=video.device)
        rows = [video, self._rollout(tokens[:, :1], actions, generator), self._rollout(tokens[:, :1], chance, generator)]
        names = ["real", "inferred actions", "random actions"]
        labels = [None, *([[""] + [f"a{int(a)}" for a in row] for row in acts] for acts in (actions, chance))]
        return {"rollout": video_grid(rows, names, labels)}

    def _rollout(self, first: torch.Tensor, actions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """first tokens (B, 1, H', W'), actions (B, n) → decoded video (B, C, n + 1, H, W), played
        by the engine (`opengenie.engine.Rollout`, cached: each MaskGIT step computes one frame)."""
        rollout, prompt = Rollout.from_tokens(self.tokenizer, self.dynamics, first,
                                              first.new_zeros((first.shape[0], 0)), generator)
        frames = [prompt] + [rollout.step(actions[:, t]) for t in range(actions.shape[1])]
        return torch.cat(frames, dim=2).clamp(-1, 1)
