"""Link values, the override file (`paths.links`) and the `papers.*` config keys."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers import SAMPLE_DIGESTS as SAMPLES
from helpers import run_cli

from newsletter.config import config_from_dict, load_config
from newsletter.errors import NewsletterError
from newsletter.papers.links import LinkStatus, Lookup, PaperLink, arxiv_id_from_url, parse_arxiv_id
from newsletter.papers.overrides import load_overrides, parse_overrides, parse_target

D = dt.date(2025, 4, 4)


@pytest.mark.parametrize(
    ("text", "ident"),
    [
        ("2504.02807", "2504.02807"),
        ("2504.02807v3", "2504.02807"),
        ("arXiv:2504.02807v1", "2504.02807"),
        (" 0704.0001 ", "0704.0001"),
        ("hep-th/9901001v2", "hep-th/9901001"),
        ("math.GT/0309136", "math.GT/0309136"),
        ("2504.0280", "2504.0280"),
        ("2504.028071", None),
        ("12345.6789", None),
        ("2504.02807 extra", None),
        ("MegaMath", None),
        ("", None),
    ],
)
def test_parse_arxiv_id(text, ident):
    assert parse_arxiv_id(text) == ident


@pytest.mark.parametrize(
    ("url", "ident"),
    [
        ("https://arxiv.org/abs/2504.02807", "2504.02807"),
        ("http://arxiv.org/abs/2504.02807v2", "2504.02807"),
        ("https://arxiv.org/pdf/2504.02807v1.pdf", "2504.02807"),
        ("https://export.arxiv.org/abs/hep-th/9901001", "hep-th/9901001"),
        ("https://arxiv.org/html/2504.02807v1#S2", "2504.02807"),
        ("https://example.org/abs/2504.02807", None),
        ("https://arxiv.org.evil.example/abs/2504.02807", None),
        ("https://arxiv.org/list/cs.CL/recent", None),
    ],
)
def test_arxiv_id_from_url(url, ident):
    assert arxiv_id_from_url(url) == ident


def test_paper_link_urls():
    link = PaperLink.for_arxiv("2504.02807v2", "cs.CL")
    assert link == PaperLink("https://arxiv.org/abs/2504.02807", "2504.02807", "cs.CL")
    assert link.abs_url == "https://arxiv.org/abs/2504.02807"
    assert link.pdf_url == "https://arxiv.org/pdf/2504.02807"
    assert link.hf_url == "https://huggingface.co/papers/2504.02807"
    old = PaperLink.for_arxiv("hep-th/9901001")
    assert (old.pdf_url, old.hf_url) == ("https://arxiv.org/pdf/hep-th/9901001", None)
    own = PaperLink.for_url("https://example.org/paper.pdf")
    assert (own.url, own.arxiv_id, own.pdf_url, own.hf_url) == (
        "https://example.org/paper.pdf",
        None,
        None,
        None,
    )
    assert PaperLink.for_url("https://arxiv.org/pdf/2504.02807v1") == PaperLink.for_arxiv(
        "2504.02807"
    )
    with pytest.raises(ValueError):
        PaperLink.for_arxiv("not an id")


def test_lookup_found_needs_a_link():
    with pytest.raises(ValueError):
        Lookup(LinkStatus.FOUND)
    with pytest.raises(ValueError):
        Lookup(LinkStatus.NOT_FOUND, link=PaperLink("https://example.org/"))


GOOD = """\
# Links set by hand.
titles:
  "MegaMath: Pushing the Limits of Open Math Corpora": 2504.02810
  "A paper that is not on arXiv": https://example.org/paper.pdf
  "On Vanishing Variance in Transformer Length Generalization": none
dates:
  2025-04-04:
    2: arXiv:2504.02263v2
    3: https://arxiv.org/pdf/2504.02495v1
  2025-05-19: {1: NONE}
