"""Where the course lives on GitHub: one address, kept in ``_config.yml`` (instructor tool).

``_config.yml``'s ``repository`` section (``url``, ``branch``, ``path_to_book``) is the one place
that names the repository. Jupyter Book builds the launch buttons from it: a chapter's Colab button
opens ``https://colab.research.google.com/github/<owner>/<repo>/blob/<branch>/chapters/NN_name.ipynb``.
The first cell of every chapter, which installs ``course_lib`` when it runs on Colab, must name the
same repository and branch; it cannot read ``_config.yml`` (on Colab nothing but the notebook is
there), so the address is written into it, and this module keeps the two in step:

    python -m course_lib.instructor.repository           # check: exit 1 and name each chapter that disagrees
    python -m course_lib.instructor.repository --sync    # rewrite the chapters' install lines from _config.yml

A fork sets ``repository.url`` (and ``branch``) in ``_config.yml`` and runs ``--sync`` once.

Imports course_lib.instructor.student only.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from course_lib.instructor.student import CHAPTER_GLOB

COLAB = "https://colab.research.google.com"
# pip's direct reference in the install cell: `"course_lib[extra] @ git+https://github.com/o/r@branch"`
GIT_SPEC = re.compile(r"git\+(?P<url>https://[^\s\"'@]+?)(?:\.git)?(?:@(?P<ref>[^\s\"'#]+))?(?=[\s\"'#]|$)")


@dataclass(frozen=True)
class Repository:
    """The ``repository`` section of ``_config.yml``: the GitHub address, the branch and the book's
    folder in the repository (instructor page: forks, Colab and the repository address)."""

    url: str  # https://github.com/<owner>/<name>
    branch: str
    path_to_book: str = ""

    @property
    def owner(self) -> str:
        return self._parts()[0]

    @property
    def name(self) -> str:
        return self._parts()[1]

    def _parts(self) -> tuple[str, str]:
        match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", self.url)
        if not match:
            raise ValueError(
                f"repository.url must be https://github.com/<owner>/<repo> for Colab links, not {self.url!r}"
            )
        return match.group(1), match.group(2)

    @property
    def pip_spec(self) -> str:
        """What the install cell passes to pip after ``course_lib @``."""
        return f"git+{self.url.rstrip('/')}@{self.branch}"

    def path_in_repo(self, book_path: str) -> str:
        """A book-relative path (``chapters/01_autoencoders.ipynb``) as a path in the repository."""
        prefix = self.path_to_book.strip("/")
        return f"{prefix}/{book_path}" if prefix else book_path

    def colab_url(self, book_path: str) -> str:
        """The address a chapter's Colab launch button opens."""
        return f"{COLAB}/github/{self.owner}/{self.name}/blob/{self.branch}/{self.path_in_repo(book_path)}"


def read_repository(root: Path | str = ".") -> Repository:
    """The ``repository`` section of ``<root>/_config.yml`` (instructor page;
    ``python -m course_lib.instructor.repository``)."""
    config = yaml.safe_load((Path(root) / "_config.yml").read_text())
    section = config.get("repository") or {}
    if not section.get("url"):
        raise ValueError(f"{Path(root) / '_config.yml'} has no repository.url")
    return Repository(
        url=section["url"].rstrip("/"),
        branch=section.get("branch") or "main",
        path_to_book=section.get("path_to_book") or "",
    )


def install_cell(notebook) -> int | None:
    """Index of the chapter's Colab install cell (the first code cell that tests for google.colab;
    instructor page)."""
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and "google.colab" in cell.source:
            return index
    return None


def install_targets(source: str) -> list[tuple[str, str | None]]:
    """Every ``git+URL[@ref]`` in a cell, as (url, ref or None) (instructor page)."""
    return [(m.group("url").rstrip("/"), m.group("ref")) for m in GIT_SPEC.finditer(source)]


def check_notebook(path: Path, repository: Repository) -> list[str]:
    """Problems of one chapter's install cell, as sentences (empty when it agrees with _config.yml;
    instructor page; ``python -m course_lib.instructor.repository``)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    index = install_cell(notebook)
    if index is None:
        return [f'{path}: no Colab install cell (a code cell with `if "google.colab" in sys.modules:`)']
    targets = install_targets(notebook.cells[index].source)
    if not targets:
        return [f"{path}: the install cell has no `git+https://...` address"]
    return [
        f"{path}: the install cell installs from {url}@{ref or '<default branch>'}, "
        f"but _config.yml says {repository.url}@{repository.branch}"
        for url, ref in targets
        if (url, ref) != (repository.url, repository.branch)
    ]


def sync_notebook(path: Path, repository: Repository) -> bool:
    """Point the chapter's install cell at ``repository``; return whether the file changed
    (instructor page; ``python -m course_lib.instructor.repository --sync``)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    index = install_cell(notebook)
    if index is None:
        raise ValueError(f"{path}: no Colab install cell to update")
    cell = notebook.cells[index]
    updated = GIT_SPEC.sub(repository.pip_spec, cell.source)
    if updated == cell.source:
        return False
    cell.source = updated
    nbformat.write(notebook, path)
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.instructor.repository [--sync]``: check or rewrite the chapters' install cells
    (instructor page)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help=f"default: chapters/{CHAPTER_GLOB}")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root holding _config.yml")
    parser.add_argument("--sync", action="store_true", help="rewrite the install cells from _config.yml")
    args = parser.parse_args(argv)

    if not (args.root / "_config.yml").is_file():
        parser.error(f"no _config.yml in {args.root.resolve()}: run from the repository root, or pass --root")
    repository = read_repository(args.root)
    notebooks = args.notebooks or sorted((args.root / "chapters").glob(CHAPTER_GLOB))
    if args.sync:
        for path in notebooks:
            if sync_notebook(path, repository):
                print(f"updated {path}")
    problems = [problem for path in notebooks for problem in check_notebook(path, repository)]
    print(
        "\n".join(problems)
        if problems
        else f"{len(notebooks)} chapter(s) install from {repository.pip_spec}; "
        f"Colab opens {repository.colab_url('chapters/<name>.ipynb')}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
