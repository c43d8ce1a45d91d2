"""Many players, one world: a session per browser tab over one shared `Genie`.

The networks are stateless, so every session shares the loaded weights and keeps only its own
`Rollout` (token history, key/value caches, random stream). All forward passes run on a single
worker thread: torch already spreads one forward pass over every core, and two passes at once
would only fight over them. Sessions idle for longer than `idle_timeout` seconds are freed.
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

from opengenie.engine import Rollout
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
        frame = await self._run(self._advance, session.state, action)
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

    def _advance(self, state: Rollout, action: int) -> np.ndarray:
        return to_frames(state.step(torch.tensor([action]))[0])[0]
