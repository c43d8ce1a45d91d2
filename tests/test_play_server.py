"""The play server's protocol, spoken by a real WebSocket client to a real uvicorn server."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
websockets = pytest.importorskip("websockets")

from opengenie import Genie, presets  # noqa: E402
from opengenie.data.episodes import write_episode  # noqa: E402
from opengenie.data.manifest import write_manifest  # noqa: E402
from opengenie.play.samples import sample_frames  # noqa: E402
from opengenie.play.server import BackgroundServer, create_app  # noqa: E402

MAX_UPLOAD = 64 * 1024  # small, so the oversize case stays cheap


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("episodes")
    rng = np.random.default_rng(0)
    entries = []
    for i, split in enumerate(["train", "test", "test"]):
        name = f"level_{i:06d}.npz"
        write_episode(root / name, rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8))
        entries.append({"file": name, "frames": 5, "group": str(i), "split": split})
    write_manifest(root, source="test", settings={}, episodes=entries)
    return root


@pytest.fixture(scope="module")
def server(data_dir):
    torch.set_num_threads(1)  # the machine is shared; one thread avoids oversubscription stalls
    torch.manual_seed(0)
    world = Genie(presets.tiny()).eval()
    app = create_app(world, data=data_dir, max_sessions=3, max_upload_bytes=MAX_UPLOAD)
    with BackgroundServer(app) as url:
        yield url, app


def _ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/ws"


def _pixels(message: dict) -> np.ndarray:
    data = base64.b64decode(message["image"].split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)))


async def _open(url: str):
    """Connect a session; returns (socket, hello, first frame message)."""
    ws = await websockets.connect(_ws_url(url))
    hello = json.loads(await ws.recv())
    first = json.loads(await ws.recv())
    return ws, hello, first


async def _ask(ws, message) -> dict:
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    return json.loads(await asyncio.wait_for(ws.recv(), 60))


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _png(color: tuple[int, int, int], size=(100, 80)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_session_plays_frames_and_gif_counts_them(server):
    """A session greets, sends a 64x64 first frame, one frame per action, and its GIF holds 1 + actions frames."""
    url, _ = server

    async def go():
        ws, hello, first = await _open(url)
        assert hello["type"] == "hello" and hello["num_actions"] == 8 and hello["samples"] > 0
        assert first["type"] == "frame" and first["step"] == 0 and _pixels(first).shape == (64, 64, 3)
        steps = [await _ask(ws, {"type": "action", "action": a}) for a in (0, 7, 3)]
        assert [m["step"] for m in steps] == [1, 2, 3]
        with urllib.request.urlopen(f"{url}/api/sessions/{hello['session']}/session.gif?scale=2", timeout=60) as res:
            gif = Image.open(io.BytesIO(res.read()))
        assert gif.n_frames == 4 and gif.size == (128, 128)
        await ws.close()

    asyncio.run(go())


def test_bad_messages_get_errors_and_the_session_survives(server):
    """Malformed JSON, binary data, unknown types, out-of-range actions each get an error; play goes on."""
    url, _ = server

    async def go():
        ws, _, _ = await _open(url)
        for bad in ["not json", json.dumps([1, 2]), json.dumps({"type": "fly"}),
                    json.dumps({"type": "action", "action": 8}), json.dumps({"type": "action", "action": -1}),
                    json.dumps({"type": "action", "action": "2"}), json.dumps({"type": "action", "action": True}),
                    json.dumps({"type": "sample", "index": 99})]:
            reply = await _ask(ws, bad)
            assert reply["type"] == "error" and reply["message"], bad
        assert "0..7" in (await _ask(ws, {"type": "action", "action": 8}))["message"]
        await ws.send(b"\x89PNG binary")
        assert json.loads(await ws.recv())["type"] == "error"
        assert (await _ask(ws, {"type": "action", "action": 1}))["step"] == 1
        await ws.close()

    asyncio.run(go())


def test_uploads_are_checked(server):
    """A PNG restarts the session; text, oversize files, huge pictures and unknown sessions are refused."""
    url, _ = server

    async def go():
        ws, hello, _ = await _open(url)
        base = f"{url}/api/sessions/{hello['session']}/prompt"
        await _ask(ws, {"type": "action", "action": 2})
        status, reply = await asyncio.to_thread(_post, base, _png((250, 10, 10)))
        assert status == 200 and reply["type"] == "frame" and reply["step"] == 0
        status, reply = await asyncio.to_thread(_post, base, b"hello, this is text\n" * 10)
        assert status == 415 and "PNG, JPEG or WebP" in reply["message"] and "BytesIO" not in reply["message"]
        big = _png((0, 0, 0)) + bytes(MAX_UPLOAD)
        status, reply = await asyncio.to_thread(_post, base, big)
        assert status == 413 and "larger than" in reply["message"]
        bomb = io.BytesIO()
        Image.new("1", (8000, 6000)).save(bomb, format="PNG")  # a few kB that decode to 48 megapixels
        status, reply = await asyncio.to_thread(_post, base, bomb.getvalue())
        assert status == 415 and "megapixels" in reply["message"]
        status, _ = await asyncio.to_thread(_post, f"{url}/api/sessions/nope/prompt", _png((0, 0, 0)))
        assert status == 404
        assert (await _ask(ws, {"type": "action", "action": 0}))["step"] == 1  # still playing
        await ws.close()

    asyncio.run(go())


def test_sessions_are_independent_and_limited(server):
    """Sessions keep their own step counts; past max_sessions one is refused with a message; closing frees slots."""
    url, app = server

    async def go():
        a, _, _ = await _open(url)
        b, _, _ = await _open(url)
        for _ in range(2):
            await _ask(a, {"type": "action", "action": 1})
        assert (await _ask(b, {"type": "action", "action": 1}))["step"] == 1
        c, _, _ = await _open(url)
        d = await websockets.connect(_ws_url(url))
        refused = json.loads(await d.recv())
        assert refused["type"] == "error" and "sessions are in use" in refused["message"]
        for ws in (a, b, c, d):
            await ws.close()
        for _ in range(100):
            if not app.state.pool.sessions:
                break
            await asyncio.sleep(0.05)
        assert not app.state.pool.sessions

    asyncio.run(go())


def test_samples_and_reset(server, data_dir):
    """Sample frames come from the test split; starting from one and resetting both return to step 0."""
    url, _ = server
    labels = {s.label.split(" ")[0] for s in sample_frames(data_dir)}
    assert labels <= {"level_000001", "level_000002"}
    with urllib.request.urlopen(f"{url}/api/samples", timeout=30) as res:
        listed = json.loads(res.read())
    assert listed and all(s["image"].startswith("data:image/png;base64,") for s in listed)

    async def go():
        ws, _, _ = await _open(url)
        await _ask(ws, {"type": "action", "action": 4})
        assert (await _ask(ws, {"type": "sample", "index": 0}))["step"] == 0
        await _ask(ws, {"type": "action", "action": 4})
        assert (await _ask(ws, {"type": "reset"}))["step"] == 0
        await ws.close()

    asyncio.run(go())


def test_idle_sessions_are_freed(data_dir):
    """A session idle past idle_timeout is dropped and its socket closed with a reason."""
    world = Genie(presets.tiny()).eval()
    app = create_app(world, idle_timeout=0.4)

    async def go(url):
        ws, _, _ = await _open(url)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd.code == 4000 and "idle" in closed.value.rcvd.reason
        assert not app.state.pool.sessions

    with BackgroundServer(app) as url:
        asyncio.run(go(url))


def test_bf16_server_plays():
    """A server running the world under bfloat16 autocast still sends well-formed frames."""
    world = Genie(presets.tiny()).eval()
    app = create_app(world, bf16=True)

    async def go(url):
        ws, _, first = await _open(url)
        reply = await _ask(ws, {"type": "action", "action": 5})
        assert reply["step"] == 1 and _pixels(reply).shape == _pixels(first).shape == (64, 64, 3)
        await ws.close()

    with BackgroundServer(app) as url:
        asyncio.run(go(url))


def test_long_session_matches_the_engine():
    """Past the context window a session's frames equal the engine's: trimming its history changes nothing."""
    from opengenie.engine import Rollout
    from opengenie.images import to_frames, to_video
    from opengenie.play.sessions import SessionPool

    world = Genie(presets.tiny()).eval()
    prompt = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    actions = [int(a) for a in np.random.default_rng(1).integers(0, 8, 20)]  # 20 steps > max_frames = 8
    pool = SessionPool(world, prompt)

    async def play():
        session = pool.create()
        await pool.start(session)
        session.state.generator.manual_seed(7)
        return [await pool.act(session, a) for a in actions], session

    frames, session = asyncio.run(play())
    state, _ = world.start(to_video(prompt))
    state.generator.manual_seed(7)
    reference = [to_frames(state.step(torch.tensor([a]))[0])[0] for a in actions]
    assert isinstance(session.state, Rollout) and session.state.tokens.shape[1] == 8
    assert all((f == r).all() for f, r in zip(frames, reference)) and len(session.frames) == 21
    pool.shutdown()


def test_players_stepping_at_once_are_one_batch_and_see_their_own_frames():
    """Players whose keys arrive together are stepped as one batch, and each sees exactly the
    frames its session would show played alone."""
    from opengenie.images import to_frames, to_video
    from opengenie.play.sessions import SessionPool

    world = Genie(presets.tiny()).eval()
    prompt = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    pool = SessionPool(world, prompt)
    plans = [[1, 2, 3, 4], [5, 6, 7, 0], [2, 2, 2, 2]]

    async def play():
        sessions = [pool.create() for _ in plans]
        for seed, session in enumerate(sessions):
            await pool.start(session)
            session.state.generator.manual_seed(seed)
        await pool.act(sessions[2], 0)  # the third player is one step ahead
        frames = []
        for step in range(4):
            frames.append(await asyncio.gather(*(pool.act(s, plan[step]) for s, plan in zip(sessions, plans))))
        return frames

    async def refused():  # one player's bad action fails only that player
        sessions = list(pool.sessions.values())
        return await asyncio.gather(*(pool.act(s, a) for s, a in zip(sessions, [0, 99, 1])), return_exceptions=True)

    frames = asyncio.run(play())
    assert pool.batch_sizes == [1, 3, 3, 3, 3]
    mixed = asyncio.run(refused())
    assert isinstance(mixed[1], ValueError) and all(isinstance(f, np.ndarray) for f in (mixed[0], mixed[2]))
    pool.batch_sizes.clear()
    for seed, plan in enumerate(plans):
        state, _ = world.start(to_video(prompt))
        state.generator.manual_seed(seed)
        ahead = [0] if seed == 2 else []
        alone = [to_frames(state.step(torch.tensor([a]))[0])[0] for a in ahead + plan][len(ahead):]
        assert all((frames[step][seed] == alone[step]).all() for step in range(4))
    pool.shutdown()


def test_websocket_origin_is_checked(server):
    """A page of another web origin cannot open a session; the page's own origin and non-browser clients can; an allowed origin can too."""
    from opengenie.play.server import same_origin

    url, _ = server
    host = url.split("://", 1)[1]

    async def origin_may_play(origin: str) -> bool:
        try:
            ws = await websockets.connect(_ws_url(url), origin=origin)
        except websockets.exceptions.InvalidStatus:
            return False
        hello = json.loads(await ws.recv())
        await ws.close()
        return hello["type"] == "hello"

    assert not asyncio.run(origin_may_play("http://evil.example"))
    assert not asyncio.run(origin_may_play(f"http://{host}.evil.example"))
    assert asyncio.run(origin_may_play(f"http://{host}"))
    assert same_origin("https://Example.org/", "127.0.0.1:8000", ("https://example.org",))
    assert not same_origin("null", "127.0.0.1:8000") and not same_origin("http://127.0.0.1:8000", "")
