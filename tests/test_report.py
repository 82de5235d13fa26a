"""report.html: every section, escaped, self-contained; and, rendered in Chromium, every figure."""

import asyncio
import base64
import html
import io
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tune_mnist import plots, report
from tune_mnist.comparison import compare
from tune_mnist.dependence import analyse
from tune_mnist.files import MANIFEST_FILE, REPORT_FILE, read_manifest, write_json
from tune_mnist.report import SECTIONS, Section, write_report
from tune_mnist.results import main
from tune_mnist.space import KEYS, parse_space

HOSTILE = '<script>alert("x")</script>'
SECTION_TITLES = [
    "Run",
    "Primary result",
    "Paired differences",
    "Learning curves",
    "Configurations and the MixUp difference",
    "How the MixUp difference depends on each key",
    "Which keys matter for val_acc",
    "Test set",
    "Calibration",
]
# The figures of a finished run with a test evaluation: forest, learning curves, parallel
# coordinates, confusion matrix, misclassified images, reliability.
FIGURES_OF_A_FULL_RUN = 6


@dataclass
class Tables:
    """Synthetic tables shaped like results.Tables, without a test evaluation."""

    trials: pd.DataFrame
    epochs: pd.DataFrame
    comparison: pd.DataFrame
    dependence: pd.DataFrame
    importance: pd.DataFrame
    test_eval: pd.DataFrame | None = None
    confusion: pd.DataFrame | None = None
    test_predictions: pd.DataFrame | None = None


@pytest.fixture
def tables() -> Tables:
    """Two dropouts x 3 seeds, 2 epochs, MixUp +0.01; a mixup arm DIVERGED, its error hostile."""
    trials, epochs = [], []
    for pair, (dropout, seed) in enumerate((d, s) for d in (0.1, 0.4) for s in range(3)):
        for arm in ("plain", "mixup"):
            trial_id = f"p{pair}-{arm}"
            diverged = pair == 5 and arm == "mixup"
            curve = [0.5 + dropout / 10, 0.6 + dropout / 10 + 0.01 * (arm == "mixup")]
            epochs += [
                {"trial_id": trial_id, "epoch": e, "val_acc": a} for e, a in enumerate(curve, 1)
            ]
            trials.append(
                {
                    **{f"config/{k}": spec.default for k, spec in KEYS.items()},
                    "trial_id": trial_id,
                    "pair_id": f"p{pair}",
                    "arm": arm,
                    "status": "DIVERGED" if diverged else "TERMINATED",
                    "architecture": f"dropout={dropout}",
                    "config/dropout": dropout,
                    "config/seed": seed,
                    "config/mixup": arm == "mixup",
                    "last_val_acc": curve[-1],
                    "error": HOSTILE if diverged else None,
                }
            )
    trials, epochs = pd.DataFrame(trials), pd.DataFrame(epochs)
    return Tables(trials, epochs, compare(trials, epochs), *analyse(trials, epochs, None))


@pytest.fixture
def run_dir(tmp_path) -> Path:
    manifest = {"command": ["tune_mnist.run", "--name", HOSTILE], "args": {"name": HOSTILE}}
    write_json(tmp_path / MANIFEST_FILE, manifest)
    return tmp_path


def test_the_report_has_every_section_and_escapes_what_the_run_wrote(tables, run_dir):
    """Rule: every section is there, in order; text from the run (command, error) is escaped."""
    page = write_report(run_dir, tables).read_text()
    assert page.startswith("<!DOCTYPE html>")
    positions = [page.index(f"<h2>{html.escape(title)}</h2>") for title in SECTION_TITLES]
    assert positions == sorted(positions)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page  # the command
    assert "&lt;script&gt;alert(" in page.split("<h3>Failed arms</h3>")[1]  # the error
    assert "Primary result (fixed in advance): val_acc" in page
    assert "No test evaluation" in page


def test_the_report_loads_nothing_from_elsewhere(tables, run_dir):
    """Rule: self-contained: every image is inline PNG data, no src/href leaves the page, and a
    Content-Security-Policy forbids any other load."""
    page = write_report(run_dir, tables).read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(images) == 3  # forest, learning curves, parallel coordinates (no test evaluation)
    assert all(s.startswith("data:image/png;base64,") for s in images)
    assert all(s.startswith(("data:", "#")) for s in sources), sources
    assert "default-src 'none'" in page and '<link rel="stylesheet"' not in page


