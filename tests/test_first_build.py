"""A site's first build (its public folder not there yet): written whole in a
staging folder beside it (`.public.building-PID`) and renamed into place, so
nobody ever sees half a site; whatever goes wrong leaves neither a public
folder nor a staging folder (files.Staging, site.writer.Writer)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import real_parts

from newsletter import files
from newsletter.outputs import Output
from newsletter.site import write_site
from newsletter.site.writer import Writer


def tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Each file under folder: its bytes and its mode."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def outputs(count: int, pure: bool = False) -> list[Output]:
    return [
        Output(f"{i}/index.html", "k", lambda i=i: f"<p>논문 {i}</p>".encode(), pure=pure)
        for i in range(count)
    ]


def test_a_first_build_appears_whole_when_the_flush_renames_it(tmp_path, monkeypatch):
    public = tmp_path / "out" / "public"  # its parent is not there either
    seen = {}
    commit = files.Staging.commit

    def watched(self, temps):
        seen["public"] = public.exists()
        seen["staged"] = sorted(
            p.relative_to(self.path).as_posix() for p in self.path.rglob("*.html")
        )
        seen["temps"] = [p for p in self.path.rglob("*") if p.name.endswith(".tmp")]
        commit(self, temps)

    monkeypatch.setattr(files.Staging, "commit", watched)
    writer = Writer(public, False, {})
    writer.add(outputs(3))
    writer.add(outputs(5, pure=True)[3:])
    writer.flush()
    names = [f"{i}/index.html" for i in range(5)]
    assert seen == {"public": False, "staged": names, "temps": []}
    assert sorted(tree(public)) == names
    assert tree(public)["4/index.html"] == ("<p>논문 4</p>".encode(), 0o644)
    assert sorted(p.name for p in public.parent.iterdir()) == ["public"]  # no staging left
    # Later flushes of the same build (the search index's) write in place.
    writer.add([Output("late.txt", "k", lambda: b"late")])
    writer.flush()
    assert (public / "late.txt").read_bytes() == b"late"


def test_a_first_build_is_the_same_as_a_build_into_an_empty_folder(
    tmp_path, site_config, site_digests
):
    write_site(site_config, site_digests)  # site_config's public folder is not there yet
    other = tmp_path / "empty"
    other.mkdir()
    config = site_config.model_copy(
        update={"paths": site_config.paths.model_copy(update={"public": other})}
    )
    write_site(config, site_digests)
    assert tree(site_config.paths.public) == tree(other)
    assert [p.name for p in site_config.paths.public.parent.glob(".*building*")] == []


def test_a_failed_first_build_leaves_no_public_folder_and_no_staging_folder(tmp_path):
    public = tmp_path / "public"
    writer = Writer(public, False, {})

    def broken() -> bytes:
        raise RuntimeError("a template failed")

    writer.add([*outputs(3, pure=True), Output("x/index.html", "k", broken, pure=True)])
    with pytest.raises(RuntimeError, match="a template failed"):
        writer.flush()
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_in_a_first_build_leaves_nothing(tmp_path, site_config, site_digests):
    """A real tmpfs too small for the site: one error naming a file, ENOSPC,
    and the file system as it was (empty)."""
    with real_parts.small_filesystem(tmp_path / "small", size_kb=256) as small:
        config = site_config.model_copy(
            update={
                "paths": site_config.paths.model_copy(update={"public": small / "public"}),
                "site": site_config.site.model_copy(update={"search": False}),
            }
        )
        with pytest.raises(OSError) as full:
            write_site(config, site_digests)
        assert full.value.errno == 28
        assert str(small) in str(full.value)
        assert list(small.iterdir()) == []


def test_a_staging_folder_nobody_holds_is_swept_and_a_held_one_kept(tmp_path):
    """A build holds an flock on its staging folder while it runs (the kernel
    lets go when it ends, even by kill -9): the next build deletes folders
    nobody holds, whatever process id their names carry, and leaves a held one
    (a build still running, maybe in another container with the same ids)."""
    left = tmp_path / f".public.building-{os.getpid()}-dead"
    busy = tmp_path / ".public.building-1-running"
    other = tmp_path / ".other.building-1-x"  # another folder's: not ours to judge
    for folder in (left, busy, other):
        (folder / "ko").mkdir(parents=True)
        (folder / "ko" / "index.html").write_bytes(b"half")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY);"
            " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(busy),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        writer = Writer(tmp_path / "public", False, {})
        writer.add(outputs(1))
        writer.flush()
        assert not left.exists()
        assert busy.exists() and other.exists()
        assert tree(tmp_path / "public") == {"0/index.html": ("<p>논문 0</p>".encode(), 0o644)}
    finally:
        holder.communicate("")
    # Once its build is gone, any build sweeps it, a first one or not.
    Writer(tmp_path / "public", False, {}).flush()
    assert not busy.exists() and other.exists()


def test_a_public_folder_made_while_a_first_build_ran_gets_its_files_one_by_one(tmp_path):
    """Another build made the folder meanwhile: the rename cannot replace it,
    so the staged files are renamed into it, each replacing its own."""
    public = tmp_path / "public"
    writer = Writer(public, False, {})
    writer.add(outputs(2))
    (public / "0").mkdir(parents=True)
    (public / "0" / "index.html").write_bytes(b"the other build's")
    (public / "theirs.txt").write_bytes(b"kept")
    writer.flush()
    assert (public / "0" / "index.html").read_bytes() == "<p>논문 0</p>".encode()
    assert (public / "1" / "index.html").read_bytes() == "<p>논문 1</p>".encode()
    assert (public / "theirs.txt").read_bytes() == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["public"]


def test_a_dangling_symlink_is_not_replaced_by_a_staging_folder(tmp_path):
    """public -> a folder not made yet: the link stays, the files go through it."""
    target = tmp_path / "elsewhere"
    public = tmp_path / "public"
    public.symlink_to(target, target_is_directory=True)
    assert files.Staging.start(public) is None
    target.mkdir()
    writer = Writer(public, False, {})
    writer.add(outputs(1))
    writer.flush()
    assert public.is_symlink() and (target / "0" / "index.html").is_file()


def test_a_dry_run_makes_no_staging_folder(tmp_path):
    writer = Writer(tmp_path / "public", True, {})
    writer.add(outputs(2))
    writer.flush()
    assert writer.written == ["0/index.html", "1/index.html"]
    assert list(tmp_path.iterdir()) == []


def test_the_staging_folder_is_named_for_its_public_folder_and_process(tmp_path):
    staging = files.Staging.start(tmp_path / "site")
    assert staging is not None
    assert staging.path.name.startswith(f".site.building-{os.getpid()}-")
    again = files.Staging.start(tmp_path / "site")  # a second build at once
    assert again is not None and again.path != staging.path and staging.path.exists()
    staging.discard()
    again.discard()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_first_build_files_are_0644_whatever_the_umask(tmp_path, umask):
    """Files of a first build are created 0644 and, where the umask takes
    bits of that away, set to it (a web server reads them as another user)."""
    old = os.umask(umask)
    try:
        writer = Writer(tmp_path / "public", False, {})
        writer.add(outputs(2))
        writer.flush()
    finally:
        os.umask(old)
    modes = {mode for _data, mode in tree(tmp_path / "public").values()}
    assert modes == {0o644}
