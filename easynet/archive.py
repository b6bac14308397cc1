"""Safe extraction of uploaded zips: the one extractor that batch inspection and the app's fine-tuning use.

Refused before anything is written: a file that is not a zip, more than EASYNET_MAX_ZIP_ENTRIES entries (counted
by walking the central directory itself and stopping at the limit, whatever the end record claims, before the
stdlib parses the directory), absolute paths, '..', links, more than EASYNET_MAX_ZIP_BYTES declared, and whatever
the caller's `check_names` refuses. While writing, the bytes really written are counted too (a zip may lie about its
sizes); on any failure what was written is removed. A `Budget` shared by several zips of one request bounds their
entries and bytes together.
"""

from __future__ import annotations

import re
import shutil
import stat
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from easynet.errors import InputError
from easynet.settings import env_int

MAX_BYTES_ENV = "EASYNET_MAX_ZIP_BYTES"
MAX_BYTES = 2 * 1024**3
MAX_ENTRIES_ENV = "EASYNET_MAX_ZIP_ENTRIES"
MAX_ENTRIES = 10_000  # files and folders in one zip (and in all the zips of one request)
CHUNK_BYTES = 1 << 20
END_SIGNATURE, CENTRAL_SIGNATURE = b"PK\x05\x06", b"PK\x01\x02"
END_SIZE, CENTRAL_SIZE = 22, 46
END_SEARCH = END_SIZE + 0xFFFF  # the end record sits within the last 22 bytes + the longest comment


def max_bytes() -> int:
    """The unpacked-size limit: EASYNET_MAX_ZIP_BYTES, read on every call, else MAX_BYTES."""
    return env_int(MAX_BYTES_ENV, MAX_BYTES, "a number of bytes")


def max_entries() -> int:
    """The entry-count limit: EASYNET_MAX_ZIP_ENTRIES, read on every call, else MAX_ENTRIES."""
    return env_int(MAX_ENTRIES_ENV, MAX_ENTRIES, "a number of entries")


@dataclass
class Budget:
    """What the zips of one request may still unpack together (entries and bytes); each extraction spends it."""

    entries: int
    bytes: int

    @classmethod
    def default(cls) -> Budget:
        return cls(max_entries(), max_bytes())


def central_directory_entries(path: Path, stop_after: int) -> int | None:
    """The number of entries in a zip's central directory, walked header by header from the offset its end record
    gives, stopping once ``stop_after`` is passed (so a directory of millions costs nothing). None when there is no
    plain end record (zip64 or damaged: the stdlib decides then)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - END_SEARCH))
            tail = f.read()
            at = tail.rfind(END_SIGNATURE)
            if at < 0 or len(tail) - at < END_SIZE:
                return None
            offset = struct.unpack("<I", tail[at + 16 : at + 20])[0]
            if offset == 0xFFFFFFFF or offset >= size:
                return None
            f.seek(offset)
            count = 0
            while count <= stop_after:
                header = f.read(CENTRAL_SIZE)
                if len(header) < CENTRAL_SIZE or header[:4] != CENTRAL_SIGNATURE:
                    break
                name, extra, comment = struct.unpack("<HHH", header[28:34])
                f.seek(name + extra + comment, 1)
                count += 1
            return count
    except OSError:
        return None


def extract_zip(
    path: str | Path,
    out: str | Path,
    expected: str,
    too_many: str,
    check_names: Callable[[list[str]], None] | None = None,
    budget: Budget | None = None,
) -> Path:
    """Unpack the zip at `path` into the new folder `out` and return `out`.

    Args:
        path: the zip.
        out: the folder to create and fill; removed again if extraction stops.
        expected: what the zip should hold, for the sentences "... is not a zip file; expected a .zip of {expected}"
            and "... holds no files; expected {expected}".
        too_many: the advice after the entry-count refusal ("zip one category of images").
        check_names: called with the member file names before anything is written; raises to refuse the zip.
        budget: what this request's zips may still unpack together (spent here); default: one zip's limits.
    """
    path, out = Path(path), Path(out)
    budget = budget or Budget.default()
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path.name} is not a zip file; expected a .zip of {expected}")
    counted = central_directory_entries(path, budget.entries)
    if counted is not None and counted > budget.entries:
        raise InputError(_too_many(path.name, budget, too_many))
    with zipfile.ZipFile(path) as zf:
        if len(zf.infolist()) > budget.entries:  # zip64 or a directory that the walk could not read
            raise InputError(_too_many(path.name, budget, too_many))
        members = [m for m in zf.infolist() if not m.is_dir()]
        if not members:
            raise InputError(f"{path.name} holds no files; expected {expected}")
        for m in members:
            _check_member(path.name, m)
        total = sum(m.file_size for m in members)
        if total > budget.bytes:
            raise InputError(
                f"{path.name} unpacks to {total} bytes, more than the {_left(budget)} of {budget.bytes} bytes "
                f"(set {MAX_BYTES_ENV} to raise it)"
            )
        if check_names is not None:
            check_names([m.filename for m in members])
        if out.exists():
            raise FileExistsError(f"{out} exists; extract_zip writes into a new folder")
        try:
            written = _write(zf, members, out, budget.bytes, path.name)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    budget.entries -= len(zf.infolist())
    budget.bytes -= written
    return out


def _left(budget: Budget) -> str:
    return "limit" if budget.bytes == max_bytes() else "space left for this request's zips"


def _too_many(name: str, budget: Budget, advice: str) -> str:
    limit = f"the limit of {budget.entries}" if budget.entries == max_entries() else (
        f"the {budget.entries} left for this request's zips"
    )  # fmt: skip
    return f"{name} holds more entries than {limit} (set {MAX_ENTRIES_ENV} to raise it); {advice}"


def _check_member(zip_name: str, m: zipfile.ZipInfo) -> None:
    """Refuse an absolute path, a '..' part or a symbolic link."""
    name = m.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise InputError(f"{zip_name} holds an absolute path ({m.filename}); zips must use relative paths")
    if ".." in name.split("/"):
        raise InputError(
            f"{zip_name} holds a path with '..' ({m.filename}), which could write outside its folder; "
            "zips must use plain relative paths"
        )
    if stat.S_ISLNK(m.external_attr >> 16):
        raise InputError(f"{zip_name} holds a symbolic link ({m.filename}); links are not accepted")


def _write(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], out: Path, limit: int, zip_name: str) -> int:
    """Write the members under `out`, counting the bytes really written against `limit`; returns that count."""
    out.mkdir(parents=True)
    base = out.resolve()
    written = 0
    for m in members:
        target = (base / m.filename).resolve()
        if base not in target.parents:
            raise InputError(
                f"{zip_name} holds a path that leaves its folder ({m.filename}); zips must use plain relative paths"
            )
        try:
            if target.is_dir():
                raise IsADirectoryError(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(target, "wb") as dst:
                while chunk := src.read(CHUNK_BYTES):
                    written += len(chunk)
                    if written > limit:
                        raise InputError(
                            f"{zip_name} unpacks to more than the limit of {limit} bytes (set {MAX_BYTES_ENV} to "
                            "raise it)"
                        )
                    dst.write(chunk)
        except (IsADirectoryError, NotADirectoryError, FileExistsError):
            raise InputError(
                f"{zip_name} holds {m.filename} where a file and a folder share one name; zip each name once"
            ) from None
    return written
