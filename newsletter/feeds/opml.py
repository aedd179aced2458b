"""feeds.opml: every feed of the site in one OPML 2.0 file
(http://opml.org/spec2.opml), for importing all editions or all tags at once.

One outline per edition, holding its feed, its weekly feed and a folder of
its tags' feeds.
Each feed is listed once, as Atom (its RSS and JSON Feed twins carry the same
items): importing the file subscribes to every feed once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter import render
from newsletter.feeds.atom import clean
from newsletter.model import Edition

if TYPE_CHECKING:
    from newsletter.config import Config


def build_opml(config: Config, tags: list[tuple[str, str]]) -> bytes:
    """The OPML document; tags: (name, slug) of every tag, in folder-name order."""
    from lxml import etree

    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = clean(f"{config.site.title} · feeds")
    body = etree.SubElement(root, "body")
    for edition in config.editions:
        name = render.EDITION_NAMES[edition][0]
        title = f"{config.site.title} · {name}"
        folder = etree.SubElement(body, "outline", text=clean(title))
        _feed(folder, title, render.feed_url(config, edition), f"{config.site.base_url}{edition}/")
        weekly = f"{title} · {render.WEEKLY_LABELS[Edition(edition).language]}"
        _feed(
            folder,
            weekly,
            render.weekly_feed_url(config, edition),
            f"{config.site.base_url}{edition}/",
        )
        if tags:
            tag_folder = etree.SubElement(folder, "outline", text=f"{name} · #")
            for tag, _slug in tags:
                _feed(
                    tag_folder,
                    f"#{tag} · {title}",
                    render.feed_url(config, edition, tag=tag),
                    render.tag_url(config, tag, edition),
                )
    return etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="UTF-8")


def _feed(parent: object, title: str, xml_url: str, html_url: str) -> None:
    from lxml import etree

    etree.SubElement(
        parent,  # type: ignore[arg-type]
        "outline",
        type="rss",  # OPML 2.0 names every feed format "rss"
        version="ATOM1",
        text=clean(title),
        title=clean(title),
        xmlUrl=xml_url,
        htmlUrl=html_url,
    )
