"""What a tag on an agent may be, defined once for both sides: the appliance checks the
tags an admin sets and those a host asks for at registration, and the agent checks
`register --tag` before it sends anything."""

from __future__ import annotations

import re

MAX_TAG_CHARS = 40
MAX_TAGS = 50  # on one agent
TAG_RULE = "a tag is 1-40 letters, digits and . _ : - and starts with a letter or digit"
_TAG = re.compile(r"[a-z0-9][a-z0-9._:-]{0,39}")


class InvalidTagText(ValueError):
    """Not a tag; the message is TAG_RULE."""


def clean_tag(text: str) -> str:
    """A tag as stored: lower case letters, digits and . _ : -, at most 40 characters."""
    tag = text.strip().lower() if isinstance(text, str) else ""
    if not _TAG.fullmatch(tag):
        raise InvalidTagText(TAG_RULE)
    return tag


def clean_tags(texts: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Each tag cleaned, duplicates dropped, sorted; at most MAX_TAGS."""
    tags = tuple(sorted({clean_tag(text) for text in texts}))
    if len(tags) > MAX_TAGS:
        raise InvalidTagText(f"an agent carries at most {MAX_TAGS} tags")
    return tags
