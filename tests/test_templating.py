"""The templates' environment: `{{ value }}` goes through templating.html_text,
which must write exactly what markupsafe.escape would."""

from __future__ import annotations

import datetime as dt

import pytest
from markupsafe import Markup, escape

from newsletter import templating


class Shown:
    """Not a str: written as str() of it, escaped."""

    def __str__(self) -> str:
        return "<b>\"모델\" & 'x'</b>"


class Safe:
    """Has __html__: written as it says, unescaped."""

    def __html__(self) -> str:
        return "<i>안전</i>"


class Text(str):
    """A str subclass without __html__: escaped like a str."""


VALUES = [
    "",
    "plain",
    "<script>alert('x')</script> & \"q\"",
    "모델을 학습 <b>",
    "https://arxiv.org/abs/2501.00001?a=1&b=2",
    "\x00\x01 control",
    Markup("<em>kept</em>"),
    Text("<sub>"),
    Shown(),
    Safe(),
    0,
    3.5,
    None,
    True,
    dt.date(2025, 4, 4),
    ["<a>", 1],
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_html_text_writes_what_markupsafe_escape_writes(value):
    assert templating.html_text(value) == str(escape(value))
    assert type(templating.html_text(value)) is str


def test_compiled_templates_write_values_through_html_text_and_keep_autoescape_blocks():
    env = templating.environment()
    source = "{{ a }}|{% autoescape false %}{{ a }}{% endautoescape %}|{{ b }}"
    code = env.compile(source, raw=True)
    assert "environment.html_text(" in code
    template = env.from_string(source)
    assert template.render(a="<모델>", b=Markup("<br>")) == "&lt;모델&gt;|<모델>|<br>"


def test_an_environment_without_autoescape_writes_values_as_they_are():
    env = templating._environment_class()(autoescape=False)
    code = env.compile("{{ a }}", raw=True)
    assert "html_text" not in code
    assert env.from_string("{{ a }}").render(a="<b>") == "<b>"


def test_cached_code_of_another_code_generator_is_compiled_again(tmp_path, monkeypatch):
    """The bytecode cache keys code by its template's source and the code
    generator: code an earlier version compiled (calling markupsafe.escape, or
    something this version lacks) is never run by this one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    templating._environment.cache_clear()
    try:
        templating.environment().get_template("site/_tagged.html")
        [entry] = [
            p
            for p in (tmp_path / "newsletter" / "templates").glob("*.cache")
            if p.read_bytes() and b"_tagged" in p.read_bytes()
        ]
        first = entry.read_bytes()
        monkeypatch.setattr(templating, "_CODE_GENERATOR", "another")
        templating._environment.cache_clear()
        templating.environment().get_template("site/_tagged.html")
        assert entry.read_bytes() != first  # compiled again, and stored
    finally:
        templating._environment.cache_clear()


def test_template_globals_are_the_environments_and_its_own():
    """Templates' globals are a plain dict (make_globals): the environment's
    (lang, edition_name...) with a template's own on top, which stay its own."""
    env = templating.environment()
    own = env.from_string("{{ lang('en', 'ko') }}|{{ x }}", globals={"x": "<하나>"})
    other = env.from_string("{{ x is defined }}")
    assert type(own.globals) is dict
    assert own.render() == ' lang="en"|&lt;하나&gt;'
    assert other.render() == "False"
    assert "x" not in env.globals


@pytest.mark.parametrize("edition", ["ko", "en", "both"])
def test_the_papers_template_with_its_include_written_in_place_renders_the_same(edition):
    """templating.PAPERS_INLINE (site/_papers.html with site/_paper.html
    written in place of its include) gives the same bytes as the two
    templates; the built-in _papers.html still has the include it replaces."""
    from newsletter import render
    from newsletter.model import Digest, Entry

    env = templating.environment()
    source = (templating.builtin_templates() / "site" / "_papers.html").read_text("utf-8")
    assert templating._PAPER_INCLUDE in source
    entries = tuple(
        Entry(
            f"Paper <{n}> & 모델",
            ("Kim", "Lee"),
            "Abstract https://arxiv.org/abs/2501.00001 here." if n else "",
            f"모델을 {n}번 학습 https://example.org/{n}한국" if n != 1 else "",
            f"Comment {n}." if n != 2 else "",
            ("rl", "추론") if n else (),
        )
        for n in range(4)
    )
    digest = Digest(dt.date(2025, 4, 4), entries, "2025-04-04.txt")
    context = {
        "papers": render.paper_views(digest, edition),
        "page_lang": "en" if edition == "en" else "ko",
        "edition": edition,
        "edition_names": render.EDITION_NAMES,
        "labels": render.LABELS["en" if edition == "en" else "ko"],
        "index_file": "index.html",
        "tag_prefix": "../tags/",
    }
    inline = env.get_template(templating.PAPERS_INLINE).render(**context)
    assert inline == env.get_template("site/_papers.html").render(**context)
    assert inline.count("<article") == 4
