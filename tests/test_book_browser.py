"""Every page of the built smoke book, opened in headless Chromium.

The book built once per session by the ``book_build`` fixture (conftest.py) is loaded page by page
in one headless Chromium. For each page of the table of contents the test checks, in the live DOM
after the load event, that the page has a title and a main heading, that every ``<img>`` in the
main content has loaded (``naturalWidth > 0``: a broken path or an unreadable file gives 0), and
that no error output (traceback, stderr, error cell) is shown. It keeps one PNG screenshot per
chapter in ``_build/screenshots/`` as a build artefact.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages
separated by NUL bytes on file descriptors 3 and 4), so the test needs no Python package beyond the
standard library, only Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it
where apt-get is usable). Without Chromium the test is skipped and says how to get it. External
hosts are resolved to nothing (``--host-resolver-rules``), so the test never waits on the network:
MathJax, loaded from a CDN, does not typeset in the screenshots.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "_build" / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
# The flags a sandboxed, offline machine needs (Chromium otherwise keeps calling home), and a
# window the width of a laptop screen.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
    "--window-size=1280,900",
]
SCREENSHOT_MAX_HEIGHT = 12000  # CSS pixels of a long chapter kept in its screenshot (at half scale)

PAGE_REPORT = """(async () => {
  const main = document.querySelector("main") || document.body;
  const images = Array.from(main.querySelectorAll("img"));
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener("load", done); img.addEventListener("error", done);
  })));
  const heading = main.querySelector("h1");
  return {
    title: document.title,
    heading: heading ? heading.textContent.trim() : "",
    images: images.map(img => ({src: (img.getAttribute("src") || "").slice(0, 100),
                                 width: img.naturalWidth})),
    errors: Array.from(main.querySelectorAll(
      ".output.traceback, .output.stderr, .output_error, div.traceback, .cell_output .error"))
      .map(node => node.textContent.trim().slice(0, 200)),
    height: document.documentElement.scrollHeight,
  };
})()"""


def find_chromium() -> str | None:
    """``$CHROMIUM`` if set, else the first Chromium or Chrome on the PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class Chromium:
    """A headless Chromium and one tab, driven over the DevTools protocol on a pipe."""

    def __init__(self, binary: str, profile_dir: Path, timeout: float = 30.0):
        self.timeout, self.next_id, self.buffer, self.session, self.events = timeout, 0, b"", None, []
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()

        def as_fds_3_and_4():  # Chromium reads commands on fd 3 and writes replies on fd 4
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=as_fds_3_and_4,
            pass_fds=(3, 4),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)

    def _messages(self, deadline: float):
        """Yield the browser's messages until the deadline."""
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                yield json.loads(raw)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_browser], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited (code {self.process.poll()})")
            self.buffer += chunk

    def send(self, method: str, **params):
        """Send one command and return its result; events that arrive meanwhile are kept in ``events``."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        for reply in self._messages(time.monotonic() + self.timeout):
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            if "method" in reply:
                self.events.append(reply["method"])

    def open(self, url: str) -> None:
        """Navigate the tab and wait for the page's load event."""
        self.events.clear()
        self.send("Page.navigate", url=url)
        if "Page.loadEventFired" in self.events:
            return
        for message in self._messages(time.monotonic() + self.timeout):
            if message.get("method") == "Page.loadEventFired":
                return

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"]["value"]

    def screenshot(self, path: Path, height: int) -> None:
        """A PNG of the page from the top, at half scale, at most SCREENSHOT_MAX_HEIGHT tall.

        The window is made as tall as the page for the shot (``captureBeyondViewport`` on long
        pages shifted the layout sideways), then set back.
        """
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=min(height, SCREENSHOT_MAX_HEIGHT),
            deviceScaleFactor=0.5,
            mobile=False,
        )
        try:
            data = self.send("Page.captureScreenshot", format="png")["data"]
        finally:
            self.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.to_browser)
        os.close(self.from_browser)


def toc_documents(book_root: Path) -> list[str]:
    """The document names in a book's _toc.yml, root first, in order."""
    toc = yaml.safe_load((book_root / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                names.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key, []))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return names


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        pytest.skip(
            "headless Chromium not found: install Debian's chromium (`apt-get install chromium`; "
            ".ci/run does it where apt-get is usable) or set CHROMIUM=/path/to/chromium"
        )
    chromium = Chromium(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


@pytest.mark.book
def test_every_page_renders_in_chromium(built_html, executed, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems, pages = [], toc_documents(executed)
    assert any(name.startswith("chapters/") for name in pages)
    for name in pages:
        page = built_html / f"{name}.html"
        assert page.is_file(), f"{name}: not built"
        browser.open(page.as_uri())
        report = browser.evaluate(PAGE_REPORT)
        if not report["title"].strip() or not report["heading"]:
            problems.append(f"{name}: no title or no <h1> (title {report['title']!r})")
        broken = [image["src"] for image in report["images"] if image["width"] == 0]
        if broken:
            problems.append(f"{name}: {len(broken)} of {len(report['images'])} images did not load: {broken[:5]}")
        if report["errors"]:
            problems.append(f"{name}: error output shown: {report['errors'][:3]}")
        if name.startswith("chapters/"):
            if not report["images"]:
                problems.append(f"{name}: no figure in the chapter")
            browser.screenshot(SCREENSHOTS / f"{Path(name).name}.png", report["height"])
    assert not problems, "\n".join(problems)
    chapters = [name for name in pages if name.startswith("chapters/")]
    assert all((SCREENSHOTS / f"{Path(name).name}.png").stat().st_size > 10_000 for name in chapters)
