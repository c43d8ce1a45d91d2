"""Many players, one world: a session per browser tab over one shared `Genie`.

The networks are stateless, so every session shares the loaded weights and keeps only its own
`Rollout` (token history, key/value caches, random stream). All forward passes run on a single
worker thread: torch already spreads one forward pass over every core, and two passes at once
would only fight over them. Sessions idle for longer than `idle_timeout` seconds are freed.

Players who press a key while the world is busy wait for the step in progress; their steps are
then taken together, as one batch (`Rollout.step_together`), each on its own random stream, so
a player sees the frame stepping alone would give. A world whose play step is compiled for one
row on the CPU steps them one after another instead: there the compiled single step costs less
per player than an eager batch (docs/play.md, Several players).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from opengenie.engine import Rollout, play_graphs
from opengenie.genie import Genie
from opengenie.images import to_frames, to_video
from opengenie.play.preview import preview_frames

MAX_KEPT_FRAMES = 2000  # frames a session keeps for its GIF (≈ 25 MB at 64×64); older ones drop


class SessionLimitError(RuntimeError):
    """Raised when every session slot is taken."""


@dataclass
class Session:
    """One player: the prompt to reset to, the rollout in progress and the frames shown so far."""

    id: str
    prompt: np.ndarray  # (T, H, W, 3) uint8, what `reset` starts from
    state: Rollout | None = None
    frames: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) uint8 each, oldest first
    actions_taken: int = 0  # since the last start
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one message of a session at a time
    on_expire: Callable[[], Any] | None = None  # e.g. close the session's WebSocket

    def touch(self) -> None:
        self.last_used = time.monotonic()


class SessionPool:
    """The sessions of one server over one shared world.

    world: the loaded model; maskgit_steps / temperature: MaskGIT settings of every step (None: the
    model's config); default_prompt: (T, H, W, 3) uint8 each new session starts from.
    """

    def __init__(self, world: Genie, default_prompt: np.ndarray, maskgit_steps: int | None = None,
                 temperature: float | None = None, max_sessions: int = 16, idle_timeout: float = 600.0,
                 bf16: bool = False):
        self.world, self.default_prompt, self.bf16 = world, default_prompt, bf16
        self.maskgit_steps, self.temperature = maskgit_steps, temperature
        self.max_sessions, self.idle_timeout = max_sessions, idle_timeout
        self.sessions: dict[str, Session] = {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opengenie-world")
        self._waiting: list[tuple[Rollout, int, asyncio.Future]] = []  # steps asked for while the world is busy
        self._stepping: asyncio.Task | None = None
        self.batch_sizes: list[int] = []  # how many players each step of the world served (the latest 1000)

    # --- bookkeeping ---------------------------------------------------------------------

    def create(self) -> Session:
        if len(self.sessions) >= self.max_sessions:
            raise SessionLimitError(f"all {self.max_sessions} sessions are in use; close a tab or "
                                    f"start the server with a larger --max-sessions")
        session = Session(secrets.token_urlsafe(12), self.default_prompt)
        self.sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        session = self.sessions.get(session_id)
        if session is not None:
            session.touch()
        return session

    def close(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def expire(self) -> list[Session]:
        """Drop sessions idle for longer than `idle_timeout`; returns them."""
        now = time.monotonic()
        idle = [s for s in self.sessions.values() if now - s.last_used > self.idle_timeout]
        for s in idle:
            self.close(s.id)
        return idle

    def shutdown(self) -> None:
        if self._stepping is not None:
            self._stepping.cancel()
        self.sessions.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # --- playing -------------------------------------------------------------------------

    async def _run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._precision, fn, *args)

    def _precision(self, fn: Callable, *args: Any) -> Any:
        # Genie §3: the dynamics model runs in bfloat16; on CPU and GPU alike a step is several
        # times faster under bf16 autocast (bench/play.py --bf16).
        device = next(self.world.parameters()).device.type
        with torch.autocast(device, dtype=torch.bfloat16, enabled=self.bf16):
            return fn(*args)

    async def start(self, session: Session, prompt: np.ndarray | None = None) -> np.ndarray:
        """(Re)start `session` from `prompt` (T, H, W, 3) uint8, or from its current prompt.
        Returns the first frame (H, W, 3) uint8."""
        if prompt is not None:
            session.prompt = prompt
        state, recon = await self._run(self._start, session.prompt)
        frame = to_frames(recon[0, :, -1:])[0]
        session.state, session.frames, session.actions_taken = state, [frame], 0
        session.touch()
        return frame

    def _start(self, prompt: np.ndarray) -> tuple[Rollout, torch.Tensor]:
        return self.world.start(to_video(prompt), maskgit_steps=self.maskgit_steps, temperature=self.temperature)

    async def act(self, session: Session, action: int) -> np.ndarray:
        """Take latent `action` in [0, num_actions) → the next frame (H, W, 3) uint8."""
        if session.state is None:
            await self.start(session)
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((session.state, action, future))
        if self._stepping is None or self._stepping.done():
            self._stepping = asyncio.create_task(self._step_waiting())
        frame = await future
        session.frames.append(frame)
        del session.frames[:-MAX_KEPT_FRAMES]
        session.actions_taken += 1
        session.touch()
        return frame

    async def preview(self, session: Session) -> np.ndarray:
        """One step of every action from the session's current frame → (N, H, W, 3) uint8; the
        session's rollout, frames, step count and random stream stay as they were."""
        if session.state is None:
            await self.start(session)
        session.touch()
        return await self._run(preview_frames, session.state)

    async def _step_waiting(self) -> None:
        """Step every player waiting, as one batch, until none is left."""
        while self._waiting:
            batch, self._waiting = self._waiting, []
            self.batch_sizes = [*self.batch_sizes[-999:], len(batch)]
            states, actions = [b[0] for b in batch], [b[1] for b in batch]
            try:
                outcomes = list(await self._run(self._advance, states, actions))
            except Exception as error:  # noqa: BLE001
                # A refused action fails the batch before any rollout changes; player by player,
                # each then gets its own outcome.
                outcomes = [error] if len(batch) == 1 else [await self._alone(s, a) for s, a, _ in batch]
            for outcome, (_, _, future) in zip(outcomes, batch):
                if future.done():  # the player's message was cancelled (a closed socket)
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def _alone(self, state: Rollout, action: int) -> np.ndarray | Exception:
        try:
            return (await self._run(self._advance, [state], [action]))[0]
        except Exception as error:  # noqa: BLE001
            return error

    def _advance(self, states: list[Rollout], actions: list[int]) -> list[np.ndarray]:
        if len(states) > 1 and play_graphs(states[0].tokenizer, states[0].dynamics) is not None \
                and states[0].tokens.device.type == "cpu":
            videos = [state.step(torch.tensor([a])) for state, a in zip(states, actions)]
        else:
            videos = Rollout.step_together(states, [torch.tensor([a]) for a in actions])
        return [to_frames(video[0])[0] for video in videos]