def test_a_section_is_added_with_one_line(tables, run_dir):
    """Rule: a section is a function (tables, context) -> Section; its title and body are shown."""

    def importance(tables, context):
        return Section("Importance <of keys>", "<p>dropout matters</p>")

    page = write_report(run_dir, tables, sections=[*SECTIONS, importance]).read_text()
    assert "<h2>Importance &lt;of keys&gt;</h2>" in page and "<p>dropout matters</p>" in page


def test_a_random_space_shows_every_pair_in_one_learning_curve_panel(tables, tmp_path, monkeypatch):
    """Rule: with keys drawn at random (each draw its own architecture) the learning curves are
    those of plots.plot_pair_curves, not a panel per architecture."""
    drawn = []
    pair_curves = plots.plot_pair_curves
    monkeypatch.setattr(
        plots, "plot_pair_curves", lambda *a, **k: drawn.append(a) or pair_curves(*a, **k)
    )
    space = {"dropout": {"uniform": [0.0, 0.5]}, "num_conv": {"grid": [1, 2]}}
    write_json(tmp_path / MANIFEST_FILE, {"command": [], "args": {}, "space": space})
    assert report.random_keys(read_manifest(tmp_path)) == ["dropout"]
    write_report(tmp_path, tables)
    assert len(drawn) == 1


def test_a_random_space_shows_the_dependence_and_importance_of_its_keys(tables, tmp_path):
    """Rule: a search with keys drawn at random gets both figures with their tables; a grid
    search says it has none."""
    page = write_report(tmp_path, tables).read_text()
    assert page.count("Not a random or TPE search: no key was drawn.") == 2
    space = parse_space({"dropout": {"uniform": [0.0, 0.5]}})
    tables.dependence, tables.importance = analyse(tables.trials, tables.epochs, space)
    page = write_report(tmp_path, tables).read_text()
    assert "no key was drawn" not in page
    for title, alt in (
        ("How the MixUp difference depends on each key", "MixUp difference by key"),
        ("Which keys matter for val_acc", "importance of each key"),
    ):
        section = page.split(f"<h2>{title}</h2>", 1)[1].split("<h2>", 1)[0]
        assert f'<img alt="{alt}"' in section and "<table" in section, section[:300]


def test_a_run_without_a_manifest_still_gets_a_report(tables, tmp_path):
    """Rule: a missing manifest is said in the Run section; the rest of the report is made."""
    page = write_report(tmp_path, tables).read_text()
    assert "No manifest:" in page and "run_manifest.json is missing" in page
    assert page.count("<img ") == 3


def test_a_search_with_report_and_the_results_cli_write_the_whole_report(small_run, capsys):
    """Rule: `run --report` wrote report.html after the manifest's end time; `results --report`
    rewrites it with every figure of a finished run."""
    written_by_the_search = (small_run / REPORT_FILE).read_text()
    ended = json.loads((small_run / MANIFEST_FILE).read_text())["ended"]
    assert ended and html.escape(ended) in written_by_the_search
    # Beside the validation primary result: its confirmation on the test set.
    assert '<p class="primary">Confirmation on the test set (both arms of 4 compared pairs' in (
        written_by_the_search
    )
    (small_run / REPORT_FILE).unlink()
    assert main([str(small_run), "--report"]) == 0
    assert f"Report: {small_run / REPORT_FILE}" in capsys.readouterr().out
    page = (small_run / REPORT_FILE).read_text()
    assert page.count('<img alt="') == FIGURES_OF_A_FULL_RUN
    assert "No figure" not in page


# ---- rendered in headless Chromium, through the DevTools protocol --------------------------------

# For every image: its size and the share of its pixels that are not white or transparent.
IMAGE_INK = """(async () => {
  const found = [];
  for (const image of document.images) {
    await image.decode().catch(() => {});
    const canvas = document.createElement("canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    let ink = 0;
    if (canvas.width > 0) {
      const context = canvas.getContext("2d");
      context.drawImage(image, 0, 0);
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 0; i < pixels.length; i += 4) {
        if (pixels[i + 3] > 0 && Math.min(pixels[i], pixels[i + 1], pixels[i + 2]) < 200) ink++;
      }
      ink /= canvas.width * canvas.height;
    }
    found.push({alt: image.alt, width: canvas.width, height: canvas.height, ink});
  }
  return found;
})()"""


