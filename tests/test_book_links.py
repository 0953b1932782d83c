"""The book's links: Colab launch buttons and install cells name the one repository of _config.yml;
citations resolve against book/references.bib; the execution page lists every chapter.

The fast tests read the sources only. The ``book`` tests read the smoke book that the session
fixture ``book_build`` (conftest.py) builds once.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pybtex.database
import pytest
import yaml

from course_lib.instructor import repository as repo_tool

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "chapters").glob("[0-9][0-9]_*.ipynb"))
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
COLAB_LINK = re.compile(
    r"^https://colab\.research\.google\.com/github/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
    r"/blob/(?P<branch>[^/]+)/(?P<path>.+\.ipynb)$"
)
# Written here independently of course_lib.instructor.repository, so the test does not trust the code it checks.
INSTALL = re.compile(
    r"git\+https://github\.com/(?P<owner>[^/\s\"']+)/(?P<repo>[^/@\s\"']+?)(?:\.git)?"
    r"(?:@(?P<ref>[^\s\"'#]+))?[\"'\s]"
)
CITATION = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def configured() -> dict[str, str]:
    """owner, repo, branch and path_to_book as _config.yml gives them."""
    section = CONFIG["repository"]
    owner, name = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)/?", section["url"]).groups()
    return {
        "owner": owner,
        "repo": name,
        "branch": section["branch"],
        "path_to_book": (section.get("path_to_book") or "").strip("/"),
    }


def install_cell_source(notebook: Path) -> str:
    nb = nbformat.read(notebook, as_version=4)
    cells = [cell for cell in nb.cells if cell.cell_type == "code" and "google.colab" in cell.source]
    assert cells, f'{notebook.name}: no Colab install cell (a code cell testing `"google.colab" in sys.modules`)'
    assert nb.cells.index(cells[0]) <= 1, f"{notebook.name}: the Colab install cell must come first"
    return cells[0].source


def test_config_names_a_github_repository_and_colab():
    assert configured()["owner"] and configured()["repo"]
    assert CONFIG["launch_buttons"]["colab_url"].rstrip("/") == "https://colab.research.google.com"
    assert CONFIG["html"]["use_repository_button"]


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.name)
def test_install_cell_installs_from_the_configured_repository(notebook):
    source = install_cell_source(notebook)
    targets = [m.groupdict() for m in INSTALL.finditer(source + "\n")]
    assert targets, f"{notebook.name}: the install cell has no git+https://github.com/... address"
    expected = configured()
    for target in targets:
        assert (target["owner"], target["repo"], target["ref"]) == (
            expected["owner"],
            expected["repo"],
            expected["branch"],
        ), (
            f"{notebook.name} installs from {target['owner']}/{target['repo']}@{target['ref'] or '<default branch>'}, but _config.yml "
            f"names {expected['owner']}/{expected['repo']}@{expected['branch']}: run "
            f"`python -m course_lib.instructor.repository --sync`"
        )


def test_repository_tool_agrees_with_the_config():
    tool = repo_tool.read_repository(REPO)
    expected = configured()
    assert (tool.owner, tool.name, tool.branch) == (expected["owner"], expected["repo"], expected["branch"])
    assert tool.colab_url("chapters/01_autoencoders.ipynb") == (
        f"https://colab.research.google.com/github/{expected['owner']}/{expected['repo']}/blob/"
        f"{expected['branch']}/chapters/01_autoencoders.ipynb"
    )


def test_repository_tool_syncs_a_fork(tmp_path):
    (tmp_path / "chapters").mkdir()
    config = dict(CONFIG, repository={"url": "https://github.com/someone/fork", "branch": "spring", "path_to_book": ""})
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    nb = nbformat.read(CHAPTERS[0], as_version=4)
    notebook = tmp_path / "chapters" / CHAPTERS[0].name
    nbformat.write(nb, notebook)

    assert repo_tool.main(["--root", str(tmp_path)]) == 1  # still points at the original repository
    assert repo_tool.main(["--root", str(tmp_path), "--sync"]) == 0
    synced = nbformat.read(notebook, as_version=4)
    assert "git+https://github.com/someone/fork@spring" in install_cell_source(notebook)
    assert [c.source for c in synced.cells[2:]] == [c.source for c in nb.cells[2:]]  # nothing else touched
    assert not repo_tool.sync_notebook(notebook, repo_tool.read_repository(tmp_path))  # idempotent


def test_citations_resolve_and_the_references_page_is_in_the_toc():
    keys = set(pybtex.database.parse_file(REPO / "book" / "references.bib").entries)
    assert CONFIG["bibtex_bibfiles"] == ["book/references.bib"]
    sources = {path.name: path.read_text() for path in (REPO / "book").glob("*.md")}
    for notebook in CHAPTERS:
        nb = nbformat.read(notebook, as_version=4)
        sources[notebook.name] = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    sources = {name: re.sub(r"``.*?``", "", text) for name, text in sources.items()}  # examples in inline code
    unknown = {
        name: sorted({key.strip() for keys_ in CITATION.findall(text) for key in keys_.split(",")} - keys)
        for name, text in sources.items()
    }
    assert not any(unknown.values()), f"citations missing from book/references.bib: {unknown}"
    cited = {name for name, text in sources.items() if CITATION.search(text)}
    assert {"02_vae.ipynb", "04_cvae.ipynb"} <= cited
    assert "{bibliography}" in sources["references.md"]
    assert "book/references" in (REPO / "_toc.yml").read_text()


class LinkCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


def page_links(page: Path) -> list[str]:
    collector = LinkCollector()
    collector.feed(page.read_text())
    return collector.links


@pytest.mark.book
@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.name)
def test_colab_button_opens_the_chapter_notebook(built_html, notebook):
    links = [
        link
        for link in page_links(built_html / "chapters" / f"{notebook.stem}.html")
        if link.startswith("https://colab.research.google.com")
    ]
    assert len(set(links)) == 1, f"{notebook.stem}: expected one Colab link, found {links}"
    match = COLAB_LINK.match(links[0])
    assert match, f"{notebook.stem}: malformed Colab link {links[0]}"
    expected = configured()
    assert (match["owner"], match["repo"], match["branch"]) == (expected["owner"], expected["repo"], expected["branch"])
    in_book = notebook.relative_to(REPO).as_posix()
    assert match["path"] == (f"{expected['path_to_book']}/{in_book}" if expected["path_to_book"] else in_book)
    assert (REPO / match["path"]).is_file(), f"{match['path']} does not exist in the repository"


@pytest.mark.book
def test_citations_link_to_the_references_page(built_html):
    references = (built_html / "book" / "references.html").read_text()
    assert "auto-encoding variational bayes" in references.lower() and "Fashion-MNIST" in references
    chapter = built_html / "chapters" / "02_vae.html"
    links = [link for link in page_links(chapter) if "references.html#id" in link or "references.html#" in link]
    assert links, "chapter 02 cites Kingma and Welling, but no citation links to the references page"
    assert "Kingma and Welling" in chapter.read_text()


@pytest.mark.book
def test_execution_page_lists_every_chapter(built_html, executed):
    page = (built_html / "book" / "execution.html").read_text()
    for notebook in CHAPTERS:
        assert f"chapters/{notebook.stem}.html" in page, f"{notebook.stem} missing from the execution page"
    assert page.count("<td><p>ok</p></td>") + page.count("<td>ok</td>") == len(CHAPTERS)
    assert "smoke" in page and "CPU cores" in page
    assert "execution_report.csv" in page
