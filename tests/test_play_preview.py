"""The action preview: one step of every latent action from the current frame, which leaves
the player's rollout as it was; in the engine, over the play server's WebSocket, and on the page
in a real headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import tempfile
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from opengenie import Genie, presets
from opengenie.play.preview import preview_frames

LABELS = ("still", "walk right", "walk left", "jump", "fall", "still 2", "jump right", "jump left")


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(1)  # the machine is shared; one thread avoids oversubscription stalls
    torch.manual_seed(0)
    config = presets.tiny()
    return Genie(replace(config, action_labels=LABELS[:config.dynamics.num_actions])).eval()


def _prompt() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)


def _twin(world: Genie) -> Genie:
    twin = Genie(world.config).eval()
    twin.load_state_dict(world.state_dict())
    return twin


def test_preview_leaves_the_rollout_and_its_random_stream_alone(world):
    """Steps after a preview give exactly the frames of a twin world that never previewed."""
    twin = _twin(world)
    for w in (world, twin):
        w.reset(_prompt(), seed=3)
        w.step(1)
    tokens, actions = world.state.tokens.clone(), world.state.actions.clone()
    frames = preview_frames(world.state)
    assert frames.shape == (world.num_actions, 64, 64, 3) and frames.dtype == np.uint8
    assert torch.equal(world.state.tokens, tokens) and torch.equal(world.state.actions, actions)
    assert len(world.frames) == 2
    for a in (4, 0, 2):
        assert np.array_equal(world.step(a), twin.step(a))


def test_preview_row_is_the_frame_its_action_makes(world):
    """Sampling at the world's temperature, preview row a is exactly the frame that taking action a next produces."""
    assert world.config.dynamics.temperature > 0  # the property is about draws, not only the argmax
    for a in range(world.num_actions):
        world.reset(_prompt(), seed=5)
        world.step(2)
        frames = preview_frames(world.state)
        assert np.array_equal(world.step(a), frames[a]), f"action {a}"


def test_preview_refuses_a_batched_rollout(world):
    """A rollout of several rows is refused with a message naming the row count."""
    state, _ = world.start(torch.zeros(2, 3, 1, 64, 64))
    with pytest.raises(ValueError, match="one-row rollout.*got 2 rows"):
        preview_frames(state)


# --- over the server ---------------------------------------------------------------------


def _pixels(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


@pytest.fixture(scope="module")
def server(world):
    pytest.importorskip("fastapi")
    from opengenie.play.server import BackgroundServer, create_app

    with BackgroundServer(create_app(world)) as url:
        yield url


def test_preview_message_over_the_websocket(server, world):
    """A "preview" message returns one image per action, keeps the step count and the GIF's frames,
    and the next action's frame is the one its preview showed."""
    websockets = pytest.importorskip("websockets")

    async def talk():
        async with websockets.connect(server.replace("http://", "ws://") + "/ws") as ws:
            hello = json.loads(await ws.recv())
            json.loads(await ws.recv())  # the first frame
            ask = lambda m: ws.send(json.dumps(m))  # noqa: E731
            await ask({"type": "action", "action": 1})
            json.loads(await ws.recv())
            await ask({"type": "preview"})
            preview = json.loads(await asyncio.wait_for(ws.recv(), 60))
            await ask({"type": "action", "action": 3})
            after = json.loads(await asyncio.wait_for(ws.recv(), 60))
            return hello, preview, after

    hello, preview, after = asyncio.run(talk())
    assert hello["action_labels"] == list(world.config.action_labels)
    assert preview["type"] == "preview" and preview["step"] == 1
    assert len(preview["images"]) == world.num_actions
    shots = [_pixels(i) for i in preview["images"]]
    assert all(s.shape == (64, 64, 3) for s in shots)
    assert after["step"] == 2 and after["frames"] == 3  # the preview added no step and no frame
    assert np.array_equal(_pixels(after["image"]), shots[3])


# --- on the page -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = "/usr/bin/chromium", "/usr/bin/chromedriver"
    if not (shutil.which(chromium) and shutil.which(driver_path)):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="opengenie-chromium-")
    options = Options()
    options.binary_location = chromium
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--window-size=1200,900",
                 f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_page_previews_every_action_with_its_label(browser, server, world, tmp_path_factory):
    """P shows one labelled thumbnail per action without taking a step; clicking one takes that action."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 90)
    step = lambda d: d.find_element(By.ID, "screen").get_attribute("data-step")  # noqa: E731
    browser.get(server)
    wait.until(lambda d: step(d) == "0")
    browser.find_element(By.TAG_NAME, "body").send_keys("2")
    wait.until(lambda d: step(d) == "1")
    browser.find_element(By.TAG_NAME, "body").send_keys("p")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#previews figure")) == world.num_actions)
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#previews img')].every(i => i.complete && i.naturalWidth === 64)"))
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#previews figcaption")]
    assert captions == [f"{i} · {label}" for i, label in enumerate(world.config.action_labels)]
    assert step(browser) == "1" and "none was taken" in browser.find_element(By.ID, "message").text
    shot = tmp_path_factory.getbasetemp() / "preview.png"
    browser.save_screenshot(str(shot))
    browser.find_elements(By.CSS_SELECTOR, "#previews figure")[3].click()
    wait.until(lambda d: step(d) == "2")
    assert browser.find_elements(By.CSS_SELECTOR, "#previews figure") == []  # out of date once the world moved
    browser.find_element(By.ID, "preview").click()
    wait.until(lambda d: d.find_element(By.ID, "previews").get_attribute("data-step") == "2")