@dataclass
class Rendered:
    errors: list[str]  # console errors, uncaught exceptions, failed loads
    images: list[dict]  # IMAGE_INK per image
    screenshot_ink: float  # share of the full-page screenshot's pixels that are not white


@contextmanager
def chromium(profile: Path) -> Iterator[int]:
    """A headless Chromium listening on 127.0.0.1; yields its DevTools port."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is missing: the browser tests need it (apt-get install chromium)")
    process = subprocess.Popen(
        [
            binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            # No name resolves: whatever Chromium might fetch by itself cannot leave this machine.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield _devtools_port(profile / "DevToolsActivePort", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _devtools_port(port_file: Path, process: subprocess.Popen, timeout: float = 60) -> int:
    """Chromium writes its port into the profile once it listens (port 0: it picks a free one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"chromium exited with status {process.returncode} before listening")
        lines = port_file.read_text().splitlines() if port_file.is_file() else []
        if len(lines) >= 2:
            return int(lines[0])
        time.sleep(0.1)
    pytest.fail(f"chromium did not write {port_file} within {timeout} s")


async def _render(port: int, url: str) -> Rendered:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            devtools = DevTools(socket)
            for domain in ("Runtime", "Log", "Page"):
                await devtools.call(f"{domain}.enable")
            await devtools.call("Page.navigate", url=url)
            await devtools.event("Page.loadEventFired")
            found = await devtools.call(
                "Runtime.evaluate", expression=IMAGE_INK, awaitPromise=True, returnByValue=True
            )
            size = (await devtools.call("Page.getLayoutMetrics"))["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            shot = await devtools.call(
                "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
            )
    return Rendered(devtools.errors, found["result"]["value"], _ink(base64.b64decode(shot["data"])))


class DevTools:
    """Calls over one DevTools websocket; remembers every error the page reported meanwhile."""

    def __init__(self, socket) -> None:
        self.socket, self.next_id, self.errors, self.events = socket, 0, [], []

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.socket.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.socket.receive_json(), timeout=60)
            if message.get("id") == self.next_id:
                assert "error" not in message, (method, message["error"])
                return message["result"]
            self._note(message)

    async def event(self, method: str) -> dict:
        while not any(e["method"] == method for e in self.events):
            self._note(await asyncio.wait_for(self.socket.receive_json(), timeout=60))
        return next(e for e in self.events if e["method"] == method)

    def _note(self, message: dict) -> None:
        self.events.append(message)
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a)) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            self.errors.append(params["exceptionDetails"]["text"])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(params["entry"]["text"])


def _ink(png: bytes) -> float:
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return float(np.mean(pixels.min(axis=2) < 200))


def render(page: Path, profile: Path) -> Rendered:
    with chromium(profile) as port:
        return asyncio.run(_render(port, page.resolve().as_uri()))


@pytest.mark.browser
def test_the_checks_catch_a_failed_load_and_a_blank_figure(tmp_path):
    """Rule: the browser checks can fail: a missing image is a console error, a white one no ink."""
    white = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (40, 30), "white").save(white, format="PNG")
    data = base64.b64encode(white.getvalue()).decode()
    page = tmp_path / "bad.html"
    page.write_text(
        f'<img alt="white" src="data:image/png;base64,{data}">'
        f'<img alt="missing" src="{(tmp_path / "missing.png").as_uri()}">'
    )
    rendered = render(page, tmp_path / "profile")
    assert any("ERR_FILE_NOT_FOUND" in e for e in rendered.errors), rendered.errors
    white_image, missing_image = rendered.images
    assert (white_image["width"], white_image["ink"]) == (40, 0)
    assert missing_image["width"] == 0


@pytest.mark.browser
def test_the_report_renders_in_chromium_with_every_figure_drawn(small_run, tmp_path):
    """Rule: report.html loads with no console error; the page and every figure show pixels."""
    assert main([str(small_run), "--report"]) == 0
    rendered = render(small_run / REPORT_FILE, tmp_path / "profile")
    assert rendered.errors == []
    assert len(rendered.images) == FIGURES_OF_A_FULL_RUN
    for image in rendered.images:
        assert image["width"] > 100 and image["height"] > 100, image
        assert image["ink"] > 0.01, image  # not blank: more than 1% of its pixels drawn
    assert rendered.screenshot_ink > 0.05
