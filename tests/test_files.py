"""files.py: atomic writes. A reader sees the old file or the new one, never half
of one, and a failed write leaves nothing behind (real failures: a full tmpfs,
a target that cannot be replaced, an interrupt in the middle of writing)."""

from __future__ import annotations

import errno
import os
import stat

import pytest
import real_parts

import newsletter.files as files
from newsletter.files import write_atomic, write_if_changed


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_atomic_creates_folders_and_writes_exact_bytes(tmp_path):
    target = tmp_path / "a" / "b" / "논문.html"
    data = "<p>한국어</p>\r\n".encode() + bytes(range(256))
    write_atomic(target, data)
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # readable by a web server
    assert leftovers(target.parent) == []
    write_atomic(target, b"")
    assert target.read_bytes() == b""


def test_a_full_disk_leaves_the_old_file_and_no_temp_file(tmp_path):
    with real_parts.small_filesystem(tmp_path / "small", size_kb=64) as small:
        target = small / "index.html"
        write_atomic(target, b"old page")
        with pytest.raises(OSError) as full:
            write_atomic(target, b"x" * (256 * 1024))
        assert full.value.errno == 28  # ENOSPC, from the real file system
        assert target.read_bytes() == b"old page"
        assert leftovers(small) == []
        # The space is given back: a write that fits still works.
        write_atomic(target, b"new page")
        assert target.read_bytes() == b"new page"


def test_a_full_disk_with_no_old_file_leaves_nothing(tmp_path):
    with real_parts.small_filesystem(tmp_path / "small", size_kb=64) as small:
        with pytest.raises(OSError):
            write_atomic(small / "feed.xml", b"x" * (256 * 1024))
        assert list(small.iterdir()) == []


def test_a_target_that_cannot_be_replaced_leaves_no_temp_file(tmp_path):
    (tmp_path / "index.html").mkdir()  # a folder where the file should go
    with pytest.raises(OSError) as refused:  # errors.FileError: an OSError that says which file
        write_atomic(tmp_path / "index.html", b"page")
    assert refused.value.errno == errno.EISDIR
    assert str(refused.value).startswith(f"cannot write {tmp_path / 'index.html'}: Is a directory")
    assert leftovers(tmp_path) == [] and (tmp_path / "index.html").is_dir()


def test_an_interrupt_while_writing_leaves_the_old_file(tmp_path, monkeypatch):
    # Ctrl-C lands after half the bytes reached the temp file.
    target = tmp_path / "atom.xml"
    target.write_bytes(b"old feed")
    real_fsync = os.fsync

    def interrupted(fd):
        assert os.fstat(fd).st_size == 6  # the new bytes are in the temp file...
        raise KeyboardInterrupt  # ...when the signal arrives

    monkeypatch.setattr(files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"new...")
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert target.read_bytes() == b"old feed"
    assert leftovers(tmp_path) == []


def test_write_if_changed_writes_only_new_bytes(tmp_path):
    target = tmp_path / "page.html"
    assert write_if_changed(target, b"one") is True
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    assert write_if_changed(target, b"one") is False
    assert target.stat().st_mtime_ns == 1_000_000_000  # untouched
    assert write_if_changed(target, b"two") is True
    assert target.read_bytes() == b"two"
    assert leftovers(tmp_path) == []
