"""easynet.archive: the one safe zip extractor (batch inspection and fine-tuning uploads both use it)."""

import zipfile
from pathlib import Path

import pytest

from easynet import archive
from easynet.errors import InputError


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _extract(path: Path, out: Path, **kwargs) -> Path:
    return archive.extract_zip(path, out, expected="things", too_many="zip fewer things", **kwargs)


def test_good_zip_is_written_under_out(tmp_path):
    out = _extract(_zip(tmp_path / "ok.zip", {"a/b.png": b"123", "c.txt": b"4"}), tmp_path / "out")
    assert (out / "a/b.png").read_bytes() == b"123" and (out / "c.txt").read_bytes() == b"4"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/abs.png", "z.zip holds an absolute path (/abs.png); zips must use relative paths"),
        ("C:/x.png", "z.zip holds an absolute path (C:/x.png); zips must use relative paths"),
        (
            "a/../../x.png",
            "z.zip holds a path with '..' (a/../../x.png), which could write outside its folder; zips must "
            "use plain relative paths",
        ),
    ],
)
def test_unsafe_names_are_refused_before_writing(tmp_path, name, message):
    with pytest.raises(InputError) as error:
        _extract(_zip(tmp_path / "z.zip", {"fine.png": b"x", name: b"x"}), tmp_path / "out")
    assert str(error.value) == message
    assert not (tmp_path / "out").exists()


def test_links_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(InputError, match=r"^z.zip holds a symbolic link \(link\); links are not accepted$"):
        _extract(tmp_path / "z.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_entries_are_counted_in_the_central_directory_and_the_walk_stops_at_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv(archive.MAX_ENTRIES_ENV, "3")
    path = _zip(tmp_path / "many.zip", {f"{i}.png": b"" for i in range(40)})
    assert archive.central_directory_entries(path, stop_after=100) == 40
    assert archive.central_directory_entries(path, stop_after=3) == 4  # stops one past the limit
    with pytest.raises(InputError) as error:
        _extract(path, tmp_path / "out")
    assert str(error.value) == (
        "many.zip holds more entries than the limit of 3 (set EASYNET_MAX_ZIP_ENTRIES to raise it); zip fewer things"
    )
    assert not (tmp_path / "out").exists()


def test_an_end_record_that_claims_one_entry_over_a_large_directory_is_refused_without_parsing_it(
    tmp_path, monkeypatch
):
    """The end record lies (1 entry); the stdlib would parse the whole directory first. The walk reads the truth."""
    import struct

    monkeypatch.setenv(archive.MAX_ENTRIES_ENV, "50")
    path = _zip(tmp_path / "liar.zip", {f"{i:06d}.png": b"" for i in range(5000)})
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8 : end + 12] = struct.pack("<HH", 1, 1)  # entries on this disk, entries in all
    path.write_bytes(bytes(data))
    parsed = []
    monkeypatch.setattr(archive.zipfile, "ZipFile", lambda *a, **k: parsed.append(a) or pytest.fail("parsed"))
    with pytest.raises(InputError, match=r"^liar.zip holds more entries than the limit of 50 "):
        _extract(path, tmp_path / "out")
    assert parsed == [] and not (tmp_path / "out").exists()


def test_a_budget_bounds_the_zips_of_one_request_together(tmp_path, monkeypatch):
    monkeypatch.setenv(archive.MAX_BYTES_ENV, "20")
    budget = archive.Budget.default()
    first = _zip(tmp_path / "a.zip", {"a.bin": b"x" * 12})
    second = _zip(tmp_path / "b.zip", {"b.bin": b"y" * 12})
    _extract(first, tmp_path / "a", budget=budget)  # 12 of 20 bytes spent
    assert budget.bytes == 8 and budget.entries == archive.MAX_ENTRIES - 1
    with pytest.raises(InputError) as error:
        _extract(second, tmp_path / "b", budget=budget)
    assert str(error.value) == (
        "b.zip unpacks to 12 bytes, more than the space left for this request's zips of 8 bytes "
        "(set EASYNET_MAX_ZIP_BYTES to raise it)"
    )
    assert not (tmp_path / "b").exists()


def test_a_file_and_a_folder_of_one_name_are_one_sentence(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as zf:
        zf.writestr("a", b"file")
        zf.writestr("a/b.png", b"in a folder")
    with pytest.raises(InputError, match=r"^z.zip holds a/b.png where a file and a folder share one name"):
        _extract(tmp_path / "z.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_declared_size_over_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(archive.MAX_BYTES_ENV, "10")
    with pytest.raises(InputError) as error:
        _extract(_zip(tmp_path / "big.zip", {"a": b"x" * 6, "b": b"y" * 6}), tmp_path / "out")
    assert str(error.value) == (
        "big.zip unpacks to 12 bytes, more than the limit of 10 bytes (set EASYNET_MAX_ZIP_BYTES to raise it)"
    )


def test_bytes_really_written_are_counted_and_a_partial_extraction_is_removed(tmp_path, monkeypatch):
    real = archive._write  # a zip whose declared sizes pass but whose data does not: the writer's limit is 10
    monkeypatch.setattr(archive, "_write", lambda zf, members, out, limit, name: real(zf, members, out, 10, name))
    path = _zip(tmp_path / "liar.zip", {"first.bin": b"x" * 8, "second.bin": b"y" * 8})
    with pytest.raises(InputError, match=r"^liar.zip unpacks to more than the limit of 10 bytes"):
        _extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # first.bin was written, then removed with its folder


def test_name_hook_runs_before_anything_is_written(tmp_path):
    seen = []

    def refuse(names):
        seen.append(sorted(names))
        assert not (tmp_path / "out").exists()
        raise InputError("no thanks")

    with pytest.raises(InputError, match="no thanks"):
        _extract(_zip(tmp_path / "z.zip", {"b.png": b"x", "a.png": b"x"}), tmp_path / "out", check_names=refuse)
    assert seen == [["a.png", "b.png"]] and not (tmp_path / "out").exists()


def test_not_a_zip_and_an_empty_zip(tmp_path):
    (tmp_path / "n.zip").write_text("not a zip")
    with pytest.raises(InputError, match=r"^n.zip is not a zip file; expected a .zip of things$"):
        _extract(tmp_path / "n.zip", tmp_path / "out")
    with pytest.raises(InputError, match=r"^e.zip holds no files; expected things$"):
        _extract(_zip(tmp_path / "e.zip", {}), tmp_path / "out")


def test_batch_zips_get_the_entry_limit_too(tmp_path, monkeypatch):
    from easynet.batch import collect

    monkeypatch.setenv(archive.MAX_ENTRIES_ENV, "2")
    path = _zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(3)})
    with pytest.raises(InputError, match=r"^many.zip holds more entries than the limit of 2 "):
        collect([path], scratch=tmp_path / "s")
    assert not (tmp_path / "s").exists()  # refused before anything was written
