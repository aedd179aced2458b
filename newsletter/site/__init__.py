"""The archive site: issue pages, paginated indexes, tag pages, search, sitemaps.

Layout under paths.public (E is an edition: ko, en, both):

    index.html                       landing page: editions and feeds
    E/index.html                     the newest issues with their papers
    E/page/K/index.html              older issues, page K counted from the oldest
    E/YYYY-MM-DD/index.html          one issue
    E/tags/index.html                every tag with its number of papers
    E/tags/TAG/index.html            one tag's newest papers (page/K/ as above)
    E/search/index.html              search (Pagefind), when site.search is on
    E/weekly/2025-W15/index.html     one weekly issue (newsletter.site.weekly)
    pagefind/E/                      that edition's search index
    feeds/..., feeds.opml            see newsletter.feeds
    sitemap.xml, sitemaps/, robots.txt
    .newsletter-manifest.json        what we generated, from which inputs, and
                                     when each item's text last changed

Modules, by step: paths (where pages live), pages (one page), indexes (lists),
sitemap, search, weekly (pages and feeds of the weekly issues), manifest,
build (plan, render what changed, write).
"""

from newsletter.site.build import SiteResult, index_files, issue_files, newest_first, write_site
from newsletter.site.manifest import (
    MANIFEST,
    BuildManifest,
    read_build_manifest,
    read_manifest,
    write_manifest,
)
from newsletter.site.paths import issue_path

__all__ = [
    "MANIFEST",
    "BuildManifest",
    "SiteResult",
    "index_files",
    "issue_files",
    "issue_path",
    "newest_first",
    "read_build_manifest",
    "read_manifest",
    "write_manifest",
    "write_site",
]
