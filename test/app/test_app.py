"""pse-app end to end: the server's refusals over HTTP, then the page in headless Chromium.

The browser test does what a user does: uploads recordings (one of them not audio), records
from the microphone (Chromium's fake microphone plays a wav file), personalizes a small
causal model, cancels and resumes, enhances a file and checks the page's scores, spectrograms
and A/B player, downloads the enhanced audio and the model, and listens live. The downloads
are checked against the command-line tools, the live output against offline enhancement.
Set PSE_APP_SCREENSHOTS=<dir> to keep screenshots of the main screens (the README's).
"""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf

import espnet2_pse
from espnet2_pse.app.server import get_parser
from espnet2_pse.bin import enhance
from espnet2_pse.scoring.metrics import si_sdr
from test.user.conftest import TINY_DATA_OPTS, voice, write_user_recordings

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# A small causal personalization: a few seconds per epoch on one thread.
TINY_PERSONALIZE = (f"--data_opts='{TINY_DATA_OPTS}' --base none --model_size cpu --chunk_seconds 0.5 --lr 3e-3 "
                    "--max_epoch 4 --segments_per_epoch 3 --fsl_max_epoch 1")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def noisy_clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = voice(rng, seconds, 16000) + 0.03 * rng.standard_normal(int(seconds * 16000)).astype(np.float32)
    return x.astype(np.float32)


