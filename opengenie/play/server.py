"""The play server: a web page where a person plays a world with the keyboard.

    opengenie play --model worlds/coinrun --data data/coinrun     # then open http://127.0.0.1:8000

Routes (the protocol is described in docs/play.md):
    GET  /                               the page (static/index.html, play.js, play.css)
    GET  /api/info                       the world: actions, frame size, sampling, upload limit
    GET  /api/samples                    starting frames from --data, as PNG data URLs
    WS   /ws                             one session: JSON messages, frames as base64 PNG
    POST /api/sessions/{id}/prompt       body = a PNG/JPEG/WebP image: restart from it
    GET  /api/sessions/{id}/session.gif  the frames played since the last (re)start
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import socket
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError

from opengenie.card import guidance_name, guidance_phrase
from opengenie.genie import Genie, check_sampling
from opengenie.images import ImageLike, load_frames
from opengenie.nn.checks import is_int
from opengenie.play.render import gif_bytes, upscale
from opengenie.play.samples import sample_frames
from opengenie.play.sessions import Session, SessionLimitError, SessionPool

MAX_UPLOAD_BYTES = 10 * 2**20
MAX_UPLOAD_PIXELS = 40 * 10**6
UPLOAD_FORMATS = ["PNG", "JPEG", "WEBP"]
STATIC = Path(__file__).parent / "static"
log = logging.getLogger("opengenie.play")


def png_data_url(frame: np.ndarray) -> str:
    """(H, W, 3) uint8 → "data:image/png;base64,..." (lossless: the page scales it up crisply)."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def decode_upload(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """Uploaded file bytes → prompt (1, H, W, 3) uint8; ValueError unless PNG, JPEG or WebP."""
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
            # A small file can hold a huge, highly compressed picture: check before decoding it.
            if img.width * img.height > MAX_UPLOAD_PIXELS:
                raise ValueError(f"{img.width}x{img.height} pixels is more than "
                                 f"{MAX_UPLOAD_PIXELS // 10**6} megapixels")
            img.load()
            return load_frames(img.convert("RGB"), size)
    except UnidentifiedImageError:  # its message names an in-memory buffer, which tells nobody anything
        raise ValueError("not a PNG, JPEG or WebP image the server can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"not a PNG, JPEG or WebP image the server can read ({err})") from None


MAX_MESSAGE_DIGITS = 18  # no id or index of the protocol is longer; Python refuses over 4300


def _message_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_MESSAGE_DIGITS:
        raise ValueError(f"a number of {len(text)} digits is no action or sample index; "
                         f"numbers in messages have at most {MAX_MESSAGE_DIGITS} digits")
    return int(text)


def parse_message(text: str) -> object:
    """A client's JSON text → the decoded value; ValueError with a short reason otherwise."""
    try:
        return json.loads(text, parse_int=_message_int)
    except json.JSONDecodeError:
        raise ValueError(f"expected a JSON message, got {text[:80]!r}") from None
    except RecursionError:  # json recurses once per nesting level
        raise ValueError('the message is nested too deeply; send {"type": "action", "action": N}') from None


def same_origin(origin: str, host: str, allowed: tuple[str, ...] = ()) -> bool:
    """Whether a websocket's Origin header is the serving page's own (its host:port is the
    request's Host) or one of `allowed` (compared without a trailing slash, case-insensitively)."""
    origin = origin.strip().rstrip("/").lower()
    if origin in {a.strip().rstrip("/").lower() for a in allowed}:
        return True
    scheme, _, rest = origin.partition("://")
    return scheme in ("http", "https") and rest == host.strip().lower() and host != ""


