"""Safe extraction of uploaded zips: the one extractor that batch inspection and the app's fine-tuning use.

Refused before anything is written: a file that is not a zip, more than EASYNET_MAX_ZIP_ENTRIES entries (counted
from the end-of-central-directory record, before the directory is parsed), absolute paths, '..', links, more than
EASYNET_MAX_ZIP_BYTES declared, and whatever the caller's `check_names` refuses. While writing, the bytes really
written are counted too (a zip may lie about its sizes); on any failure what was written is removed.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

from easynet.errors import InputError
from easynet.settings import env_int

MAX_BYTES_ENV = "EASYNET_MAX_ZIP_BYTES"
MAX_BYTES = 2 * 1024**3
MAX_ENTRIES_ENV = "EASYNET_MAX_ZIP_ENTRIES"
MAX_ENTRIES = 10_000  # files and folders in one zip
CHUNK_BYTES = 1 << 20


def max_bytes() -> int:
    """The unpacked-size limit: EASYNET_MAX_ZIP_BYTES, read on every call, else MAX_BYTES."""
    return env_int(MAX_BYTES_ENV, MAX_BYTES, "a number of bytes")


def max_entries() -> int:
    """The entry-count limit: EASYNET_MAX_ZIP_ENTRIES, read on every call, else MAX_ENTRIES."""
    return env_int(MAX_ENTRIES_ENV, MAX_ENTRIES, "a number of entries")


def declared_entries(path: Path) -> int | None:
    """The entry count in a zip's end-of-central-directory record, read before the directory is parsed."""
    try:
        with open(path, "rb") as f:
            record = zipfile._EndRecData(f)  # the stdlib's own reader of that record
    except (OSError, AttributeError):
        return None
    return int(record[zipfile._ECD_ENTRIES_TOTAL]) if record else None


def extract_zip(
    path: str | Path,
    out: str | Path,
    expected: str,
    too_many: str,
    check_names: Callable[[list[str]], None] | None = None,
) -> Path:
    """Unpack the zip at `path` into the new folder `out` and return `out`.

    Args:
        path: the zip.
        out: the folder to create and fill; removed again if extraction stops.
        expected: what the zip should hold, for the sentences "... is not a zip file; expected a .zip of {expected}"
            and "... holds no files; expected {expected}".
        too_many: the advice after the entry-count refusal ("zip one category of images").
        check_names: called with the member file names before anything is written; raises to refuse the zip.
    """
    path, out = Path(path), Path(out)
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path.name} is not a zip file; expected a .zip of {expected}")
    entry_limit = max_entries()
    entries = declared_entries(path)
    if entries is not None and entries > entry_limit:
        raise InputError(
            f"{path.name} holds {entries} entries, more than the limit of {entry_limit} "
            f"(set {MAX_ENTRIES_ENV} to raise it); {too_many}"
        )
    with zipfile.ZipFile(path) as zf:
        if len(zf.infolist()) > entry_limit:  # a directory that disagrees with its end record
            raise InputError(
                f"{path.name} holds {len(zf.infolist())} entries, more than the limit of {entry_limit} "
                f"(set {MAX_ENTRIES_ENV} to raise it); {too_many}"
            )
        members = [m for m in zf.infolist() if not m.is_dir()]
        if not members:
            raise InputError(f"{path.name} holds no files; expected {expected}")
        for m in members:
            _check_member(path.name, m)
        byte_limit = max_bytes()
        total = sum(m.file_size for m in members)
        if total > byte_limit:
            raise InputError(
                f"{path.name} unpacks to {total} bytes, more than the limit of {byte_limit} bytes "
                f"(set {MAX_BYTES_ENV} to raise it)"
            )
        if check_names is not None:
            check_names([m.filename for m in members])
        if out.exists():
            raise FileExistsError(f"{out} exists; extract_zip writes into a new folder")
        try:
            _write(zf, members, out, byte_limit, path.name)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    return out


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


def _write(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], out: Path, limit: int, zip_name: str) -> None:
    """Write the members under `out`, counting the bytes really written against `limit`."""
    out.mkdir(parents=True)
    base = out.resolve()
    written = 0
    for m in members:
        target = (base / m.filename).resolve()
        if base not in target.parents:
            raise InputError(
                f"{zip_name} holds a path that leaves its folder ({m.filename}); zips must use plain relative paths"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(m) as src, open(target, "wb") as dst:
            while chunk := src.read(CHUNK_BYTES):
                written += len(chunk)
                if written > limit:
                    raise InputError(
                        f"{zip_name} unpacks to more than the limit of {limit} bytes (set {MAX_BYTES_ENV} to raise it)"
                    )
                dst.write(chunk)
