"""Jinja2 environments for pages, feeds and emails: the user's template folder
(paths.templates) first, then the built-in one; autoescape on, undefined
values an error; the template functions and filters of newsletter.render;
compiled templates kept in Jinja2's bytecode cache.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.render import counted, edition_name, format_date, lang_attribute, wrap_lines
from newsletter.text import linkify

if TYPE_CHECKING:
    import jinja2

    from newsletter.config import Config


@functools.cache
def builtin_templates() -> Path:
    """templates/ as installed (inside the package) or in a source checkout."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


@functools.cache
def _environment(search_path: tuple[Path, ...]) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(path) for path in search_path]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        bytecode_cache=_bytecode_cache(),
    )
    env.globals["lang"] = lang_attribute
    # The same as a filter, `code|lang(page_lang)`: Jinja calls a filter
    # directly, a global through Context.call (5 % of a site build).
    env.filters["lang"] = lang_attribute
    env.globals["edition_name"] = edition_name
    env.filters["linkify"] = linkify
    env.filters["counted"] = counted
    env.filters["date_long"] = format_date
    env.filters["wrap"] = wrap_lines
    return env


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Jinja2's own cache of compiled templates (jinja2.FileSystemBytecodeCache:
    each entry is checked against its template's source), in this user's cache
    folder, $XDG_CACHE_HOME/newsletter/templates (default ~/.cache/...; a
    relative $XDG_CACHE_HOME is ignored, as the XDG Base Directory spec says):
    compiling the site's templates took 0.09 s of every publish, and of every
    render worker. The cache's files are code, so the folder must be a real
    folder of this user's that nobody else can write (the checks Jinja2 makes
    of its own default folder); otherwise there is no cache. Best effort: a
    damaged cache file is compiled again, one that cannot be written is
    skipped."""
    import contextlib
    import os
    import stat

    import jinja2

    class Cache(jinja2.FileSystemBytecodeCache):
        def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            try:
                super().load_bytecode(bucket)
            except Exception:  # a damaged file (pickle, marshal): compile again
                bucket.reset()

        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            with contextlib.suppress(OSError):
                super().dump_bytecode(bucket)

    try:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        home = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
        folder = home / "newsletter" / "templates"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(folder)
        if info.st_uid == os.geteuid() and stat.S_ISDIR(info.st_mode) and info.st_mode & 0o077:
            os.chmod(folder, 0o700)  # ours, made with a looser mode: tighten it
            info = os.lstat(folder)
        if (
            not stat.S_ISDIR(info.st_mode)  # a symlink is not (lstat)
            or info.st_uid != os.geteuid()
            or info.st_mode & 0o077
        ):
            return None
        return Cache(str(folder))
    except (OSError, RuntimeError):  # RuntimeError: no home folder
        return None


def environment(config: Config | None = None, *, version: str = "") -> jinja2.Environment:
    """Jinja2 environment: the user's template folder first, then the built-in one.

    version: a fingerprint of the template files (a site build's
    outputs.environment_key), or "" (the default) for an environment that
    checks each template's file for changes whenever it is used (a stat per
    use). With a version, the environment never looks at the files again once
    it has loaded a template: a build renders thousands of pages, and an edited
    template gives another version, so another environment.
    """
    search: list[Path] = []
    if config is not None and config.paths.templates is not None:
        search.append(config.paths.templates)
    search.append(builtin_templates())
    if version:
        return _frozen_environment(tuple(search), version)
    return _environment(tuple(search))


@functools.lru_cache(maxsize=4)
def _frozen_environment(search_path: tuple[Path, ...], version: str) -> jinja2.Environment:
    # A cache of its own (cache_size given): never a template the shared
    # environment loaded from an older file.
    return _environment(search_path).overlay(auto_reload=False, cache_size=400)
