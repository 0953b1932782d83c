"""The built smoke book, opened in headless Chromium through Playwright.

The book built once per session by the ``book_build`` fixture (conftest.py) is loaded page by page
with pytest-playwright's ``page`` fixture. The tests check, in the live DOM:

- every page of the table of contents has a title and a main heading, every ``<img>`` in the main
  content has loaded (``naturalWidth > 0``: a broken path or an unreadable file gives 0), and no
  error output (traceback, stderr, error cell) is shown; one PNG screenshot per chapter is kept in
  ``_build/screenshots/`` as a build artefact;
- the formulas of chapter 02 are typeset by MathJax with no request leaving the machine (the book
  bundles MathJax through ``sphinx-mathjax-offline``, _config.yml);
- each chapter's Colab launch button opens that chapter's notebook on the repository _config.yml
  names;
- an exercise's solution dropdown is closed on load and opens when its title is clicked.

Playwright drives Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it where
apt-get is usable) through ``executable_path``, so no browser is downloaded; ``$CHROMIUM`` names
another binary. Without one the tests are skipped and say how to get it. External hosts resolve to
nothing (``--host-resolver-rules``), so a page that needs the network shows it instead of waiting.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "_build" / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
# What a sandboxed, offline machine needs: no sandbox (containers run as root), no GPU, and no host
# but localhost (Chromium otherwise keeps calling home, and a CDN would hide a missing bundle).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
]
SCREENSHOT_MAX_HEIGHT = 12000  # CSS pixels of a long chapter kept in its screenshot (at half scale)
MATHJAX_TIMEOUT_MS = 30_000

PAGE_REPORT = """async () => {
  const main = document.querySelector("main") || document.body;
  const article = main.querySelector("article") || main;  // the page's text, without the header buttons
  const images = Array.from(article.querySelectorAll("img"));
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
}"""
# Formulas MathJax has not replaced: Sphinx writes each as a span.math / div.math with the LaTeX.
UNTYPESET_FORMULAS = """() => Array.from(document.querySelectorAll("main span.math, main div.math"))
  .filter(node => !node.querySelector("mjx-container")).map(node => node.textContent.slice(0, 80))"""


def find_chromium() -> str | None:
    """``$CHROMIUM`` if set, else the first Chromium or Chrome on the PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, pointed at the machine's own Chromium."""
    binary = find_chromium()
    if binary is None:
        pytest.skip(
            "headless Chromium not found: install Debian's chromium (`apt-get install chromium`; "
            ".ci/run does it where apt-get is usable) or set CHROMIUM=/path/to/chromium"
        )
    return {**browser_type_launch_args, "executable_path": binary, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A window the width of a laptop screen."""
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


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


def chapter_documents(book_root: Path) -> list[str]:
    return [name for name in toc_documents(book_root) if name.startswith("chapters/")]


@pytest.fixture
def half_scale_page(browser, browser_context_args):
    """A page rendered at half the pixel density, for screenshots of whole chapters."""
    context = browser.new_context(**{**browser_context_args, "device_scale_factor": 0.5})
    yield context.new_page()
    context.close()


def screenshot(page, path: Path, height: int) -> None:
    """A PNG of the page from the top, at most SCREENSHOT_MAX_HEIGHT CSS pixels tall.

    The window is made as tall as the page for the shot, then set back.
    """
    page.set_viewport_size({"width": 1280, "height": min(height, SCREENSHOT_MAX_HEIGHT)})
    try:
        page.screenshot(path=path)
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


@pytest.mark.book
def test_every_page_renders_in_chromium(built_html, executed, half_scale_page):
    page = half_scale_page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems, pages = [], toc_documents(executed)
    assert chapter_documents(executed)
    for name in pages:
        built = built_html / f"{name}.html"
        assert built.is_file(), f"{name}: not built"
        page.goto(built.as_uri())
        report = page.evaluate(PAGE_REPORT)
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
            screenshot(page, SCREENSHOTS / f"{Path(name).name}.png", report["height"])
    assert not problems, "\n".join(problems)
    chapters = chapter_documents(executed)
    assert all((SCREENSHOTS / f"{Path(name).name}.png").stat().st_size > 10_000 for name in chapters)


@pytest.mark.book
def test_chapter_02_formulas_are_typeset_without_the_network(built_html, page):
    outside = []
    page.on("request", lambda request: None if request.url.startswith("file:") else outside.append(request.url))
    page.goto((built_html / "chapters" / "02_vae.html").as_uri())
    page.wait_for_selector("main div.math mjx-container", timeout=MATHJAX_TIMEOUT_MS)
    page.wait_for_function(f"({UNTYPESET_FORMULAS})().length === 0", timeout=MATHJAX_TIMEOUT_MS)
    first_display = page.locator("main div.math").first
    assert first_display.locator("mjx-container").is_visible()
    assert "\\log" not in first_display.inner_text(), "the first display formula still shows its LaTeX"
    assert page.locator("main mjx-container").count() >= 20
    assert not outside, f"chapter 02 asked hosts outside the machine: {outside[:5]}"


@pytest.mark.book
def test_each_colab_button_opens_that_chapters_notebook(built_html, executed, page):
    config = yaml.safe_load((executed / "_config.yml").read_text())
    repository = config["repository"]
    owner_and_name = repository["url"].removeprefix("https://github.com/").rstrip("/")
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    for name in chapter_documents(executed):
        page.goto((built_html / f"{name}.html").as_uri())
        button = page.locator(".dropdown-launch-buttons a[href*='colab']")
        assert button.count() == 1, f"{name}: {button.count()} Colab buttons"
        notebook = f"{repository.get('path_to_book') or ''}{name}.ipynb".lstrip("/")
        expected = f"{colab}/github/{owner_and_name}/blob/{repository['branch']}/{notebook}"
        assert button.get_attribute("href") == expected, name
        assert not button.is_visible()
        page.locator(".dropdown-launch-buttons > button").click()
        assert button.is_visible(), f"{name}: the launch menu did not open"


@pytest.mark.book
def test_an_exercise_solution_opens_when_clicked(built_html, executed, page):
    for name in chapter_documents(executed):
        page.goto((built_html / f"{name}.html").as_uri())
        solutions = page.locator("main div.dropdown.admonition")
        if solutions.count():
            break
    else:
        pytest.fail("no chapter has a solution dropdown (an admonition with :class: dropdown)")
    solution = solutions.first
    answer = solution.locator("> :not(.admonition-title)").first
    assert solution.locator(".admonition-title").inner_text().strip().startswith("Solution")
    assert not answer.is_visible(), f"{name}: the solution is shown before it is asked for"
    solution.locator(".admonition-title").click()
    answer.wait_for(state="visible")
    assert answer.inner_text().strip()
