"""The rollout engine: prompt → frames, one action at a time, for one world or N together.

    rollout = Rollout.start(tokenizer, action_model, dynamics, video, seed=0)   # or Genie.start
    frame = rollout.step(torch.tensor([3]))      # (B, C, 1, H, W) in [-1, 1], after latent action 3

A `Rollout` owns everything a world being played holds: the token history (trimmed to what a
later step can read), the actions between its frames, the key/value caches of the dynamics
model and of the tokenizer's decoder, and the random stream of MaskGIT's draws. The networks
stay stateless (STYLE §7), so one loaded world serves any number of rollouts. Every front door —
`Genie.reset/step/rollout`, `GenieEnv`, the play sessions and their preview, the training
image logger, evaluation — plays through this one class, and actions are checked here once.

N rollouts that step together are one `Rollout` of batch size N (eval's clips, the action
grid's rows): a step costs about as much per row as one rollout's on a GPU, and the caches hold
the N histories side by side. Rollouts started apart (players of the play server) step together
with `Rollout.step_together`: their caches are stacked for the step, each row at its own frame.

`compile_play(tokenizer, dynamics)` (or `Genie.compile_play()`) compiles the two passes a step
repeats — the dynamics model on one new frame against its cache, the decoder on one frame —
with torch.compile; every later rollout of that world uses the compiled passes. The cache's
shapes never change as a rollout advances, so each pass compiles once per batch size.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from opengenie.config import MAX_STEPS, MAX_TEMPERATURE
from opengenie.nn.attention import KVCache
from opengenie.nn.checks import check_ids, is_int, is_number


def check_sampling(maskgit_steps: int | None, temperature: float | None) -> None:
    """Refuse MaskGIT settings no step can run with (None means the model's own)."""
    if maskgit_steps is not None and (not is_int(maskgit_steps)
                                      or not 1 <= maskgit_steps <= MAX_STEPS):
        raise ValueError(f"maskgit_steps (MaskGIT iterations per frame) must be an integer in 1..{MAX_STEPS}, "
                         f"got {maskgit_steps!r}")
    if temperature is not None and (not is_number(temperature)
                                    or not 0 <= temperature <= MAX_TEMPERATURE):
        raise ValueError(f"temperature must be a number in 0..{MAX_TEMPERATURE:g} (0: the most likely tokens), "
                         f"got {temperature!r}")


# Inductor settings of the compiled play passes: the weights are folded into the compiled code
# (`freezing`), which is only right while they stay as they are, i.e. for playing a loaded world.
PLAY_COMPILE_OPTIONS = {"freezing": True, "cpp_wrapper": True}


@dataclass
class PlayGraphs:
    """The compiled passes of one world's play step (see `compile_play`)."""

    tokenizer: torch.nn.Module  # the tokenizer whose decoder `decode_ids` runs
    frame_logits: Callable  # DynamicsModel._logits on (B, 1, H', W') against a non-empty cache
    decode_ids: Callable  # VideoTokenizer.decode_ids on (B, 1, H', W') against a non-empty cache
    seconds: float = 0.0  # how long compiling (and the warm-up step) took


def compile_play(tokenizer, dynamics, warm_up: bool = True) -> PlayGraphs | None:
    """Compile the play step of the world made of `tokenizer` and `dynamics` (torch.compile,
    inductor, weights frozen in): every `Rollout` over them then runs the compiled passes.

    `warm_up` compiles now, on one step of a batch-1 rollout, rather than on a player's first
    step. Returns the graphs, or None (with a warning) when this machine cannot compile — no
    C++ compiler, say — in which case rollouts stay eager. `bench/play.py --compile` measures it.
    """
    started = time.perf_counter()
    graphs = PlayGraphs(tokenizer, torch.compile(dynamics._logits, dynamic=False, options=PLAY_COMPILE_OPTIONS),
                        torch.compile(tokenizer.decode_ids, dynamic=False, options=PLAY_COMPILE_OPTIONS))
    if warm_up:
        try:
            _warm_up(tokenizer, dynamics, graphs)
        except Exception as error:  # noqa: BLE001 (inductor raises many kinds; all mean "stay eager")
            warnings.warn(f"torch.compile could not compile the play step, rollouts stay eager: {error}",
                          stacklevel=2)
            return None
    graphs.seconds = time.perf_counter() - started
    dynamics._play_graphs = graphs  # only now: rollouts never wait on a compile another thread runs
    return graphs


@torch.no_grad()
def _warm_up(tokenizer, dynamics, graphs: PlayGraphs) -> None:
    """One batch-1 step through `graphs`: compiles the MaskGIT pass, the appending pass and the
    decoder pass against caches like a rollout's (same capacities, so the same shapes)."""
    grid = dynamics.config.grid or tokenizer.config.grid
    tokens = torch.zeros((1, 1, *grid), dtype=torch.long, device=next(dynamics.parameters()).device)
    dynamics_cache = KVCache(max_frames=dynamics.config.max_frames - 1)
    decoder_cache = KVCache(max_frames=tokenizer.config.max_frames - 1)
    dynamics.prefill(tokens, dynamics.prompt_actions(tokens.new_zeros((1, 0)), 1), dynamics_cache)
    with decoder_cache.appending():
        tokenizer.decode_ids(tokens, cache=decoder_cache)
    new = dynamics.next_frame(tokens.new_zeros((1, 1)), dynamics_cache, maskgit_steps=2, network=graphs.frame_logits)
    with decoder_cache.appending():
        graphs.decode_ids(new, cache=decoder_cache)


def play_graphs(tokenizer, dynamics) -> PlayGraphs | None:
    """The compiled play passes of this world, if `compile_play` made them."""
    graphs = getattr(dynamics, "_play_graphs", None)
    return graphs if graphs is not None and graphs.tokenizer is tokenizer else None


class Rollout:
    """B worlds being played: token history (B, T, H', W'), actions (B, T-1), caches, random stream.

    Build one with `Rollout.start` (from prompt frames) or `Rollout.from_tokens`; `step` adds one
    frame to every row. `maskgit_steps` / `temperature`: the sampling of every step (None: the
    dynamics model's config). `use_cache=False` recomputes the whole window on each step (the
    reference the cached path is tested against).
    """

    def __init__(self, tokenizer, dynamics, tokens: torch.Tensor, actions: torch.Tensor,
                 generator: torch.Generator, use_cache: bool = True, maskgit_steps: int | None = None,
                 temperature: float | None = None) -> None:
        check_sampling(maskgit_steps, temperature)
        self.tokenizer, self.dynamics = tokenizer, dynamics
        self.tokens, self.actions, self.generator = tokens, actions, generator  # (B, T, H', W'), (B, T-1)
        self.maskgit_steps, self.temperature = maskgit_steps, temperature
        self.window = dynamics.config.max_frames - 1  # the frames the dynamics model reads
        self.dynamics_cache = KVCache(max_frames=self.window) if use_cache else None
        self.decoder_cache = KVCache(max_frames=tokenizer.config.max_frames - 1) if use_cache else None
        if use_cache:
            dynamics.prefill(tokens, dynamics.prompt_actions(actions, tokens.shape[1]), self.dynamics_cache)

    # --- starting ------------------------------------------------------------------------

    @classmethod
    @torch.no_grad()
    def start(cls, tokenizer, action_model, dynamics, video: torch.Tensor, seed: int | None = None,
              use_cache: bool = True, maskgit_steps: int | None = None,
              temperature: float | None = None) -> tuple["Rollout", torch.Tensor]:
        """Begin from prompt frames video (B, C, T, H, W) in [-1, 1] (the last max_frames - 1 are
        kept) → (rollout, the reconstructed prompt (B, C, T, H, W)). The actions between prompt
        frames come from the action model."""
        video = video[:, :, -(dynamics.config.max_frames - 1):]  # the context that fits
        tokens = tokenizer.tokenize(video)[1]  # (B, T, H', W')
        b, t = tokens.shape[:2]
        actions = action_model.infer_actions(video) if t > 1 else tokens.new_zeros((b, 0))  # (B, T-1)
        return cls.from_tokens(tokenizer, dynamics, tokens, actions, seed, use_cache, maskgit_steps, temperature)

    @classmethod
    @torch.no_grad()
    def from_tokens(cls, tokenizer, dynamics, tokens: torch.Tensor, actions: torch.Tensor,
                    seed: int | torch.Generator | None = None, use_cache: bool = True,
                    maskgit_steps: int | None = None,
                    temperature: float | None = None) -> tuple["Rollout", torch.Tensor]:
        """Begin from prompt tokens (B, T, H', W') and the actions between them (B, T-1) →
        (rollout, the decoded prompt (B, C, T, H, W)). `seed` may be a generator to draw from
        (its stream is shared, not copied)."""
        if isinstance(seed, torch.Generator):
            generator = seed
        else:
            generator = torch.Generator(device=tokens.device)
            generator.manual_seed(int(torch.randint(0, 2**62, ())) if seed is None else seed)
        rollout = cls(tokenizer, dynamics, tokens, actions, generator, use_cache, maskgit_steps, temperature)
        if rollout.decoder_cache is None:
            return rollout, tokenizer.decode_ids(tokens)
        with rollout.decoder_cache.appending():  # the prompt is the decoder's first context
            return rollout, tokenizer.decode_ids(tokens, cache=rollout.decoder_cache)

    # --- playing -------------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def num_actions(self) -> int:
        return self.dynamics.config.num_actions

    @property
    def graphs(self) -> PlayGraphs | None:
        """The world's compiled play passes, looked up on every step: a world compiled while
        it is being played (the play server compiles in the background) speeds up its rollouts."""
        return play_graphs(self.tokenizer, self.dynamics) if self.dynamics_cache is not None else None

    def _action(self, action: torch.Tensor | int) -> torch.Tensor:
        """`action` checked: (B,) int64 ids of this world's latent actions (an int for B = 1)."""
        if is_int(action):
            action = torch.tensor([int(action)])
        if not isinstance(action, torch.Tensor) or action.dim() != 1 or action.shape[0] != self.batch_size:
            raise ValueError(f"expected one action per rollout row, (B,) = ({self.batch_size},) int64, "
                             f"got {tuple(action.shape) if isinstance(action, torch.Tensor) else type(action).__name__}")
        check_ids(action, self.num_actions, "action", "(B,)")
        return action.to(self.actions)

    def _record(self, action: torch.Tensor, new: torch.Tensor) -> None:
        """Add the frame `new` (B, 1, H', W') reached by `action` (B,) to the history, keeping only
        what a later step can read: the window (and the decoder's, if uncached)."""
        keep = max(self.window, self.tokenizer.config.max_frames)
        self.tokens = torch.cat([self.tokens, new], dim=1)[:, -keep:]
        self.actions = torch.cat([self.actions, action[:, None]], dim=1)[:, -(keep - 1):]

    @torch.no_grad()
    def step(self, action: torch.Tensor | int) -> torch.Tensor:
        """Generate the next frame of every row after `action` (B,) int64 (an int for B = 1) →
        video (B, C, 1, H, W) in [-1, 1]."""
        action = self._action(action)
        if self.dynamics_cache is None:
            actions = torch.cat([self.actions, action[:, None]], dim=1)[:, -self.window:]  # (B, T)
            new = self.dynamics.generate(self.tokens[:, -self.window:], actions, self.maskgit_steps,
                                         self.temperature, generator=self.generator)[:, -1:]  # (B, 1, H', W')
        else:
            graphs = self.graphs
            network = graphs.frame_logits if graphs is not None else None
            new = self.dynamics.next_frame(action[:, None], self.dynamics_cache, self.maskgit_steps,
                                           self.temperature, self.generator, grid=self.tokens.shape[2:],
                                           network=network)
        self._record(action, new)
        return self.decode(new)

    @staticmethod
    @torch.no_grad()
    def step_together(rollouts: list["Rollout"], actions: list[torch.Tensor | int]) -> list[torch.Tensor]:
        """One step of several one-row rollouts of one world (players stepping at once) as one
        batch → each one's frame (1, C, 1, H, W). Each row keeps its own history, caches and
        random stream: its frame is the one `rollout.step(action)` would give (the same draws;
        batched arithmetic may round differently in the last bits). The batched passes run
        eagerly: a compiled pass is shaped for one row (`compile_play`)."""
        if len(rollouts) == 1:
            return [rollouts[0].step(actions[0])]
        first = rollouts[0]
        for r in rollouts:
            if r.batch_size != 1 or r.dynamics_cache is None:
                raise ValueError("step_together takes cached one-row rollouts (one per player)")
            if (r.tokenizer is not first.tokenizer or r.dynamics is not first.dynamics
                    or (r.maskgit_steps, r.temperature) != (first.maskgit_steps, first.temperature)):
                raise ValueError("step_together takes rollouts of one world at the same MaskGIT settings")
        action = torch.cat([r._action(a) for r, a in zip(rollouts, actions)])  # (N,)
        dynamics_cache = KVCache.stack([r.dynamics_cache for r in rollouts])
        new = first.dynamics.next_frame(action[:, None], dynamics_cache, first.maskgit_steps, first.temperature,
                                        [r.generator for r in rollouts], grid=first.tokens.shape[2:])
        dynamics_cache.unstack([r.dynamics_cache for r in rollouts])
        decoder_cache = KVCache.stack([r.decoder_cache for r in rollouts])
        with decoder_cache.appending():
            video = first.tokenizer.decode_ids(new, cache=decoder_cache)  # (N, C, 1, H, W)
        decoder_cache.unstack([r.decoder_cache for r in rollouts])
        for i, r in enumerate(rollouts):
            r._record(action[i:i + 1], new[i:i + 1])
        return list(video.split(1))

    def decode(self, new: torch.Tensor) -> torch.Tensor:
        """Decode the newest frames `new` (B, t, H', W') that were just added → (B, C, t, H, W)."""
        if self.decoder_cache is None:  # decode the decoder's window again, keep the new frames
            window = self.tokens[:, -self.tokenizer.config.max_frames:]
            return self.tokenizer.decode_ids(window)[:, :, -new.shape[1]:]
        graphs = self.graphs
        decode = graphs.decode_ids if graphs is not None and new.shape[1] == 1 else self.tokenizer.decode_ids
        with self.decoder_cache.appending():
            return decode(new, cache=self.decoder_cache)

    def branch(self) -> "Rollout":
        """A copy that shares nothing a step writes to: token history, caches, and a generator
        whose stream starts where this one's stands (without advancing it). Stepping the copy
        with action a gives exactly the frame stepping this rollout with a would."""
        other = copy.copy(self)  # tokens and actions are never written in place: a step replaces them
        other.generator = torch.Generator(device=self.generator.device)
        other.generator.set_state(self.generator.get_state())
        other.dynamics_cache = copy.deepcopy(self.dynamics_cache)
        other.decoder_cache = copy.deepcopy(self.decoder_cache)
        return other