def create_app(world: Genie, *, prompt: ImageLike | None = None, data: str | Path | None = None,
               maskgit_steps: int | None = None, temperature: float | None = None, max_sessions: int = 16,
               idle_timeout: float = 600.0, max_upload_bytes: int = MAX_UPLOAD_BYTES, bf16: bool = False,
               allowed_origins: tuple[str, ...] = ()) -> FastAPI:
    """The web app over one loaded world. Sessions start from `prompt` when given, else from
    the first sample frame of `data` (an episode folder), else from a plain mid-grey frame.
    `bf16`: run the world under bfloat16 autocast (faster, slightly different samples).
    `allowed_origins`: web origins besides the page's own ("https://example.org") whose pages
    may open a play session; any other page a browser has open is refused."""
    if not (isinstance(idle_timeout, (int, float)) and idle_timeout > 0 and idle_timeout == idle_timeout):
        # 0 or less would close every session at once and spin the idle sweep without pause
        raise ValueError(f"idle_timeout must be a positive number of seconds, got {idle_timeout}")
    if not (isinstance(max_sessions, int) and max_sessions >= 1):
        raise ValueError(f"max_sessions must be an integer >= 1, got {max_sessions}")
    check_sampling(maskgit_steps, temperature)
    size = world.image_size
    samples = sample_frames(data) if data is not None else []
    if prompt is not None:
        default = load_frames(prompt, size)
    elif samples:
        default = load_frames(samples[0].frame, size)
    else:
        default = np.full((1, *size, 3), 127, dtype=np.uint8)
    pool = SessionPool(world, default, maskgit_steps, temperature, max_sessions, idle_timeout, bf16)
    sampling = _sampling(world, maskgit_steps, temperature)

    async def sweep() -> None:
        while True:
            await asyncio.sleep(min(30.0, idle_timeout / 4))
            for session in pool.expire():
                if session.on_expire is not None:
                    await session.on_expire()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        sweeper = asyncio.create_task(sweep())
        yield
        sweeper.cancel()
        pool.shutdown()

    app = FastAPI(title="opengenie play", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pool = pool
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"type": "error", "message": message}, status_code=status)

    def frame_message(session: Session, frame: np.ndarray, started: float) -> dict:
        return {"type": "frame", "step": session.actions_taken, "frames": len(session.frames),
                "ms": round(1000 * (time.perf_counter() - started), 1), "image": png_data_url(frame)}

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/info")
    async def info() -> dict:
        return {"num_actions": world.num_actions, "image_size": list(size), "samples": len(samples),
                "action_labels": list(world.config.action_labels), "arrow_keys": dict(world.config.arrow_keys),
                "sampling": sampling, "max_upload_bytes": max_upload_bytes, "upload_formats": UPLOAD_FORMATS}

    @app.get("/api/samples")
    async def list_samples() -> list:
        return [{"index": i, "label": s.label, "image": png_data_url(s.frame)} for i, s in enumerate(samples)]

    @app.post("/api/sessions/{session_id}/prompt")
    async def upload(session_id: str, request: Request):
        session = pool.get(session_id)
        if session is None:
            return error(404, "no such session (it ended or idled out); reload the page")
        body, too_big = bytearray(), False
        async for chunk in request.stream():  # read it all so the client sees the reply, keep none past the limit
            too_big = too_big or len(body) + len(chunk) > max_upload_bytes
            if not too_big:
                body += chunk
        if too_big:
            return error(413, f"the image is larger than {max_upload_bytes // 2**20} MB; use a smaller file")
        try:
            frames = await asyncio.get_running_loop().run_in_executor(None, decode_upload, bytes(body), size)
        except ValueError as err:
            return error(415, str(err))
        started = time.perf_counter()
        async with session.lock:
            frame = await pool.start(session, frames)
        return frame_message(session, frame, started)

    @app.get("/api/sessions/{session_id}/session.gif")
    async def download(session_id: str, scale: int = 4, fps: float = 8) -> Response:
        session = pool.get(session_id)
        if session is None:
            return error(404, "no such session (it ended or idled out); reload the page")
        if not session.frames:
            return error(409, "the session has no frames yet; wait for the first one")
        if not (1 <= scale <= 8 and 0 < fps <= 60):
            return error(400, f"expected scale in 1..8 and fps in (0, 60], got scale={scale}, fps={fps}")
        frames = upscale(np.stack(session.frames), scale)
        data = await asyncio.get_running_loop().run_in_executor(None, gif_bytes, frames, fps)
        return Response(data, media_type="image/gif",
                        headers={"Content-Disposition": 'attachment; filename="opengenie-session.gif"'})

    async def handle(session: Session, message: dict) -> dict:
        """One client message → the reply to send (a frame, or an error the page shows)."""
        started = time.perf_counter()
        if message.get("text") is None:
            raise ValueError("expected a JSON text message, got binary data (upload images by POST)")
        request = parse_message(message["text"])
        kind = request.get("type") if isinstance(request, dict) else None
        if kind == "action":
            action = request.get("action")
            if not is_int(action) or not 0 <= action < world.num_actions:
                raise ValueError(f"action must be an integer in 0..{world.num_actions - 1}, got {action!r}")
            frame = await pool.act(session, action)
        elif kind == "reset":
            frame = await pool.start(session)
        elif kind == "preview":  # every action one step ahead; the session does not move
            frames = await pool.preview(session)
            return {"type": "preview", "step": session.actions_taken,
                    "ms": round(1000 * (time.perf_counter() - started), 1), "images": [png_data_url(f) for f in frames]}
        elif kind == "sample":
            index = request.get("index")
            if not is_int(index) or not 0 <= index < len(samples):
                raise ValueError(f"sample index must be an integer in 0..{len(samples) - 1}, got {index!r}"
                                 if samples else "this server offers no sample frames (start it with --data)")
            frame = await pool.start(session, load_frames(samples[index].frame, size))
        else:
            raise ValueError('expected {"type": "action" | "reset" | "sample" | "preview", ...}, '
                             f'got {str(request)[:80]}')
        return frame_message(session, frame, started)

    @app.websocket("/ws")
    async def play(ws: WebSocket) -> None:
        # Browsers let any page open a websocket to 127.0.0.1 and name the page in Origin: only
        # the play page itself (same host and port) and origins allowed by name may play.
        # Clients that are not browsers send no Origin and are let in, as plain HTTP is.
        origin = ws.headers.get("origin")
        if origin is not None and not same_origin(origin, ws.headers.get("host", ""), allowed_origins):
            await ws.close(code=1008, reason="this page's origin may not play; start the server with --allow-origin")
            return
        await ws.accept()
        try:
            session = pool.create()
        except SessionLimitError as err:
            await ws.send_json({"type": "error", "message": str(err)})
            await ws.close(code=1013)
            return
        session.on_expire = lambda: _close_quietly(ws, 4000, "idle for too long; reload to play again")
        try:
            await ws.send_json({"type": "hello", "session": session.id, **(await info())})
            started = time.perf_counter()
            async with session.lock:
                await ws.send_json(frame_message(session, await pool.start(session), started))
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                try:
                    async with session.lock:
                        reply = await handle(session, message)
                except ValueError as err:
                    reply = {"type": "error", "message": str(err)}
                except Exception as err:  # a failing step must not end the other sessions
                    log.exception("step failed")
                    reply = {"type": "error", "message": f"the world failed to step: {err}"}
                await ws.send_json(reply)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the tab went away (RuntimeError: sending after the idle sweep closed it)
        finally:
            pool.close(session.id)

    return app


