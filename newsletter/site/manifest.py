"""The build manifest, public/.newsletter-manifest.json: what the last build
generated, the key each file was rendered from, and when each item's text
last changed.

Version 3:

    {"version": 3,
     "files": {"ko/2025-04-04/index.html": "KEY", ...},
     "revisions": {"ko/2025-04-04": "HASH ISO-TIME", ...},
     "search": {"ko": "KEY", ...}}

`search` names each edition's search bundle (pagefind/E/, which the build
owns whole) by the key of its records. `files` maps each path to "KEY:SIZE" (the size tells a file edited by hand).
`files` lets a full build delete what is stale and nothing else, and skip
rendering a file whose key (newsletter.outputs) has not changed. Version 2
(`files` a list) is read as files without keys: everything renders once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.files import write_if_changed
from newsletter.revisions import Revision

log = logging.getLogger("newsletter")

MANIFEST = ".newsletter-manifest.json"


@dataclass(frozen=True)
class BuildManifest:
    """What the last build generated (path -> key; "" when unknown), and when
    each feed item's text changed."""

    keys: dict[str, str] = field(default_factory=dict)
    revisions: dict[str, Revision] = field(default_factory=dict)
    search: dict[str, str] = field(default_factory=dict)  # edition -> search index key

    @property
    def files(self) -> set[str]:
        return set(self.keys)


def read_manifest(public: Path) -> set[str]:
    """The files an earlier build generated; empty if none (or unreadable)."""
    return read_build_manifest(public).files


def read_build_manifest(public: Path) -> BuildManifest:
    """The last build's manifest; empty if there is none or it cannot be trusted
    (a bad entry is dropped: deleting nothing and marking an item changed are
    the safe answers)."""
    try:
        raw = json.loads((public / MANIFEST).read_text(encoding="utf-8"))
        files = raw["files"]
        items = raw.get("revisions", {})
        if not isinstance(files, list | dict) or not isinstance(items, dict):
            raise TypeError("'files' must be a list or an object and 'revisions' an object")
    except FileNotFoundError:
        return BuildManifest()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable %s: %s", public / MANIFEST, exc)
        return BuildManifest()
    pairs = files.items() if isinstance(files, dict) else ((path, "") for path in files)
    keys = {
        path: key if isinstance(key, str) else ""
        for path, key in pairs
        if isinstance(path, str) and _is_safe_relative(path)
    }
    revisions = {}
    for key, value in items.items():
        try:
            content, changed = value.split(" ")
            when = dt.datetime.fromisoformat(changed)
        except (AttributeError, ValueError):
            continue
        if when.tzinfo is not None:
            revisions[key] = Revision(content, when)
    search = raw.get("search", {})
    if not isinstance(search, dict):
        search = {}
    bundles = {
        edition: key
        for edition, key in search.items()
        if isinstance(key, str) and edition in ("ko", "en", "both")
    }
    return BuildManifest(keys, revisions, bundles)


def write_manifest(
    public: Path,
    files: dict[str, str] | set[str] | list[str],
    revisions: dict[str, Revision] | None = None,
    search: dict[str, str] | None = None,
) -> None:
    """Write version 3 (a set or list of paths is written with empty keys)."""
    keys = files if isinstance(files, dict) else dict.fromkeys(files, "")
    items = {key: f"{r.hash} {r.changed.isoformat()}" for key, r in (revisions or {}).items()}
    data = {
        "version": 3,
        "files": dict(sorted(keys.items())),
        "revisions": items,
        "search": dict(sorted((search or {}).items())),
    }
    # Compact: with an indent, json encodes in pure Python (30 ms at 5,000 files).
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n"
    write_if_changed(public / MANIFEST, text.encode("utf-8"))


def _is_safe_relative(path: str) -> bool:
    """Only plain paths inside public/: a tampered manifest must not reach out.
    (String tests: a manifest lists thousands of paths.)"""
    return (
        bool(path)
        and not path.startswith("/")
        and "\\" not in path
        and all(part not in ("", ".", "..") for part in path.split("/"))
        and path != MANIFEST
    )
