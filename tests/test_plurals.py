"""Counting words in two languages, by CLDR plural rules (Babel), in every output:
email subjects and headers, pages, feeds, confirmation mails, status output."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re

import feedparser
import pytest
from helpers import SAMPLE_DIGESTS, edition_email, email_bodies, html_text
from smtp_servers import mail_config, sample_digest

from newsletter.feeds import feed_files
from newsletter.model import Cadence, Digest, Edition
from newsletter.plurals import nouns, plural, plural_category
from newsletter.site import index_files, issue_files
from newsletter.templating import environment
from newsletter.web.choices import choice_texts


def one_paper() -> Digest:
    digest = sample_digest()
    return dataclasses.replace(digest, entries=digest.entries[:1])


def test_babel_rules():
    assert [plural_category(n, "en") for n in (0, 1, 2, 21)] == ["other", "one", "other", "other"]
    assert {plural_category(n, "ko") for n in (0, 1, 2)} == {"other"}
    # Rules beyond "n == 1": Russian has one/few/many.
    forms = {"one": "{count} статья", "few": "{count} статьи", "many": "{count} статей"}
    assert [plural(n, "ru", other="?", **forms) for n in (1, 3, 5, 21)] == [
        "1 статья",
        "3 статьи",
        "5 статей",
        "21 статья",
    ]
    assert nouns(1, "file", "files") == "1 file" and nouns(0, "file", "files") == "0 files"


@pytest.mark.parametrize(
    ("edition", "subject", "header"),
    [
        (Edition.EN, "[ML Papers] April 4, 2025 · 1 paper", "April 4, 2025 · 1 paper"),
        (Edition.KO, "[ML Papers] 2025년 4월 4일 · 논문 1편", "2025년 4월 4일 · 논문 1편"),
        (
            Edition.BOTH,
            "[ML 논문 · Papers] 2025년 4월 4일 · 1편",
            "2025년 4월 4일 · 논문 1편 · 1 paper",
        ),
    ],
)
def test_one_paper_email(tmp_path, edition, subject, header):
    data = edition_email(mail_config(tmp_path), one_paper(), edition)
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message["Subject"] == subject
    text, html = email_bodies(data)
    assert header in text and header in html_text(html)
    assert "1 papers" not in text + html + subject


def test_subject_papers_field_in_each_language(tmp_path):
    config = mail_config(
        tmp_path, subject={"en": "{papers} on {date}", "ko": "{date}: {papers}", "both": "{count}"}
    )
    for count, en, ko in ((1, "1 paper", "논문 1편"), (3, "3 papers", "논문 3편")):
        digest = dataclasses.replace(sample_digest(), entries=sample_digest().entries[:count])
        subjects = {
            e: email.message_from_bytes(
                edition_email(config, digest, e), policy=email.policy.default
            )["Subject"]
            for e in (Edition.EN, Edition.KO)
        }
        assert str(subjects[Edition.EN]).startswith(f"{en} on ")
        assert str(subjects[Edition.KO]).endswith(f": {ko}")


def test_one_paper_pages_and_feeds(site_config):
    digest = one_paper()
    pages = issue_files(site_config, digest)
    assert '<p class="meta">1 paper</p>' in pages["en/2025-04-04/index.html"].decode()
    assert '<p class="meta">논문 1편</p>' in pages["ko/2025-04-04/index.html"].decode()
    tag = index_files(site_config, [digest])["en/tags/math/index.html"].decode()
    assert '<p class="meta">1 paper</p>' in tag
    files = feed_files(site_config, [digest])
    for kind in ("atom", "rss"):
        assert feedparser.parse(files[f"feeds/en/{kind}.xml"]).entries[0].title == (
            "April 4, 2025 · 1 paper"
        )
        assert feedparser.parse(files[f"feeds/ko/{kind}.xml"]).entries[0].title == (
            "2025년 4월 4일 · 논문 1편"
        )


@pytest.mark.parametrize(("days", "text"), [(1, "within 1 day"), (3, "within 3 days")])
def test_confirmation_mail_days(days, text):
    env = environment()
    values = {
        "kind": "confirm",
        "site_title": "ML Papers",
        "days": days,
        "confirm_url": "https://x/confirm",
        "address": "a@example.org",
    } | choice_texts(Edition.KO, Cadence.DAILY, (), "monday")
    for name in ("email/confirm.txt", "email/confirm.html"):
        rendered = env.get_template(name).render(values)
        assert re.search(rf"{text}(?!s)", rendered) and f"{days}일 안에" in rendered
    texts = env.get_template("web/_texts.html").module
    for kind in ("sent", "expired"):
        rendered = str(texts.body(kind, {"days": str(days), "address": "a@example.org"}))
        assert f"{days}일" in rendered
        words = f"{'within' if kind == 'sent' else 'for'} {text.split(' ', 1)[1]}"
        assert re.search(rf"{words}(?!s)", rendered), rendered


def test_status_output_counts(cli, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "a.txt").write_text(
        "2025-04-04\nTitle\n(A)\nAbstract.\n한국어.\nEnglish.\n#t", encoding="utf-8"
    )
    result = cli("check", str(folder))
    assert "1 file checked, 0 bad" in result.stderr
    assert re.search(r"2025-04-04 +1 entry  ", result.stdout)
    many = cli("check", str(SAMPLE_DIGESTS))
    assert "3 files checked" in many.stderr and "4 entries" in many.stdout


def test_status_output_counts_in_a_project(cli, project):
    for name in ("2025-01-22.txt", "2025-05-19.txt"):
        (project / "digests" / name).unlink()
    cli("subscribers", "add", "a@example.org", cwd=project)
    listed = cli("subscribers", "list", cwd=project)
    assert listed.stderr.strip() == "1 subscriber"
    dry = cli("publish", "--date", "2025-04-04", "--dry-run", "--force", cwd=project)
    assert "email: 1 message would be sent" in dry.stdout, dry.stdout + dry.stderr
    assert "1 messages" not in dry.stdout + dry.stderr
    built = cli("build", cwd=project)
    again = cli("build", cwd=project)
    assert "site: wrote 0 files" in again.stdout and built.returncode == 0
    (project / "digests" / "2025-04-04.txt").write_text(
        (SAMPLE_DIGESTS / "2025-04-04.txt")
        .read_text(encoding="utf-8")
        .replace("MegaMath", "MegaMath2", 1),
        encoding="utf-8",
    )
    dates = cli("publish", "--date", "2025-04-04", "--no-email", cwd=project)
    assert re.search(r"site: wrote \d+ files", dates.stdout)
    (project / "bad.csv").write_text("email,edition\nnot-an-address,ko\n", encoding="utf-8")
    imported = cli("subscribers", "import", str(project / "bad.csv"), cwd=project)
    assert "1 bad row" in imported.stdout and "1 bad rows" not in imported.stdout


def test_a_one_file_site_write_says_file(cli, project):
    cli("build", cwd=project)
    page = project / "public" / "index.html"
    page.write_text("changed", encoding="utf-8")
    result = cli("build", cwd=project)
    assert "site: wrote 1 file," in result.stdout, result.stdout


def test_issue_counts_in_two_languages(site_config):
    pages = issue_files(site_config, sample_digest())
    assert '<p class="meta">4 papers</p>' in pages["en/2025-04-04/index.html"].decode()
    assert '<p class="meta">논문 4편</p>' in pages["ko/2025-04-04/index.html"].decode()