def _compile_in_background(world: Genie) -> None:
    started = time.perf_counter()
    print("opengenie play: compiling the play step in the background (the page plays meanwhile)", flush=True)
    if world.compile_play():
        print(f"opengenie play: play step compiled in {time.perf_counter() - started:.0f} s; "
              "frames now come faster", flush=True)


async def _close_quietly(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code=code, reason=reason)
    except RuntimeError:
        pass  # already closed


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


class BackgroundServer:
    """Serve an app from a thread (for notebooks and tests): `with BackgroundServer(app) as url:`."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.sock = _bind(host, port)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_max_size=2**20))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the server at {self.url} failed to start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


PROMPTS = "prompts"
"""A saved world's folder of starting frames (PNG), offered when `--data` is not given."""


def _sampling(world: Genie, maskgit_steps: int | None, temperature: float | None) -> dict:
    """How every frame of the page is drawn, for /api/info: the settings, and "text", one sentence of them."""
    own = world.config.dynamics
    out = {"maskgit_steps": maskgit_steps or own.maskgit_steps,
           "temperature": own.temperature if temperature is None else temperature,
           "action_guidance": own.action_guidance,
           "guidance_against": guidance_name(own.guidance_against, own.num_actions)}
    text = f"Each frame: {out['maskgit_steps']} MaskGIT steps at temperature {out['temperature']:g}"
    if own.action_guidance > 0:
        passes = own.num_actions if own.guidance_against is None else 2  # rows a dynamics pass carries
        text += (", " + guidance_phrase(own.action_guidance, out["guidance_against"], world.config.action_labels)
                 + f" ({passes} passes a step)")
    return {**out, "text": text + "."}


def serve(model: str | Path | Genie, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu",
          compiled: bool = False, action_guidance: float | None = None,
          guidance_against: int | str | None = None, **options) -> None:
    """Load a saved world (or take a loaded one) and serve the play page until Ctrl+C.
    `compiled`: compile the play step (`Genie.compile_play`) in a background thread while the
    page already plays eagerly; steps switch to the compiled passes once they are ready.
    `action_guidance`, `guidance_against`: the world's guidance for every session (`Genie.set_sampling`;
    None: its own).
    `options` go to `create_app` (prompt, data, maskgit_steps, temperature, max_sessions, ...)."""
    import uvicorn

    world = model if isinstance(model, Genie) else Genie.from_pretrained(model, device=device)
    world.set_sampling(action_guidance=action_guidance, guidance_against=guidance_against)
    if options.get("data") is None and not isinstance(model, Genie) and (Path(model) / PROMPTS).is_dir():
        options["data"] = Path(model) / PROMPTS  # a world shipped with its own starting frames
    app = create_app(world, **options)
    try:
        sock = _bind(host, port)
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise ValueError(f"cannot listen on {host}:{port} ({reason}); pick another --port or --host") from None
    url = f"http://{'[' + host + ']' if ':' in host else host}:{sock.getsockname()[1]}"
    print(f"opengenie play: open {url} in a browser  ({world.num_actions} actions; Ctrl+C to stop)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"opengenie play: listening on {host}: anyone who can reach this machine can play", flush=True)
    if compiled and options.get("bf16"):
        print("opengenie play: --bf16 plays under autocast, which the compiled step does not cover: not compiling",
              flush=True)
    elif compiled:
        threading.Thread(target=_compile_in_background, args=(world,), daemon=True, name="compile-play").start()
    uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_max_size=2**20)).run(sockets=[sock])
