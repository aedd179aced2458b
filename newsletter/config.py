"""Load and validate config.yaml: every bad key is reported at once.

Lookup order: --config FILE, else $NEWSLETTER_CONFIG, else ./config.yaml; with
no file at all, the embedded defaults are used. Relative paths are resolved
against the config file's folder. Secrets are never in the file: the file names
the environment variables that hold them. The `email:` and `bounces:`
sections are in config_email.py, the base they share in config_base.py.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from newsletter.config_base import Section
from newsletter.config_email import BouncesConfig, EmailConfig
from newsletter.errors import ConfigError, NewsletterError
from newsletter.model import ALL_EDITIONS, DigestLimits, Edition
from newsletter.papers.links import ARXIV_API_URL, is_public_arxiv

CONFIG_ENV = "NEWSLETTER_CONFIG"
SECRET_ENV = "NEWSLETTER_SECRET"
# The shortest HMAC key we accept, in bytes: $NEWSLETTER_SECRET and the webhook
# secrets alike (RFC 2104 section 3: a key shorter than the hash's output
# weakens it; 16 random bytes still resist guessing).
MIN_SECRET_BYTES = 16
SECRET_HINT = "python3 -c 'import secrets; print(secrets.token_hex(32))'"


def check_secret(name: str, value: str, what: str = "") -> str:
    """`value`, the secret in `name`; ConfigError if it is under MIN_SECRET_BYTES
    (UTF-8). `what`: how to name it (default: $name)."""
    size = len(value.encode("utf-8"))
    if size < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{what or '$' + name} is too short ({size} bytes; at least {MIN_SECRET_BYTES})",
            hint=f"export {name}=$({SECRET_HINT}) and keep it stable",
        )
    return value


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'Asia/Seoul'"
        ) from None
    return name


def _ensure_slash(url: str) -> str:
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url if url.endswith("/") else url + "/"


HttpUrl = Annotated[str, AfterValidator(_ensure_slash)]


class SiteConfig(Section):
    title: str = "ML Papers"
    description: str = "Daily notes on machine-learning papers, in Korean and English."
    base_url: HttpUrl = "http://localhost:8000/"
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "Asia/Seoul"
    language_default: Literal["ko", "en"] = "ko"
    author: str = ""
    # Issues (edition indexes) or papers (tag pages) per page of a list.
    page_size: int = Field(30, ge=1, le=1000)
    # Full-text search (Pagefind) on every edition; off, or no binary: no search box.
    search: bool = True
    # Links to folders end in index.html, so that pages opened from disk navigate.
    relative_urls: bool = False

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class PathsConfig(Section):
    digests: Path = Path("examples/digests")
    public: Path = Path("public")
    state: Path = Path("state")
    outbox: Path = Path("outbox")
    templates: Path | None = None
    # Manual paper links (newsletter/papers/overrides.py); a missing file means none.
    links: Path = Path("links.yaml")


def _check_hub_url(url: str) -> str:
    if not re.match(r"^https?://[^/\s?#]+(/[^\s#]*)?$", url):
        raise ValueError(f"{url!r} is not an http(s) URL like 'https://pubsubhubbub.appspot.com/'")
    return url


class FeedsConfig(Section):
    max_items: int = Field(30, ge=1)
    # A WebSub hub (https://www.w3.org/TR/websub/): declared in every feed and
    # pinged after publishing; none by default.
    websub_hub: Annotated[str, AfterValidator(_check_hub_url)] | None = None


def _check_api_url(url: str) -> str:
    if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", url):
        raise ValueError(
            f"{url!r} is not an http(s) URL without query or fragment, "
            "like 'https://export.arxiv.org/api/query'"
        )
    return url


class PapersConfig(Section):
    """Paper links: where and how papers are looked up (newsletter/papers/linking.py)."""

    lookup: Literal["arxiv", "off"] = "arxiv"

    @field_validator("lookup", mode="before")
    @classmethod
    def _off_as_yaml_reads_it(cls, value: object) -> object:
        # YAML 1.1 reads a bare `off` (or `no`, `false`) as false: it means off.
        return "off" if value is False else value

    arxiv_api_url: Annotated[str, AfterValidator(_check_api_url)] = ARXIV_API_URL
    timeout: float = Field(10.0, gt=0)  # seconds, per request
    budget_seconds: float = Field(60.0, gt=0)  # all of one digest's lookups
    # Seconds between requests; arxiv.org's terms of use ask for at least 3.
    interval_seconds: float = Field(3.0, ge=0)

    @model_validator(mode="after")
    def _polite_to_arxiv(self) -> PapersConfig:
        if self.interval_seconds < 3 and is_public_arxiv(self.arxiv_api_url):
            raise ValueError(
                f"interval_seconds {self.interval_seconds:g} is below the 3 s between "
                "requests that arXiv's API terms of use ask for (arxiv_api_url is arxiv.org)"
            )
        return self


class LimitsConfig(Section):
    max_digest_bytes: int = Field(DigestLimits().max_bytes, ge=1_000)
    max_entries: int = Field(DigestLimits().max_entries, ge=1)

    @property
    def digest(self) -> DigestLimits:
        """These limits as the digest reader takes them."""
        return DigestLimits(self.max_digest_bytes, self.max_entries)


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    public_url: HttpUrl | None = None


def _check_send_time(value: str) -> str:
    try:
        dt.time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a time like '07:00'") from None
    return value


class ScheduleConfig(Section):
    send_time: Annotated[str, AfterValidator(_check_send_time)] = "07:00"
    # The day the weekly email goes out (at send_time), with the seven days before it.
    weekly_day: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = "monday"
    poll_seconds: float = Field(30, gt=0)
    settle_seconds: float = Field(10, ge=0)

    @property
    def send_clock(self) -> dt.time:
        return dt.time.fromisoformat(self.send_time)


class Config(Section):
    site: SiteConfig = SiteConfig()
    paths: PathsConfig = PathsConfig()
    editions: tuple[Edition, ...] = ALL_EDITIONS
    feeds: FeedsConfig = FeedsConfig()
    papers: PapersConfig = PapersConfig()
    email: EmailConfig = EmailConfig()
    server: ServerConfig = ServerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    bounces: BouncesConfig = BouncesConfig()
    limits: LimitsConfig = LimitsConfig()
    database_url: str | None = None
    # Where the config came from; relative paths were resolved against its folder.
    source: Path | None = Field(None, exclude=True)

    @field_validator("editions")
    @classmethod
    def _editions_not_empty(cls, value: tuple[Edition, ...]) -> tuple[Edition, ...]:
        if not value:
            raise ValueError("at least one edition is needed: ko, en or both")
        return tuple(dict.fromkeys(value))

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import sqlalchemy as sa

        try:
            sa.engine.make_url(value).get_dialect()
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
            raise ValueError(
                f"{value!r} is not a usable SQLAlchemy URL ({exc}); use e.g. "
                "'postgresql+psycopg://user@host/db' (pip install -e '.[postgres]')"
            ) from None
        return value

    @model_validator(mode="after")
    def _server_url_defaults_to_site(self) -> Config:
        if self.server.public_url is None:
            object.__setattr__(
                self, "server", self.server.model_copy(update={"public_url": self.site.base_url})
            )
        return self

    @property
    def db_url(self) -> str:
        """SQLAlchemy URL: the configured one, else a SQLite file in paths.state."""
        return self.database_url or f"sqlite:///{self.paths.state / 'newsletter.db'}"

    def secret(self, required: bool = True) -> bytes | None:
        """The HMAC key for unsubscribe/confirm tokens, from $NEWSLETTER_SECRET.

        `required` (serve, SMTP sending, bounce processing): ConfigError when it
        is not set or shorter than MIN_SECRET_BYTES. Otherwise None when unset
        (the file transport falls back to a development key).
        """
        value = os.environ.get(SECRET_ENV)
        if not value:
            if required:
                raise ConfigError(
                    f"${SECRET_ENV} is not set; it signs unsubscribe and confirmation links",
                    hint=f"export {SECRET_ENV}=$({SECRET_HINT}) and keep it stable",
                )
            return None
        if required:
            check_secret(SECRET_ENV, value)
        return value.encode()


# Hints for the mistakes people make; keyed by pydantic's error type.
_HINTS = {
    "extra_forbidden": "remove it, or check its spelling against the README's configuration reference",
    "missing": "add it",
    "literal_error": "use one of the values listed",
    "enum": "use one of: ko, en, both",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "float_parsing": "write a number",
    "greater_than_equal": "use a larger value",
    "greater_than": "use a larger value",
    "less_than_equal": "use a smaller value",
    "string_type": "quote the value as text",
    "dict_type": "this key holds a section of keys",
    "model_type": "this key holds a section of keys",
}


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The valid key names in the section that holds loc's last part."""
    model: Any = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(model, type) else None
        model = field.annotation if field else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return [field.alias or name for name, field in model.model_fields.items() if name != "source"]


