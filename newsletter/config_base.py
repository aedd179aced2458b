"""What every config section shares: its pydantic base and secrets from the environment.

A module of its own so that config.py and config_email.py can both use it
without importing each other.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict

from newsletter.errors import NewsletterError


class Section(BaseModel):
    """A config section: unknown keys are errors, values are frozen, keys go by alias or name."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def env_secret(key: str, name: str | None) -> str | None:
    """The value of the environment variable `name` (named by config `key`); None when
    `name` is empty; NewsletterError when it names a variable that is not set."""
    if not name:
        return None
    value = os.environ.get(name)
    if value is None:
        raise NewsletterError(
            f"{key} names ${name}, which is not set",
            hint=f"export {name}=... before running, or remove the key",
        )
    return value
