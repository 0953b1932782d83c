"""Resumable, checksummed downloads of the COCO 2017 archives (chapter 06 and the data page).

Chapter 06 trains a text-conditioned CVAE on COCO captions; ``data_scripts/get_coco.py`` is the command
line over this module. COCO is optional: offline, the course uses synthetic COCO-format scenes
(``data_scripts/make_scenes.py``). Only the standard library is used for the transfer (``urllib``),
so the script runs the same on Linux, macOS and Windows.

A download is written to ``<name>.part``, resumed with an HTTP ``Range`` request after an interruption,
checked for size and SHA-1, and only then renamed to ``<name>``. A ``<name>.sha1-ok`` marker records
the verification, so re-running costs nothing (not even re-hashing 18 GB).

Imports course_lib.core (io, profiles) only.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from course_lib.core.io import DataNotFoundError, cache_dir
from course_lib.core.profiles import show_progress

CHUNK = 1 << 20  # 1 MiB: big enough for speed, small enough for a smooth progress bar
TIMEOUT = 30  # seconds without a byte (connect or read) before the transfer counts as dropped


@dataclass(frozen=True)
class RemoteFile:
    """A file on the web with its expected size in bytes and SHA-1 (hex; chapter 06)."""

    name: str
    url: str
    size: int
    sha1: str


COCO_FILES: dict[str, RemoteFile] = {
    remote.name: remote
    for remote in (
        RemoteFile(
            "val2017.zip",
            "http://images.cocodataset.org/zips/val2017.zip",
            815_585_330,
            "4950dc9d00dbe1c933ee0170f5797584351d2a41",
        ),
        RemoteFile(
            "annotations_trainval2017.zip",
            "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
            252_907_541,
            "8551ee4bb5860311e79dace7e79cb91e432e78b3",
        ),
        RemoteFile(
            "train2017.zip",
            "http://images.cocodataset.org/zips/train2017.zip",
            19_336_861_798,
            "10ad623668ab00c62c096f0ed636d6aff41faca5",
        ),
    )
}
COCO_DEFAULT = ("val2017.zip", "annotations_trainval2017.zip")  # train2017 (19 GB) is opt-in


class DownloadError(DataNotFoundError):
    """A download or an extraction failed; the message says why and what to do (chapter 06).

    A subclass of :class:`~course_lib.core.io.DataNotFoundError` because the outcome is the same for the
    caller (the data set is not available), so code that falls back to the synthetic scenes on
    ``DataNotFoundError`` also covers a failed download.
    """


def default_coco_root() -> Path:
    """Where COCO goes unless told otherwise: ``$COURSE_DATA_DIR/coco``, else ``<course cache>/coco``
    (chapter 06)."""
    data_dir = os.environ.get("COURSE_DATA_DIR")
    return Path(data_dir).expanduser() / "coco" if data_dir else cache_dir() / "coco"


def human_size(n_bytes: float) -> str:
    """``815585330`` -> ``'815.6 MB'`` (decimal units, as download sites use; chapter 06)."""
    for unit in ("B", "kB", "MB"):
        if n_bytes < 1000:
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} GB"


def _bar(total: int, desc: str, progress: bool, initial: int = 0) -> tqdm:
    return tqdm(
        total=total, initial=initial, desc=desc, unit="B", unit_scale=True, disable=not (progress and show_progress())
    )


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha1-ok")


def _hash_into(digest: "hashlib._Hash", path: Path, progress: bool) -> None:
    """Feed ``path`` to ``digest`` in chunks (never the whole file in memory)."""
    with open(path, "rb") as file, _bar(path.stat().st_size, f"checking {path.name}", progress) as bar:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))


def is_downloaded(remote: RemoteFile, folder: str | Path) -> bool:
    """True when ``folder/<name>`` has the right size and was verified against ``remote.sha1`` before
    (chapter 06)."""
    target, marker = Path(folder) / remote.name, _verified_marker(Path(folder) / remote.name)
    return (
        target.is_file()
        and target.stat().st_size == remote.size
        and marker.is_file()
        and marker.read_text().strip() == remote.sha1
    )


def require_free_space(folder: Path, needed: int, what: str) -> None:
    """Fail before starting rather than with a full disk halfway through (chapter 06)."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DownloadError(
            f"{what} needs {human_size(needed)} of free disk space in {folder}, but only "
            f"{human_size(free)} is free. Free some space, or choose a folder on a bigger "
            "disk (get_coco.py --root DIR, or set COURSE_DATA_DIR)."
        )


def _offline_error(remote: RemoteFile, reason: object) -> DownloadError:
    host = urlsplit(remote.url).hostname
    return DownloadError(
        f"Could not reach {host} to download {remote.name} ({reason}): you seem to be offline, or a "
        "firewall blocks it. Connect to the network and run the same command again. COCO is optional: "
        "the course runs offline on the synthetic COCO-format scenes (python data_scripts/make_scenes.py)."
    )


def _truncated_error(remote: RemoteFile, part: Path, reason: object) -> DownloadError:
    have = part.stat().st_size if part.exists() else 0
    return DownloadError(
        f"The download of {remote.name} stopped at {human_size(have)} of {human_size(remote.size)} "
        f"({reason}). The bytes received are kept in {part}: run the same command again to resume."
    )


