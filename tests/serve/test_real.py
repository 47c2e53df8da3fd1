"""dama serve on the real whisper-base with a real DAMA adapter (the Swahili run committed under
benchmarks/results/): the openai client gets the offline transcript; an English clip with no language goes
to the bare base model; the web page, driven in Debian's chromium (Selenium), transcribes a chosen file
and a microphone recording (chromium's fake device). DAMA_SCREENSHOT=PATH saves the page."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from dama.data.audio import load_audio
from dama.serve.local import LocalServer
from dama.serve.options import ServeOptions
from tests.serve.conftest import post_form, real_clip

pytestmark = pytest.mark.integration
SW_RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "swahili-full-dama"


@pytest.fixture(scope="module")
def server(whisper_base):
    if not (SW_RUN / "adapter").is_dir():
        pytest.fail(f"{SW_RUN}/adapter is committed to the repository; it is missing")
    with LocalServer(ServeOptions(adapters={"sw": str(SW_RUN)}, port=0)) as s:
        yield s


def test_openai_client_gets_the_offline_transcript(server, whisper_base):
    openai = pytest.importorskip("openai")
    from dama.models.transcribe import transcribe
    from dama.runs import load_run

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    clip = real_clip("swahili")
    with clip.open("rb") as f:
        got = client.audio.transcriptions.create(file=f, model="auto", language="sw", response_format="json")
    want = transcribe(load_run(SW_RUN, merge=False), [load_audio(clip)], "sw")[0]
    assert got.text == want and len(want.split()) > 3 and got.model_extra["dama"]["adapter"] == "sw"
    english = real_clip("fleurs-control")
    with english.open("rb") as f:  # no language, no router: Whisper's own detection, served by the bare base
        got = client.audio.transcriptions.create(file=f, model="auto", response_format="json")
    assert got.model_extra["dama"]["language"] == "en" and got.model_extra["dama"]["adapter"] is None
    assert got.text == transcribe(whisper_base, [load_audio(english)], "en")[0]


def test_a_long_real_recording_gets_timed_segments(server, tmp_path):
    """A real recording of 45 s (the start of swahili:test-long: real clips joined, true clip starts
    known) through the openai client as verbose_json: the segments of `dama transcribe --adapter RUN --format
    json` (the long-form path), with times near where the true clips start."""
    openai = pytest.importorskip("openai")
    import soundfile as sf

    from dama.data import load_data
    from dama.data.longform import read_segments
    from dama.longform import LongformOptions, transcribe_long
    from dama.runs import load_run
    from tests.serve.conftest import SHARED_DATA, long_recording

    seconds = 45
    audio = long_recording("swahili", seconds=seconds)
    path = tmp_path / "talk.flac"
    sf.write(path, audio, 16_000, subtype="PCM_16")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with path.open("rb") as f:
        got = client.audio.transcriptions.create(file=f, model="sw", response_format="verbose_json",
                                                 timestamp_granularities=["segment"])
    d = server.engine.decode
    want = transcribe_long(load_run(SW_RUN, merge=False), load_audio(path),
                           LongformOptions(language="sw", batch_size=d.batch_size, loop_repeats=d.loop_repeats))
    assert [(s.start, s.end, s.text) for s in got.segments] == [(round(s.start, 3), round(s.end, 3), s.text)
                                                               for s in want]
    assert got.segments[-1].end > 30 and len(got.text.split()) > 25
    first = next(iter(load_data("swahili:test-long", SHARED_DATA)))
    starts = [t.start for t in read_segments(first.audio) if t.end < seconds - 1]
    # Whisper's own times, not 30 s cuts: a segment starts within 3 s of every true clip start (1.0-2.6 s seen)
    assert all(min(abs(s.start - t0) for s in got.segments) < 3.0 for t0 in starts)


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        msg = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("DAMA_REQUIRE_BROWSER"):
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,900",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def test_web_page_in_a_real_browser(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    clip = real_clip("swahili", 1)
    api = post_form(server.url + "/v1/audio/transcriptions", {"file": (clip.name, clip.read_bytes())},
                    {"model": "auto", "language": "sw", "response_format": "verbose_json"}).json()["text"]
    driver = _browser()
    try:
        driver.get(server.url + "/")
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: len(Select(d.find_element(By.ID, "language")).options) > 1)
        Select(driver.find_element(By.ID, "language")).select_by_value("sw")
        file_input = driver.find_element(By.ID, "file")
        file_input.send_keys(str(clip))
        wait.until(ec.element_to_be_clickable((By.ID, "go"))).click()
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith(("done", "error")))
        assert driver.find_element(By.ID, "status").text == "done"
        rows = driver.find_elements(By.CSS_SELECTOR, "#segments td.text")
        assert " ".join(r.text for r in rows) == api
        assert driver.find_element(By.CSS_SELECTOR, "#segments td.t").text.startswith("0:0")
        assert "swahili" in driver.find_element(By.ID, "detected").text
        assert "adapter sw" in driver.find_element(By.ID, "served").text
        if os.environ.get("DAMA_SCREENSHOT"):  # the same file with "detect": the page as docs/ shows it
            Select(driver.find_element(By.ID, "language")).select_by_value("")
            driver.find_element(By.ID, "go").click()
            wait.until(lambda d: d.find_element(By.ID, "status").text.startswith(("done", "error")))
            assert "detected" in driver.find_element(By.ID, "served").text
            driver.save_screenshot(os.environ["DAMA_SCREENSHOT"])

        driver.find_element(By.ID, "record").click()  # chromium's fake microphone (a beep), recorded as WAV
        wait.until(lambda d: d.find_element(By.ID, "record").text.startswith("■"))
        time.sleep(1.5)
        driver.find_element(By.ID, "record").click()
        wait.until(lambda d: d.find_element(By.ID, "chosen").text.startswith("recording.wav"))
        Select(driver.find_element(By.ID, "language")).select_by_value("")  # detect
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith(("done", "error")))
        assert driver.find_element(By.ID, "status").text.startswith("done"), driver.find_element(By.ID, "status").text
        assert "detected" in driver.find_element(By.ID, "served").text
    finally:
        driver.quit()
