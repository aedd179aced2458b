"""Jinja2 environments for pages, feeds and emails: the user's template folder
(paths.templates) first, then the built-in one; autoescape on, undefined
values an error; the template functions and filters of newsletter.render;
compiled templates kept in Jinja2's bytecode cache; `{{ value }}` written
through html_text (markupsafe's escaping, without a Markup object per value).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def html_text(value: object) -> str:
    """What `{{ value }}` writes in an autoescaping template: the same text as
    markupsafe.escape(value) (`&`, `<`, `>`, `"` and `'` escaped; a value with
    __html__ is already safe), as a plain str. Jinja2 makes a Markup object of
    every value it writes (two Python calls each): a site build writes about
    240 values a page, and that was a tenth of its time. Used by the code of
    compiled templates (_environment_class)."""
    if type(value) is str:
        return _escape_text(value)
    html = getattr(value, "__html__", None)
    if html is not None:
        return str(html())
    return _escape_text(str(value))


def _text_escaper() -> Callable[[str], str]:
    """markupsafe's own escaping of a str (its C speedup, else its Python
    version, both MarkupSafe 3's `_escape_inner`), or markupsafe.escape made a
    str where a version lacks it. tests/test_archive.py checks html_text
    against markupsafe.escape."""
    try:
        from markupsafe._speedups import _escape_inner

        return _escape_inner
    except ImportError:
        pass
    try:
        from markupsafe._native import _escape_inner

        return _escape_inner
    except ImportError:
        from markupsafe import escape

        return lambda text: str(escape(text))


_escape_text = _text_escaper()


# Changes with what _environment_class's code generator writes: the bytecode
# cache keeps code of one generator apart from another's.
_CODE_GENERATOR = "html_text-1"


@functools.cache
def _environment_class() -> type[jinja2.Environment]:
    """jinja2.Environment whose compiled templates write each `{{ value }}`
    through html_text instead of markupsafe.escape (its code generator is
    Jinja2's documented `code_generator_class`), and whose templates' globals
    are plain dicts (make_globals). The same text: only where
    autoescape is on and fixed (not a `{% autoescape %}` block's choice) and
    no `finalize` is set; everything else is Jinja2's own code."""
    import jinja2
    from jinja2.compiler import CodeGenerator

    class Generator(CodeGenerator):
        def _output_child_pre(self, node: Any, frame: Any, finalize: Any) -> None:
            # `environment` is a local of every compiled render function.
            eval_ctx = frame.eval_ctx
            if eval_ctx.autoescape and not eval_ctx.volatile and finalize.src is None:
                self.write("environment.html_text(")
            else:
                super()._output_child_pre(node, frame, finalize)

    class Environment(jinja2.Environment):
        code_generator_class = Generator
        html_text = staticmethod(html_text)

        def make_globals(self, d: Any) -> Any:
            # A plain dict, not Jinja2's ChainMap over the environment's
            # globals: each render copies its template's globals, and each
            # import compares their keys, which a ChainMap does in Python (5 %
            # of a site build). Our globals are all set before any template
            # loads (Jinja2 asks that they be).
            return {**self.globals, **(d or {})}

    return Environment


# Two built-in templates as one: site/_papers.html with its include of
# site/_paper.html (once per paper) written in place. Issue and weekly pages
# render it when neither is overridden (pages.papers_html): an include made a
# context of its own for every paper, a third of rendering an issue's papers.
PAPERS_INLINE = "newsletter:site/_papers.html+_paper.html"
_PAPER_INCLUDE = '{% include "site/_paper.html" %}\n'


def _inline_papers(name: str) -> tuple[str, None, Callable[[], bool]] | None:
    """The source of PAPERS_INLINE (jinja2.FunctionLoader); None for any other name."""
    if name != PAPERS_INLINE:
        return None
    folder = builtin_templates() / "site"
    files = [folder / "_papers.html", folder / "_paper.html"]
    papers, paper = (path.read_text(encoding="utf-8") for path in files)
    loaded = [path.stat().st_mtime_ns for path in files]

    def uptodate() -> bool:  # as FileSystemLoader's: both files as they were
        try:
            return [path.stat().st_mtime_ns for path in files] == loaded
        except OSError:
            return False

    return papers.replace(_PAPER_INCLUDE, paper, 1), None, uptodate


@functools.cache
def _environment(search_path: tuple[Path, ...]) -> jinja2.Environment:
    import jinja2

    env = _environment_class()(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.FunctionLoader(_inline_papers),
                jinja2.FileSystemLoader([str(path) for path in search_path]),
            ]
        ),
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

        def get_source_checksum(self, source: str) -> str:
            # Code compiled by another code generator (an earlier version's,
            # without html_text) is not used: it would not be this code.
            return super().get_source_checksum(f"{source}\x00{_CODE_GENERATOR}")

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
    # environment loaded from an older file. Unbounded (-1: a plain dict, as
    # it holds a version's few templates): Jinja2's LRU cache takes a lock and
    # reorders itself at each lookup, and pages look templates up at every
    # include and import (2 % of a site build).
    return _environment(search_path).overlay(auto_reload=False, cache_size=-1)
