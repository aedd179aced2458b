"""Paper links: where each paper of a digest can be read (issue 21).

    links.py      PaperLink, Lookup: the values outputs and the cache share
    matching.py   is this arXiv entry our paper? (titles equal, an author in common)
    arxiv.py      ArxivClient: title searches on the arXiv API, polite and bounded
    overrides.py  the override file (paths.links): links set by hand
    linking.py    Linker: override, cache or lookup, for each paper of a digest
    attach.py     PaperLinks: digests' links for publish, build and refresh
    watch.py      DaemonLinks: the same for the daemon, kept between its ticks

The cache is a table of the store (newsletter.store.links). Nothing here is
imported by the package itself: the CLI stays fast to start.
"""