"""


def test_override_file(tmp_path):
    path = tmp_path / "links.yaml"
    path.write_text(GOOD, encoding="utf-8")
    overrides = load_overrides(path)
    # Read as written: YAML alone would make 2504.02810 the float 2504.0281.
    mega = overrides.find(D, 1, "megamath -- pushing the limits of open math corpora")
    assert mega is not None and mega.link == PaperLink.for_arxiv("2504.02810")
    assert mega.where == f"{path}:3"
    assert overrides.find(D, 9, "A PAPER that is not on arXiv").link.url == (
        "https://example.org/paper.pdf"
    )
    vanishing = overrides.find(D, 4, "On Vanishing Variance in Transformer Length Generalization")
    assert vanishing.link is None
    assert vanishing.lookup() == Lookup.not_found(
        f"no link, as the override file says ({path}:5)", "override"
    )
    # Date and position win over title.
    assert overrides.find(D, 2, "MegaMath: Pushing the Limits of Open Math Corpora").link == (
        PaperLink.for_arxiv("2504.02263")
    )
    assert overrides.find(D, 3, "x").link == PaperLink.for_arxiv("2504.02495")
    assert overrides.find(dt.date(2025, 5, 19), 1, "x").link is None
    assert overrides.find(dt.date(2025, 5, 19), 2, "x") is None
    assert overrides.unused([(D, 1, "MegaMath: Pushing the Limits of Open Math Corpora")]) == [
        f"{path}:4",
        f"{path}:5",
        f"{path}:8",
        f"{path}:9",
        f"{path}:10",
    ]


def test_override_file_missing_or_empty_is_no_overrides(tmp_path):
    assert load_overrides(tmp_path / "links.yaml").find(D, 1, "x") is None
    (tmp_path / "links.yaml").write_text("# nothing yet\n", encoding="utf-8")
    assert load_overrides(tmp_path / "links.yaml").find(D, 1, "x") is None
    (tmp_path / "links.yaml").write_text("titles:\ndates:\n", encoding="utf-8")
    assert load_overrides(tmp_path / "links.yaml").find(D, 1, "x") is None


def test_every_bad_override_is_reported_at_once():
    text = """\
titles:
  "MegaMath: Pushing the Limits of Open Math Corpora": 2504.0281 0
  "MEGAMATH: pushing the limits of open math corpora": none
  "Listed": [2504.02807]
  "No link":
  "Null link": ~
  "--": none
  "FTP": ftp://example.org/x
dates:
  2025-02-30:
    1: none
  2025-04-04:
    0: none
    first: none
    2: 2504.02263
    2: 2504.02264
  2025-04-04: {}
  2025-05-19: none