class Server:
    """`pse-app` as the README starts it: the installed command, in a process of its own."""

    def __init__(self, work: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.work, self.url = work, f"http://127.0.0.1:{port}"
        command = [str(Path(sys.executable).with_name("pse-app")), "--port", str(port), "--work_dir", str(work),
                   "--max_upload_mb", "8", "--num_threads", "1", "--personalize_args", TINY_PERSONALIZE]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert f"open {self.url}" in self.process.stdout.readline()
        wait_for(lambda: _get_or_none(f"{self.url}/api/state"), 60, "pse-app")

    def stop(self):
        self.process.terminate()
        self.process.wait(30)


def _get_or_none(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read()
    except OSError:
        return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = Server(tmp_path_factory.mktemp("app") / "work")
    yield started
    started.stop()


def request(url, data=None, method=None, headers=None):
    """(status, parsed JSON or bytes) of one HTTP request; errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            status, body, kind = response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as err:
        status, body, kind = err.code, err.read(), err.headers.get_content_type()
    return status, json.loads(body) if kind == "application/json" else body


def multipart(files, fields=None):
    """(body, headers) of a multipart form: ``files`` as [(name, bytes)]."""
    boundary = "pse-app-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in (fields or {}).items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
              f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def live_replies(url, *messages):
    """The JSON replies of /ws/live to ``messages`` (bytes or text), binary replies skipped."""
    import asyncio

    import aiohttp

    async def talk():
        replies = []
        async with aiohttp.ClientSession() as client, client.ws_connect(url.replace("http", "ws", 1)) as ws:
            for message in (None, *messages):
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                elif message is not None:
                    await ws.send_str(message)
                reply = await ws.receive(timeout=30)
                while reply.type == aiohttp.WSMsgType.BINARY:
                    reply = await ws.receive(timeout=30)
                if reply.type != aiohttp.WSMsgType.TEXT:
                    break
                replies.append(json.loads(reply.data))
        return replies

    return asyncio.run(talk())


def wav_bytes(x: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_server_refuses_oversized_non_audio_and_outside_requests(server):
    work = server.work
    body, headers = multipart([("big.wav", wav_bytes(noisy_clip(270.0, 0)))])  # 8.6 MB > 8 MB
    status, answer = request(f"{server.url}/api/recordings/noisy", body, headers=headers)
    assert status == 413 and "larger than the 8 MB limit" in answer["error"]

    body, headers = multipart([("notes.txt", b"not audio at all"), ("../../escape.wav", wav_bytes(noisy_clip(5.0, 1))),
                               ("short.wav", wav_bytes(noisy_clip(0.3, 2)))])
    status, answer = request(f"{server.url}/api/recordings/clean", body, headers=headers)
    assert status == 200
    assert [r["name"] for r in answer["accepted"]] == ["escape.wav"], answer  # a label, not a path
    reasons = {r["name"]: r["reason"] for r in answer["rejected"]}
    assert "cannot be decoded" in reasons["notes.txt"] and str(work) not in reasons["notes.txt"]
    assert "shorter than 4 s" in reasons["short.wav"]
    assert (work / "recordings" / "clean" / "escape.wav").is_file()
    assert answer["personalize_defaults"]["max_epoch"] == "skipped: clean speech only"  # the page's placeholders
    assert not list((work / "tmp").iterdir())  # nothing left half-written
    assert not (work.parent / "escape.wav").exists() and not (work.parents[1] / "escape.wav").exists()
    status, answer = request(f"{server.url}/api/recordings/clean/escape.wav", method="DELETE")
    assert status == 200 and answer["recordings"] == []

    assert request(f"{server.url}/api/recordings/other", b"", method="POST")[0] == 400
    assert request(f"{server.url}/files/enhanced/%2E%2E%2F%2E%2E%2Fsecret")[0] in (403, 404)
    assert request(f"{server.url}/files/recordings/noisy/x.wav")[0] == 404  # only results are served
    assert "not causal" in live_replies(f"{server.url}/ws/live?model=generalist")[0]["message"]
    status, answer = request(f"{server.url}/api/models/personal/download?format=zip")
    assert status == 404 and "personalize first" in answer["error"]
    status, answer = request(f"{server.url}/api/personalize", b'{"max_epochs": 3}', headers={"Content-Type": "application/json"})
    assert status == 400 and "unknown personalization option 'max_epochs'" in answer["error"]
    assert get_parser().parse_args([]).host == "127.0.0.1"
    assert sorted(p.name for p in work.iterdir()) == ["enhanced", "exports", "live", "models", "recordings", "tmp"]


def test_pse_app_refuses_bad_personalize_args(capsys):
    with pytest.raises(SystemExit) as refused:
        get_parser().parse_args(["--personalize_args", "--max_epochs 3"])
    assert refused.value.code == 2 and "pse-personalize refuses '--max_epochs 3'" in capsys.readouterr().err
    assert get_parser().parse_args(["--personalize_args", "--max_epoch 3 --causal"]).personalize_args == {
        "max_epoch": 3, "causal": True}



def test_personalize_job_from_clean_speech_alone(tmp_path):
    """Clean speech without everyday recordings: the job fine-tunes the shipped generalist on it
    (no zero-shot step); with neither, it asks for recordings."""
    from espnet2_pse.app.jobs import PersonalizeJob
    from espnet2_pse.app.workspace import Workspace

    workspace = Workspace(tmp_path / "app")
    job = PersonalizeJob(workspace, {"data_opts": TINY_DATA_OPTS, "chunk_seconds": 0.5, "segments_per_epoch": 2,
                                     "fsl_max_epoch": 1})
    with pytest.raises(ValueError, match="upload some recordings of your voice first"):
        job.start({})
    assert PersonalizeJob(workspace).defaults() == {"max_epoch": 24, "fsl_max_epoch": 5}
    sf.write(str(workspace.recordings_dir("clean") / "me.wav"), noisy_clip(6.0, 3), 16000, subtype="PCM_16")
    # The page's placeholders: no zero-shot step, a few-shot length from the clean seconds.
    assert PersonalizeJob(workspace).defaults() == {"max_epoch": "skipped: clean speech only",
                                                    "fsl_max_epoch": "from the clean seconds"}
    assert job.defaults()["fsl_max_epoch"] == 1  # pse-app --personalize_args still decide
    job.start({})
    job._thread.join(600)
    assert job.status()["state"] == "done", job.status()
    assert espnet2_pse.load(job.model_path)(noisy_clip(2.0, 4), 16000).shape == (32000,)
    assert (job.work / "exp/fsl/.done").is_file() and not (job.work / "exp/zsl").exists()


# --- the page in Chromium ------------------------------------------------------------------


@pytest.fixture(scope="module")
def microphone(tmp_path_factory) -> Path:
    """The fake microphone's wav (Chromium loops it)."""
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(str(path), noisy_clip(6.0, 7), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(microphone):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        assert Path(binary).is_file(), f"{binary} is missing: `make -C tools` installs chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={microphone}", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait_for(condition, timeout=120.0, what="the page"):
    from selenium.common.exceptions import StaleElementReferenceException

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = condition()
        except StaleElementReferenceException:  # the page redrew it between find and read
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def text_of(driver, element_id):
    return driver.find_element("id", element_id).text


def screenshot(driver, name, section):
    folder = os.environ.get("PSE_APP_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.execute_script("document.getElementById(arguments[0]).scrollIntoView()", section)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def test_the_page_personalizes_enhances_downloads_and_listens_live(server, browser, tmp_path):
    driver, work = browser, server.work
    files = write_user_recordings(tmp_path / "mine", seed=0)
    uploads = sorted(str(p) for p in files.rglob("*") if p.is_file())
    (tmp_path / "mine" / "notes.txt").write_text("shopping list")
    driver.get(server.url)
    wait_for(lambda: driver.find_elements("css selector", "#enhance-model option"), 30, "the model list")
    assert driver.find_element("id", "max-epoch").get_attribute("placeholder") == "4"  # pse-app's defaults
    assert driver.find_element("id", "download-onnx-streaming").get_attribute("href") is None  # not causal

    # Upload: the audio files are kept, the text file is listed with its reason.
    driver.find_element("id", "noisy-files").send_keys("\n".join(uploads + [str(tmp_path / "mine" / "notes.txt")]))
    wait_for(lambda: len(driver.find_elements("css selector", "#noisy-list li")) == len(uploads), 60, "the uploads")
    assert "notes.txt: cannot be decoded" in text_of(driver, "upload-rejected")
    # Clean speech: a file, and five seconds recorded from the (fake) microphone.
    sf.write(str(tmp_path / "quiet_room.wav"), voice(np.random.default_rng(5), 10.0, 16000), 16000)
    driver.find_element("id", "clean-files").send_keys(str(tmp_path / "quiet_room.wav"))
    wait_for(lambda: driver.find_elements("css selector", "#clean-list li"), 30, "the clean upload")
    record = driver.find_element("css selector", "button.record[data-kind=clean]")
    record.click()
    wait_for(lambda: record.text == "Stop recording", 10, "the recorder")
    time.sleep(4.6)
    record.click()
    item = wait_for(lambda: driver.find_elements("css selector", "#clean-list li")[1:], 30, "the recording")[0]
    assert item.text.startswith("recording-") and 4.0 <= float(item.text.split("(")[1].split(" s")[0]) < 6.0
    screenshot(driver, "app_recordings", "recordings")

    # Personalize a causal model; cancel, then resume.
    driver.find_element("id", "causal").click()
    driver.find_element("id", "personalize-start").click()
    status = driver.find_element("id", "personalize-status")
    wait_for(lambda: "epoch" in status.text, 120, "the first epoch")
    screenshot(driver, "app_personalize", "personalize")
    status_code, answer = request(f"{server.url}/api/recordings/noisy/memo1.wav", method="DELETE")
    assert status_code == 400 and "cannot change while a personalization" in answer["error"]
    driver.find_element("id", "personalize-cancel").click()
    wait_for(lambda: status.get_attribute("data-state") == "cancelled", 120, "the cancellation")
    assert not (work / "models" / "personal.zip").exists()
    driver.find_element("id", "personalize-start").click()
    wait_for(lambda: status.get_attribute("data-state") == "done", 300, "the personalization")
    assert request(f"{server.url}/api/personalize")[1]["resumed"] and "resuming" in (work / "personalize" / "personalize.log").read_text()
    personal = work / "models" / "personal.zip"
    assert personal.is_file()

    # Enhance with the personal model: A/B player, spectrograms, scores, download.
    wait_for(lambda: "personal" in [o.get_attribute("value") for o in
                                    driver.find_elements("css selector", "#enhance-model option")], 30, "the model")
    assert driver.find_element("id", "enhance-model").get_attribute("value") == "personal"
    sf.write(str(tmp_path / "call.wav"), noisy_clip(3.0, 11), 16000, subtype="PCM_16")
    driver.find_element("id", "enhance-files").send_keys(str(tmp_path / "call.wav"))
    driver.find_element("id", "enhance-start").click()
    card = wait_for(lambda: driver.find_elements("css selector", ".result"), 120, "the enhanced file")[0]
    scores = {row.get_attribute("data-score"): [float(td.text) for td in row.find_elements("tag name", "td")[1:]]
              for row in card.find_elements("css selector", "table.scores tr[data-score]")}
    assert set(scores) == {"sig", "bak", "ovrl", "povrl"} and all(1.0 <= v <= 5.0 for s in scores.values() for v in s)
    assert all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 100", img)
               for img in card.find_elements("css selector", ".spectrograms img"))
    audio = card.find_element("tag name", "audio")
    card.find_element("css selector", "button[data-side=enhanced]").click()
    assert audio.get_attribute("src").endswith("_enhanced.wav")
    screenshot(driver, "app_enhance", "enhance")
    href = card.find_element("css selector", "a.download-enhanced").get_attribute("href")
    status_code, downloaded = request(href)
    assert status_code == 200
    enhanced, rate = sf.read(io.BytesIO(downloaded), dtype="float32")
    assert enhance.main(["--model", str(personal), str(tmp_path / "call.wav"), "--out_dir", str(tmp_path / "cli"),
                         "--quiet"]) == 0
    np.testing.assert_allclose(enhanced, sf.read(str(tmp_path / "cli" / "call.wav"), dtype="float32")[0], atol=1e-4)
    assert rate == 16000

    # Downloads of the model: the zip loads, the streaming ONNX graph runs.
    zip_href = driver.find_element("id", "download-zip").get_attribute("href")
    assert zipfile.is_zipfile(io.BytesIO(request(zip_href)[1]))
    onnx_href = driver.find_element("id", "download-onnx-streaming").get_attribute("href")
    (tmp_path / "live.onnx").write_bytes(request(onnx_href)[1])
    assert ort.InferenceSession(str(tmp_path / "live.onnx"), providers=["CPUExecutionProvider"]).get_inputs()

    # Live: a malformed message ends a session with a reason; then the microphone through the
    # personal model, equal to offline causal enhancement.
    ready, refused = live_replies(f"{server.url}/ws/live?model=personal", b"abc")
    assert ready["type"] == "ready" and "finite float32 samples" in refused["message"]
    driver.find_element("id", "live-start").click()
    live_status = driver.find_element("id", "live-status")
    wait_for(lambda: "round trip" in live_status.text, 30, "live audio")
    time.sleep(2.5)
    screenshot(driver, "app_live", "live")
    driver.find_element("id", "live-stop").click()
    output_link = wait_for(lambda: driver.find_elements("id", "live-output"), 30, "the live capture")[0]
    captured = sf.read(io.BytesIO(request(driver.find_element("id", "live-input").get_attribute("href"))[1]),
                       dtype="float32")[0]
    live = sf.read(io.BytesIO(request(output_link.get_attribute("href"))[1]), dtype="float32")[0]
    assert live.shape == captured.shape and captured.size > 2 * 16000 and np.abs(captured).max() > 0.05
    offline = espnet2_pse.load(personal, chunk_seconds=None)(captured, 16000)
    assert si_sdr(offline, live) >= 40.0
    assert 0 < float(live_status.get_attribute("data-round-trip-ms")) < 1000
    shutil.rmtree(tmp_path / "cli")
