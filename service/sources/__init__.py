"""Live paper sources: each turns a remote listing into pages of validated `Paper`s.

A page is the unit of writing: `fetch_papers` upserts each page in one transaction, so a page
that fails leaves the store as it was and a paper is never half-written.
"""

import re
from dataclasses import dataclass, field

from service.models import Paper


@dataclass(frozen=True)
class Rejected:
    """An entry of a source that is not a paper we can keep, and why."""

    entry: str
    reason: str


@dataclass
class SourcePage:
    papers: list[Paper] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


_VERSION = re.compile(r"v\d+$")


def without_version(arxiv_id: str) -> str:
    """`2511.01234v3` → `2511.01234`: the versions of a paper are one paper."""
    return _VERSION.sub("", arxiv_id)


def one_line(text: str) -> str:
    """White space (a title's line breaks and indentation in a feed) collapsed to one space."""
    return " ".join(text.split())
