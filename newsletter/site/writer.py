"""Writing a build's files: render what changed, write in batches, delete what is stale.

Pages (pure outputs) are rendered in forked worker processes when there are
many (one per usable core, at most 4): a page's rendering is pure Python, so
threads would only take turns. Workers start when the build asks
(Writer.render_ahead: the issue and weekly pages render while the build plans
the lists and writes the feeds) or at flush. Every file is written as in
files.write_many (temp files, one flush to disk, renames), with one flush for
a whole build: the workers leave their temp files, and Writer.flush flushes
them all and renames them, pages first (so no list or feed is renamed into
place before the pages it links to).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from newsletter.errors import NewsletterError, file_error
from newsletter.files import (
    Staging,
    Temps,
    commit_temps,
    discard_temps,
    flush_folder,
    sweep_temps,
    write_temps,
)
from newsletter.outputs import Output


class Writer:
    """Renders planned outputs whose key changed, writes those whose bytes
    changed (or, dry, only compares), and keeps the tally."""

    BATCH = 2000  # pending files (bytes in memory) per batch of temp files

    def __init__(self, public: Path, dry_run: bool, known: dict[str, str]) -> None:
        self.public = public
        self.dry_run = dry_run
        # A public folder that is not there yet is written whole beside it and
        # renamed into place by the first flush (files.Staging).
        try:
            self._staging = None if dry_run else Staging.start(public)
        except OSError as exc:
            raise file_error(exc) from exc
        self.root = str(public if self._staging is None else self._staging.path)
        self.known = known
        self.keys: dict[str, str] = {}
        self.written: list[str] = []
        self.deleted: list[str] = []
        self.unchanged = 0
        self._pending: list[tuple[Path, bytes]] = []
        self._temps: Temps = []  # written, renamed by flush
        self._deferred: list[Output] = []
        self._rendering: list[_Rendering] = []  # started by render_ahead

    def add(self, outputs: Iterable[Output]) -> None:
        for out in outputs:
            if out.path in self.keys:
                continue
            known = self.known.get(out.path, "")
            if (
                known.startswith(f"{out.key}:")
                and _size(f"{self.root}/{out.path}") == known.partition(":")[2]
            ):
                self.keys[out.path] = known
                self.unchanged += 1
                continue
            self.keys[out.path] = ""  # rendered below
            if out.pure:
                self._deferred.append(out)
                continue
            self._tally(out, _render_one(out, self.root, self.dry_run, self._pending, self._fresh))
            if len(self._pending) >= self.BATCH:
                self._write_pending()

    def render_ahead(self) -> None:
        """Start rendering the pure outputs added so far (in worker processes
        when there are many), while the caller goes on planning; flush
        collects them."""
        jobs, self._deferred = self._deferred, []
        if jobs:
            self._rendering.append(_Rendering(jobs, self.root, self.dry_run, self._fresh))

    def flush(self) -> None:
        """Render the deferred pure outputs (in worker processes when there
        are many), write what is pending, and put every file in place: one
        flush to disk, then the renames, pages first. On an error no temp
        file is left and no file of this flush is replaced."""
        self.render_ahead()
        rendering, self._rendering = self._rendering, []
        try:
            for part in rendering:
                results, pages = part.collect()
                self._temps[:0] = pages
                for index, size, changed in results:
                    self._tally(part.jobs[index], (size, changed))
            self._write_pending()
            if self._staging is None:
                commit_temps(self._temps)
            else:
                self._staging.commit(self._temps)
                self._end_staging()
        except BaseException as exc:
            for part in rendering:
                part.discard()
            discard_temps(self._temps)
            self._discard_staging()
            if isinstance(exc, OSError) and not isinstance(exc, NewsletterError):
                raise file_error(exc) from exc  # one line naming the file, a hint
            raise
        finally:
            self._temps = []

    def discard(self) -> None:
        """Give up this writer's work (the build failed before flush): wait for
        its workers and delete every temp file written so far."""
        rendering, self._rendering = self._rendering, []
        for part in rendering:
            part.discard()
        discard_temps(self._temps)
        self._discard_staging()
        self._temps, self._pending, self._deferred = [], [], []

    @property
    def _fresh(self) -> bool:
        """Whether files go to a staging folder (write_temps' fresh)."""
        return self._staging is not None

    def _discard_staging(self) -> None:
        if self._staging is not None:
            self._staging.discard()
            self._end_staging()

    def _end_staging(self) -> None:
        """Write in public itself from now on (its staging folder is renamed or gone)."""
        self._staging, self.root = None, str(self.public)

    def _write_pending(self) -> None:
        """Write the pending files' temp files (renamed by flush)."""
        if self._pending:
            self._temps += write_temps(self._pending, fresh=self._fresh)
            self._pending = []

    def _tally(self, out: Output, result: tuple[int, bool]) -> None:
        size, changed = result
        self.keys[out.path] = f"{out.key}:{size}"
        if changed:
            self.written.append(out.path)
        else:
            self.unchanged += 1

    def write_bundles(self, files: dict[str, bytes], folders: list[str]) -> None:
        """Write search bundles (paths relative to public/), in three steps so a
        reader never loads an entry file whose index is not there yet: the
        files named by their content's hash (Pagefind's index/, fragment/,
        filter/, *.pf_meta: present means identical, never rewritten), the
        scripts, then pagefind-entry.json. Then delete what the bundles no
        longer hold."""
        entry = sorted(p for p in files if p.endswith("pagefind-entry.json"))
        hashed = sorted(p for p in files if _content_named(p))
        scripts = sorted(set(files) - set(entry) - set(hashed))
        for step, compare in ((hashed, False), (scripts, True), (entry, True)):
            for path in step:
                target = self.public / path
                if (compare and _same(target, files[path])) or (not compare and target.is_file()):
                    self.unchanged += 1
                    continue
                self.written.append(path)
                if not self.dry_run:
                    self._pending.append((target, files[path]))
            self.flush()
        for folder in folders:
            root = self.public / folder
            for path in sorted(root.rglob("*")) if root.is_dir() else []:
                relative = path.relative_to(self.public).as_posix()
                if path.is_file() and relative not in files:
                    self.deleted.append(relative)
                    if not self.dry_run:
                        path.unlink()

    def drop_folders(self, folders: list[str]) -> None:
        """Delete whole search bundles (search turned off, edition removed)."""
        import shutil

        for folder in folders:
            root = self.public / folder
            if root.is_dir():
                self.deleted.append(folder)
                if not self.dry_run:
                    shutil.rmtree(root)
                    remove_empty_parents(root.parent, self.public)

    def delete(self, stale: list[str]) -> list[str]:
        """Delete files we generated before and not now, then the folders they emptied."""
        for relative in stale:
            path = self.public / relative
            if not path.is_file() or path.is_symlink():
                continue
            self.deleted.append(relative)
            if not self.dry_run:
                path.unlink()
                remove_empty_parents(path.parent, self.public)
        return self.deleted


def _render_one(
    out: Output, root: str, dry_run: bool, pending: list[tuple[Path, bytes]], fresh: bool
) -> tuple[int, bool]:
    """Render one output; queue it for writing if its bytes changed (fresh:
    `root` is a new folder, there is nothing to compare): (size, changed)."""
    data = out.render()
    path = Path(root) / out.path
    if not fresh and _same(path, data):
        return len(data), False
    if not dry_run:
        pending.append((path, data))
    return len(data), True


# Outputs for worker processes: set before they fork, read by _render_share.
_JOBS: list[Output] = []
PARALLEL_MIN = 200  # fewer pages than this render in the build's own process
# A worker writes its pages' files every this many pages: the memory that held
# them is used again for the next ones (new memory costs a page fault per 4 KiB).
_WRITE_EVERY = 100


Share = tuple[list[tuple[int, int, bool]], Temps, Exception | None]


class _Task(NamedTuple):
    """A share of the jobs to render (indexes into _JOBS), in a forked worker
    or not, with the folder to write in and whether it is a fresh one
    (Writer's staging folder: nothing to compare, no temp files)."""

    indexes: list[int]
    forked: bool
    root: str
    dry_run: bool
    fresh: bool


class _Worker(NamedTuple):
    """A worker process, the reading end of the pipe it reports on, and its share."""

    process: Any
    reader: Any
    share: list[int]


class _Rendering:
    """Jobs being rendered, their changed ones' temp files written (not yet
    flushed or renamed). Many jobs on a machine with several cores go to
    forked worker processes, started at once, one share each (a page's
    rendering is pure Python: threads would take turns); few render in this
    process when collected. Each worker sends its share's results back on a
    pipe: plain processes, not a multiprocessing.Pool, whose threads would
    make a later fork unsafe.

    A worker's temp files are its own until it has sent its share, then this
    process's: a worker that is stopped (discard: SIGTERM) or cannot send
    deletes its own; one that dies without a word (SIGKILL) has its share's
    temp files swept (`_sweep`). Workers ignore SIGINT: Ctrl-C reaches the
    whole process group, and this process decides."""

    def __init__(self, jobs: list[Output], root: str, dry_run: bool, fresh: bool) -> None:
        global _JOBS
        self.jobs, self.root, self.dry_run, self.fresh = jobs, root, dry_run, fresh
        self._workers: list[_Worker] = []  # not heard from yet
        self._collected: list[Share] = []
        workers = _workers(len(jobs))
        if workers == 1:
            return
        import multiprocessing

        context = multiprocessing.get_context("fork")
        _JOBS = jobs
        try:
            for share in _shares(jobs, workers):
                reader, writer = context.Pipe(duplex=False)
                # The child closes its copies of every reading end: when this
                # process closes one, the worker's send fails, never blocks.
                readers = [*(worker.reader for worker in self._workers), reader]
                process = context.Process(
                    target=_share_worker,
                    args=(_Task(share, True, root, dry_run, fresh), writer, readers),
                    daemon=True,
                )
                try:
                    process.start()
                finally:
                    writer.close()
                self._workers.append(_Worker(process, reader, share))
        except BaseException:
            self.discard()
            raise
        finally:
            _JOBS = []

    def collect(self) -> tuple[list[tuple[int, int, bool]], Temps]:
        """(index, size, changed) for each job, and the temp files written.
        On an error the temp files are deleted and the error raised."""
        jobs = self.jobs
        try:
            if self._workers:
                self._receive()
            else:
                _set_jobs(jobs)
                try:
                    task = _Task(_shares(jobs, 1)[0], False, self.root, self.dry_run, self.fresh)
                    self._collected.append(_render_share(task))
                finally:
                    _set_jobs([])
            shares = self._collected
            results = [result for share in shares for result in share[0]]
            for _results, _temps, error in shares:
                if error is not None:  # writing failed in a worker (a full disk)
                    raise error
            for index, _size, changed in results:
                if changed is None:  # failed in a worker: fail here, with its traceback
                    jobs[index].render()
        except BaseException:
            self.discard()
            raise
        return results, [temp for share in shares for temp in share[1]]

    def _receive(self) -> None:
        """Each worker's share, recorded as it comes (whichever is first).
        While others still render, the file system starts flushing what the
        finished ones wrote (files.flush_folder): the flush that must come
        before the renames then has less left to do."""
        from multiprocessing.connection import wait

        while self._workers:
            ready = wait([worker.reader for worker in self._workers])
            worker = next(w for w in self._workers if w.reader in ready)
            try:
                share = worker.reader.recv()
            except (EOFError, OSError):  # it died (killed, out of memory) before it answered
                worker.process.join()
                _sweep(self.root, [self.jobs[i].path for i in worker.share])
                error = NewsletterError(
                    f"a page-rendering worker process ended with code {worker.process.exitcode}",
                    hint="run the build again; if it recurs, check the machine's memory",
                )
                share = ([], [], error)
            self._workers.remove(worker)
            self._collected.append(share)
            worker.reader.close()
            worker.process.join()
            if self._workers and not self.dry_run:
                flush_folder(self.root)

    def discard(self) -> None:
        """Stop the workers not heard from, then delete every temp file of this
        rendering."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.process.terminate()  # it deletes its temp files and exits
        for worker in workers:
            worker.process.join()
            try:  # a worker that sent its share before it stopped handed its files over
                if worker.reader.poll(0):
                    self._collected.append(worker.reader.recv())
                    continue
            except (EOFError, OSError):
                pass
            finally:
                worker.reader.close()
            if worker.process.exitcode != 0:  # killed before it could clean up?
                _sweep(self.root, [self.jobs[i].path for i in worker.share])
        for _results, temps, _error in self._collected:
            discard_temps(temps)
        self._collected = []


def _set_jobs(jobs: list[Output]) -> None:
    global _JOBS
    _JOBS = jobs


def _share_worker(task: _Task, connection: Any, readers: list[Any]) -> None:
    """A worker process: render its share, send the result, exit. Until the
    result is sent its temp files are its own: on SIGTERM (its build stopping)
    or a failed send it deletes them."""
    import signal

    for reader in readers:
        reader.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    share: Share | None = None
    sent = False
    try:
        share = _render_share(task)
        connection.send(share)
        sent = True
    except BaseException:
        if share is not None and not sent:
            discard_temps(share[1])
        raise
    finally:
        connection.close()


def _stop(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _sweep(root: str, paths: list[str]) -> None:
    """Delete the temp files of these outputs (files.sweep_temps), left by a
    worker that died before it could say which."""
    sweep_temps(Path(root) / path for path in paths)


def _render_share(task: _Task) -> Share:
    indexes, forked, root, dry_run, fresh = task
    results: list[tuple[int, int, bool]] = []
    pending: list[tuple[Path, bytes]] = []
    temps: Temps = []
    try:
        for index in indexes:
            if forked:
                try:
                    size, changed = _render_one(_JOBS[index], root, dry_run, pending, fresh)
                except Exception:
                    results.append((index, 0, None))  # type: ignore[arg-type]
                    continue
            else:
                size, changed = _render_one(_JOBS[index], root, dry_run, pending, fresh)
            results.append((index, size, changed))
            if len(pending) >= _WRITE_EVERY:
                temps += write_temps(pending, fresh=fresh)
                pending = []
        temps += write_temps(pending, fresh=fresh)
    except Exception as exc:
        discard_temps(temps)
        if not forked:
            raise
        # The parent deletes the other shares' temp files, then raises this.
        return results, [], exc
    except BaseException:
        discard_temps(temps)
        raise
    return results, temps, None


def _shares(jobs: list[Output], workers: int) -> list[list[int]]:
    """The job indexes of each worker: outputs with a day in runs of
    neighbouring days, as many in each (issue pages, weekly pages and tag
    pages spread alike over the days, so each worker gets its part of each
    kind), then the others in turn."""
    dated = sorted(
        (i for i, job in enumerate(jobs) if job.day is not None), key=lambda i: jobs[i].day
    )
    shares: list[list[int]] = [[] for _ in range(workers)]
    for rank, index in enumerate(dated):
        shares[rank * workers // len(dated)].append(index)
    others = [i for i, job in enumerate(jobs) if job.day is None]
    for rank, index in enumerate(others):
        shares[rank % workers].append(index)
    return shares


def _workers(jobs: int) -> int:
    """Worker processes for `jobs` pages: one per usable core (at most 4) for a
    big build, where fork exists and no other thread could hold a lock."""
    import multiprocessing
    import threading

    if jobs < PARALLEL_MIN or threading.active_count() > 1:
        return 1
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 4))


def _content_named(path: str) -> bool:
    """Pagefind names these files by a hash of their content."""
    return any(f"/{part}/" in path for part in ("fragment", "index", "filter")) or path.endswith(
        ".pf_meta"
    )


def _size(path: str) -> str:
    """The file's size as the manifest records it ("" when it is missing): a
    file edited by hand is rendered again even though its key is the same."""
    try:
        return str(os.stat(path).st_size)
    except OSError:
        return ""


def _same(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except (FileNotFoundError, NotADirectoryError):
        return False


def remove_empty_parents(folder: Path, public: Path) -> None:
    root = public.resolve()
    while folder.resolve() != root and root in folder.resolve().parents:
        try:
            folder.rmdir()  # fails, as it should, when the folder is not empty
        except OSError:
            return
        folder = folder.parent