def _format_errors(exc: ValidationError, source: str) -> NewsletterError:
    import difflib

    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        path = ".".join(str(part) for part in loc) or "(top level)"
        path = path.replace("from_", "from")
        message = error["msg"].removeprefix("Value error, ")
        hint = _HINTS.get(error["type"])
        if error["type"] == "extra_forbidden":
            message = "unknown key"
            known = _known_keys(loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = (
                f"did you mean {close[0]!r}?" if close else f"known keys here: {', '.join(known)}"
            )
        lines.append(f"  {path}: {message}" + (f" ({hint})" if hint else ""))
    from newsletter.plurals import nouns

    return NewsletterError(
        f"{source}: {nouns(len(lines), 'problem', 'problems')} in the config:\n" + "\n".join(lines),
        hint="see 'Configuration' in the README for every key and its default",
    )


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    paths = raw.get("paths")
    if not isinstance(paths, dict):
        return
    for key, value in paths.items():
        if isinstance(value, str) and value:
            path = Path(value).expanduser()
            paths[key] = path if path.is_absolute() else base / path


def _resolve_mailbox(raw: dict[str, Any], base: Path) -> None:
    """A relative maildir:/mbox: path in bounces.mailbox is relative to the config's folder."""
    section = raw.get("bounces")
    value = section.get("mailbox") if isinstance(section, dict) else None
    if not isinstance(value, str) or not value.startswith(("maildir:", "mbox:")):
        return
    scheme, _, path = value.partition(":")
    if path:
        resolved = Path(path).expanduser()
        section["mailbox"] = f"{scheme}:{resolved if resolved.is_absolute() else base / resolved}"


def find_config_file(explicit: str | os.PathLike[str] | None) -> Path | None:
    """--config, else $NEWSLETTER_CONFIG, else ./config.yaml if present."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = Path("config.yaml")
    return default if default.exists() else None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load, resolve and validate a config file; defaults when there is none."""
    import yaml

    file = find_config_file(path)
    if file is None:
        return _validate({}, Path.cwd(), "embedded defaults", None)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NewsletterError(
            f"config file {file} does not exist",
            hint="pass --config with an existing file, or copy the example config.yaml",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NewsletterError(f"cannot read config file {file}: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else str(file)
        problem = getattr(exc, "problem", None) or str(exc)
        raise NewsletterError(
            f"{where}: not valid YAML: {problem}",
            hint="check the indentation and quoting on that line",
        ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise NewsletterError(
            f"{file}: the config must be a mapping of keys (site:, paths:, email:, ...)",
            hint="see the example config.yaml",
        )
    return _validate(raw, file.resolve().parent, str(file), file.resolve())


def config_from_dict(raw: dict[str, Any], base: Path) -> Config:
    """Validate an in-memory config (tests, library users); paths relative to base."""
    return _validate(raw, base, "config", None)


def _validate(raw: dict[str, Any], base: Path, label: str, source: Path | None) -> Config:
    import copy

    raw = copy.deepcopy(raw)
    raw.setdefault("paths", {})
    if isinstance(raw["paths"], dict):
        defaults = PathsConfig()
        for key in ("digests", "public", "state", "outbox", "links"):
            raw["paths"].setdefault(key, str(getattr(defaults, key)))
    _resolve_paths(raw, base)
    _resolve_mailbox(raw, base)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise _format_errors(exc, label) from None
    object.__setattr__(config, "source", source)
    return config
