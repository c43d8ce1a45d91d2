"""The play page in a real headless Chromium against a real server over a saved tiny world."""

from __future__ import annotations

import io
import shutil
import tempfile
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from opengenie import Genie, presets  # noqa: E402
from opengenie.data.episodes import write_episode  # noqa: E402
from opengenie.play.server import BackgroundServer, create_app  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
                allow_module_level=True)

WAIT = 90  # seconds; generous because the test machine is shared


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    torch.set_num_threads(1)  # the machine is shared; one thread avoids oversubscription stalls
    torch.manual_seed(0)
    model = Genie(presets.tiny()).save_pretrained(tmp_path_factory.mktemp("world"))
    data = tmp_path_factory.mktemp("episodes")
    for i in range(2):
        frames = np.random.default_rng(i).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
        write_episode(data / f"level_{i:06d}.npz", frames)
    with BackgroundServer(create_app(Genie.from_pretrained(model), data=data)) as address:
        yield address


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="opengenie-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--window-size=1200,900",
                 f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _canvas(driver) -> str:
    return driver.execute_script("return document.getElementById('screen').toDataURL()")


def _step(driver) -> str | None:
    return driver.find_element(By.ID, "screen").get_attribute("data-step")


def _ready(driver, url: str) -> str:
    """Open the page, wait for the first frame to be drawn; returns the canvas contents."""
    driver.get(url)
    WebDriverWait(driver, WAIT).until(lambda d: _step(d) == "0")
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
        "const c = document.getElementById('screen');"
        "return c.width >= 128 && c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v > 0)"))
    return _canvas(driver)


def _press(driver, key: str, step: str, before: str) -> str:
    driver.find_element(By.TAG_NAME, "body").send_keys(key)
    WebDriverWait(driver, WAIT).until(lambda d: _step(d) == step and _canvas(d) != before)
    return _canvas(driver)


def test_keys_play_and_gif_holds_every_frame(browser, url):
    """Number keys and a mapped arrow key each draw a new frame; the downloaded GIF holds 1 + presses frames."""
    shown = _ready(browser, url)
    shown = _press(browser, "1", "1", shown)
    shown = _press(browser, "8", "2", shown)
    _press(browser, Keys.ARROW_RIGHT, "3", shown)  # mapped to action 1 by default
    assert browser.find_element(By.ID, "fps").text != ""
    sampling = browser.find_element(By.ID, "sampling").text  # a plain world: its MaskGIT settings, no guidance
    assert sampling.startswith("Each frame: ") and "MaskGIT steps" in sampling and "guidance" not in sampling
    href = browser.find_element(By.ID, "download").get_attribute("href")
    with urllib.request.urlopen(href, timeout=60) as res:
        gif = Image.open(io.BytesIO(res.read()))
    assert gif.n_frames == 4 and gif.size == (256, 256)


def test_upload_restarts_and_bad_files_are_refused(browser, url, tmp_path):
    """Uploading a PNG restarts from it; a text file is refused with a message and play goes on."""
    shown = _ready(browser, url)
    shown = _press(browser, "2", "1", shown)
    picture, text = tmp_path / "red.png", tmp_path / "notes.txt"
    Image.new("RGB", (300, 200), (255, 0, 0)).save(picture)
    text.write_text("not an image\n")
    upload = browser.find_element(By.ID, "upload")
    upload.send_keys(str(picture))
    WebDriverWait(browser, WAIT).until(lambda d: _step(d) == "0" and _canvas(d) != shown)
    assert "red.png" in browser.find_element(By.ID, "message").text
    upload.send_keys(str(text))
    message = browser.find_element(By.ID, "message")
    WebDriverWait(browser, WAIT).until(lambda d: "PNG, JPEG or WebP" in message.text)
    assert "error" in message.get_attribute("class")
    _press(browser, "3", "1", _canvas(browser))


def test_two_tabs_play_their_own_worlds(browser, url):
    """Keys in a second tab advance only that tab's session; the first tab keeps its own step count."""
    first = browser.current_window_handle
    shown = _ready(browser, url)
    _press(browser, "4", "1", shown)
    browser.switch_to.new_window("tab")
    other = _ready(browser, url)
    other = _press(browser, "5", "1", other)
    _press(browser, "6", "2", other)
    browser.close()
    browser.switch_to.window(first)
    assert _step(browser) == "1"
    _press(browser, "7", "2", _canvas(browser))


def test_key_mapping_is_kept(browser, url):
    """A key mapped on the page survives a reload (localStorage) and takes effect."""
    shown = _ready(browser, url)
    browser.find_element(By.CSS_SELECTOR, "#keys-panel summary").click()
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-key="ArrowUp"]')).select_by_value("5")
    shown = _ready(browser, url)
    assert browser.find_element(By.CSS_SELECTOR, 'select[data-key="ArrowUp"]').get_attribute("value") == "5"
    assert browser.execute_script("return JSON.parse(localStorage.getItem('opengenie.keymap.v1')).ArrowUp") == 5
    _press(browser, Keys.ARROW_UP, "1", shown)


def test_dataset_frames_start_a_session(browser, url):
    """With --data the page shows sample frames; clicking one restarts from it at step 0."""
    shown = _ready(browser, url)
    shown = _press(browser, "1", "1", shown)
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#samples img"))
    samples = browser.find_elements(By.CSS_SELECTOR, "#samples img")
    assert len(samples) == 8 and "level_00000" in samples[0].get_attribute("title")
    samples[0].click()
    WebDriverWait(browser, WAIT).until(lambda d: _step(d) == "0" and _canvas(d) != shown)


@pytest.fixture(scope="module")
def labelled_url(tmp_path_factory):
    """A tiny world whose config names its actions and maps the arrows, as `opengenie label` writes it,
    and plays with action guidance against no action, as `opengenie export --action-guidance` writes it."""
    from dataclasses import replace

    torch.manual_seed(0)
    config = presets.tiny()
    labels = ("still", "walk right", "walk left", "jump", "fall", "still 2", "jump right", "jump left")[:config.dynamics.num_actions]
    config = replace(config, action_labels=labels, arrow_keys={"ArrowRight": 1, "ArrowLeft": 2, "ArrowUp": 3},
                     dynamics=replace(config.dynamics, action_guidance=1.5, guidance_against=config.dynamics.num_actions))
    model = Genie(config).save_pretrained(tmp_path_factory.mktemp("labelled"))
    with BackgroundServer(create_app(Genie.from_pretrained(model))) as address:
        yield address


def test_labelled_world_names_its_actions_and_maps_the_arrows(browser, labelled_url):
    """The buttons show the world's labels, the arrows default to the labelled actions, → plays "walk right",
    and the page tells how its frames are drawn."""
    shown = _ready(browser, labelled_url)
    sampling = browser.find_element(By.ID, "sampling").text
    assert "MaskGIT steps" in sampling and "action guidance 1.5 against no action (2 passes a step)" in sampling
    buttons = browser.find_elements(By.CSS_SELECTOR, "#actions button")
    assert "walk right" in buttons[1].text and "jump" in buttons[3].text
    browser.find_element(By.CSS_SELECTOR, "#keys-panel summary").click()
    right = Select(browser.find_element(By.CSS_SELECTOR, 'select[data-key="ArrowRight"]'))
    assert right.first_selected_option.get_attribute("value") == "1" and "walk right" in right.first_selected_option.text
    assert browser.find_element(By.CSS_SELECTOR, 'select[data-key="ArrowDown"]').get_attribute("value") == ""
    _press(browser, Keys.ARROW_RIGHT, "1", shown)