def _content_range(header: str | None) -> tuple[int, int | None]:
    """``'bytes 100-199/200'`` -> ``(100, 200)``; the total is ``None`` when the server sends ``*``."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (header or "").strip())
    if match is None:
        raise DownloadError(
            f"The server answered a resume request with an unreadable Content-Range "
            f"header {header!r}; run the same command again."
        )
    return int(match[1]), None if match[2] == "*" else int(match[2])


def _fetch(remote: RemoteFile, part: Path, progress: bool) -> "hashlib._Hash":
    """Append the missing bytes of ``remote`` to ``part``; return the SHA-1 digest of the whole file."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as error:
        if error.code == 416:  # the server rejects our offset: the .part cannot be a prefix of its file
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"The server refused to resume {remote.name} (HTTP 416); the partial file "
                "was deleted: run the same command again to download it afresh."
            ) from error
        raise DownloadError(
            f"{remote.url} answered HTTP {error.code} {error.reason}. Check the address, or "
            "run the same command again later."
        ) from error
    except (OSError, http.client.HTTPException) as error:  # DNS failure, refused connection, timeout
        raise _offline_error(remote, getattr(error, "reason", error)) from error

    with response:
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != have:
                raise DownloadError(
                    f"The server resumed {remote.name} at byte {start} instead of {have}; "
                    f"delete {part} and run the same command again."
                )
        else:  # 200: the server ignored the Range header and sends everything, so start from zero
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
        if total is not None and total != remote.size:
            raise DownloadError(
                f"The server announces {total} bytes for {remote.url} but {remote.size} were "
                "expected: the file on the server is not the one the course knows "
                "(check the address in course_lib/data/download.py)."
            )

        digest = hashlib.sha1()
        if have:
            _hash_into(digest, part, progress)  # hashing as we go spares re-reading the file at the end
        dropped = None
        with open(part, "ab" if have else "wb") as out, _bar(remote.size, remote.name, progress, initial=have) as bar:
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as error:  # connection reset, timeout mid-transfer
                dropped = error
    if dropped is not None:  # raised once the .part is closed, so its size in the message is right
        raise _truncated_error(remote, part, dropped) from dropped
    return digest


def download(remote: RemoteFile, folder: str | Path, progress: bool = True) -> Path:
    """Download ``remote`` into ``folder`` (resuming, verifying) and return the path of the file (chapter 06).

    Idempotent: a file verified before is returned at once. Raises :class:`DownloadError` with what
    to do when the network is missing, the transfer drops (run again to resume) or the checksum is wrong.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target, part = folder / remote.name, folder / f"{remote.name}.part"
    if is_downloaded(remote, folder):
        return target

    if target.is_file() and target.stat().st_size == remote.size:
        # Complete but never verified (copied by hand, or interrupted before the marker was written).
        os.replace(target, part)
    have = part.stat().st_size if part.exists() else 0
    if have > remote.size:  # longer than the real file: cannot be a prefix of it
        part.unlink()
        have = 0
    require_free_space(folder, remote.size - have, f"Downloading {remote.name}")

    if have == remote.size:
        digest = hashlib.sha1()
        _hash_into(digest, part, progress)
    else:
        digest = _fetch(remote, part, progress)

    got = part.stat().st_size
    if got < remote.size:
        raise _truncated_error(remote, part, "the connection closed early")
    if got > remote.size:
        part.unlink()
        raise DownloadError(
            f"{remote.name} has {got} bytes but {remote.size} were expected; the file was "
            "deleted: run the same command again to download it afresh."
        )
    if digest.hexdigest() != remote.sha1:
        part.unlink()
        raise DownloadError(
            f"{remote.name} is corrupt: its SHA-1 is {digest.hexdigest()} but "
            f"{remote.sha1} was expected. The file was deleted: run the same command "
            "again to download it afresh."
        )
    os.replace(part, target)  # atomic: the final name only ever holds a verified file
    _verified_marker(target).write_text(remote.sha1 + "\n")
    return target


def _extracted_marker(zip_path: Path, folder: Path) -> Path:
    return folder / f".{zip_path.name}.extracted"


def is_extracted(zip_path: str | Path, folder: str | Path) -> bool:
    """True when ``zip_path`` was fully extracted into ``folder`` before (chapter 06).

    The marker holds the archive's size, so a different archive under the same name is extracted
    again; once the archive is deleted (to save disk space) the marker alone is trusted.
    """
    zip_path, folder = Path(zip_path), Path(folder)
    marker = _extracted_marker(zip_path, folder)
    if not marker.is_file():
        return False
    return not zip_path.exists() or marker.read_text() == f"{zip_path.stat().st_size}\n"


def extract(zip_path: str | Path, folder: str | Path, progress: bool = True) -> Path:
    """Unzip ``zip_path`` into ``folder`` and return ``folder``; skipped when it was done before (chapter 06).

    A marker ``.<zip name>.extracted`` in ``folder`` records a completed extraction; an interrupted
    one has no marker and starts over (overwriting what was written).
    """
    zip_path, folder = Path(zip_path), Path(folder)
    if is_extracted(zip_path, folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = archive.infolist()
            total = sum(member.file_size for member in members)
            require_free_space(folder, total, f"Extracting {zip_path.name}")
            with _bar(total, f"extracting {zip_path.name}", progress) as bar:
                for member in members:
                    archive.extract(member, folder)  # drops absolute paths and '..' (no zip-slip)
                    bar.update(member.file_size)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DownloadError(
            f"{zip_path} is not a valid zip archive ({error}). Delete it and run the "
            "same command again to download it afresh."
        ) from error
    _extracted_marker(zip_path, folder).write_text(f"{zip_path.stat().st_size}\n")
    return folder