link: 2504.02807
"""
    with pytest.raises(NewsletterError) as err:
        parse_overrides(text, "links.yaml")
    message = str(err.value)
    assert message.startswith("links.yaml: 14 problems in the links file:\n")
    for line in [
        "links.yaml:2: titles.'MegaMath: Pushing the Limits of Open Math Corpora': "
        "'2504.0281 0' is not an arXiv id (like 2504.02807), an http(s) URL, or none",
        "links.yaml:3: titles.'MEGAMATH: pushing the limits of open math corpora': "
        "the same title is already at links.yaml:2",
        "links.yaml:4: titles.'Listed': expected a single value, not a list or mapping",
        "links.yaml:5: titles.'No link': no link given: write an arXiv id, an http(s) URL, or none",
        "links.yaml:6: titles.'Null link': '~' is not an arXiv id",
        "links.yaml:7: titles.'--': a title needs letters or digits",
        "links.yaml:8: titles.'FTP': 'ftp://example.org/x' is not an arXiv id",
        "links.yaml:10: dates.2025-02-30: not a date like 2025-04-04",
        "links.yaml:13: dates.2025-04-04.0: a position is a whole number from 1",
        "links.yaml:14: dates.2025-04-04.first: a position is a whole number from 1",
        "links.yaml:16: dates.2025-04-04.2: the same position is already at links.yaml:15",
        "links.yaml:17: dates.2025-04-04: the same date is already at links.yaml:12",
        "links.yaml:18: dates.2025-05-19: expected a mapping of keys to links",
        "links.yaml:19: link: unknown section (known: titles, dates)",
    ]:
        assert line in message, line
    assert err.value.hint and "README" in err.value.hint


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("titles:\n  MegaMath: Pushing: 2504.02807\n", "links.yaml:2: not valid YAML"),
        ("titles:\n  - 2504.02807\n", "links.yaml:2: titles: expected a mapping"),
        ("- just a list\n", "links.yaml:1: (top level): expected the sections"),
    ],
)
def test_override_file_structure_errors(text, where):
    with pytest.raises(NewsletterError) as err:
        parse_overrides(text, "links.yaml")
    assert where in str(err.value)


def test_papers_config_defaults_and_paths_links(tmp_path):
    config = config_from_dict({}, base=tmp_path)
    assert config.papers.lookup == "arxiv"
    assert config.papers.arxiv_api_url == "https://export.arxiv.org/api/query"
    assert config.papers.timeout == 10
    assert config.papers.budget_seconds == 60
    assert config.paths.links == tmp_path / "links.yaml"
    config = config_from_dict(
        {
            "papers": {"lookup": "off", "arxiv_api_url": "http://127.0.0.1:9/api/query"},
            "paths": {"links": "conf/links.yaml"},
        },
        base=tmp_path,
    )
    assert config.papers.lookup == "off"
    assert config.papers.arxiv_api_url == "http://127.0.0.1:9/api/query"
    assert config.paths.links == tmp_path / "conf" / "links.yaml"


def test_bad_papers_keys_are_reported_at_once(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "papers:\n"
        "  lookup: google\n"
        "  arxiv_api_url: https://export.arxiv.org/api/query?x=1\n"
        "  timeout: 0\n"
        "  budget_seconds: soon\n"
        "  budget: 60\n",
        encoding="utf-8",
    )
    with pytest.raises(NewsletterError) as err:
        load_config(path)
    message = str(err.value)
    assert "5 problems" in message
    assert "papers.lookup: Input should be 'arxiv' or 'off'" in message
    assert (
        "papers.arxiv_api_url: 'https://export.arxiv.org/api/query?x=1' is not an http(s) URL"
        in message
    )
    assert "papers.timeout: Input should be greater than 0" in message
    assert "papers.budget_seconds: Input should be a valid number" in message
    assert "papers.budget: unknown key (did you mean 'budget_seconds'?)" in message


def test_bad_papers_key_through_the_cli(tmp_path):
    (tmp_path / "config.yaml").write_text("papers:\n  lookup: yes please\n", encoding="utf-8")
    result = run_cli("--config", str(tmp_path / "config.yaml"), "status", cwd=tmp_path)
    assert result.returncode == 2
    assert "papers.lookup" in result.stderr and "Traceback" not in result.stderr


def test_shipped_config_documents_the_papers_keys():
    config = load_config(Path(__file__).parent.parent / "config.yaml")
    assert config.papers.lookup == "arxiv"
    assert config.paths.links.name == "links.yaml"


@pytest.mark.parametrize("written", ["off", "'off'", "no", "false"])
def test_lookup_off_as_yaml_reads_it(tmp_path, written):
    """YAML 1.1 reads a bare `off` as false: it still means off, as the README writes it."""
    path = tmp_path / "config.yaml"
    path.write_text(f"papers:\n  lookup: {written}\n", encoding="utf-8")
    assert load_config(path).papers.lookup == "off"


def test_interval_is_configurable_but_never_below_3_s_for_arxiv(tmp_path):
    local = {"arxiv_api_url": "http://127.0.0.1:9/api/query", "interval_seconds": 0}
    assert config_from_dict({"papers": local}, base=tmp_path).papers.interval_seconds == 0
    assert config_from_dict({}, base=tmp_path).papers.interval_seconds == 3
    with pytest.raises(NewsletterError) as err:
        config_from_dict({"papers": {"interval_seconds": 1}}, base=tmp_path)
    assert "interval_seconds 1 is below the 3 s between requests" in str(err.value)


@pytest.mark.parametrize(
    ("value", "bad"),
    [
        ('https://example.org/a"><script>x</script>', "'\"' must be percent-encoded as %22"),
        ("https://example.org/a<b", "'<' must be percent-encoded as %3C"),
        ("https://example.org/a{b}", "'{' must be percent-encoded as %7B"),
        ("https://example.org/a\x07b", "'\\x07' must be percent-encoded as %07"),
    ],
)
def test_an_override_url_that_would_need_escaping_to_be_a_url_is_refused(value, bad):
    with pytest.raises(ValueError) as err:
        parse_target(value)
    assert bad in str(err.value) and "RFC 3986" in str(err.value)


def test_override_urls_that_are_urls_are_kept_as_written():
    assert parse_target("https://example.org/a?x=1&y='2'").url == "https://example.org/a?x=1&y='2'"
    assert parse_target("https://예시.kr/논문").url == "https://예시.kr/논문"  # an IRI
    assert parse_target("https://www.example.net/p.pdf").name == "example.net"


def test_a_digest_takes_one_link_per_entry():
    from newsletter.digest import read_digest
    from newsletter.papers.linking import DigestLinks

    digest = read_digest(SAMPLES / "2025-04-04.txt").digest
    with pytest.raises(ValueError, match="3 links for 4 entries"):
        digest.with_links([None] * 3)
    assert digest.with_links([None] * 4).links == ()  # no link at all: as parsed
    linked = digest.with_links([PaperLink.for_arxiv("2504.02807"), None, None, None])
    assert linked.link(0).arxiv_id == "2504.02807" and linked.link(3) is None
    assert linked.entries == digest.entries and linked != digest
    now = dt.datetime(2025, 5, 19, tzinfo=dt.UTC)
    later = Lookup.failed("arXiv answered HTTP 503", now + dt.timedelta(minutes=5))
    waiting = DigestLinks(digest.date, (Lookup.found(PaperLink.for_arxiv("2504.02807")), later))
    assert not waiting.due(now) and waiting.due(now + dt.timedelta(minutes=5))
    assert waiting.next_retry == later.retry_after


def test_a_week_is_not_a_date_in_the_override_file():
    """`2025-W14` must not silently pin the links of that week's Monday."""
    with pytest.raises(NewsletterError) as err:
        parse_overrides("dates:\n  2025-W14:\n    1: none\n", "links.yaml")
    assert "links.yaml:2: dates.2025-W14: not a date like 2025-04-04" in str(err.value)
