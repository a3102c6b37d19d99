"""Hugging Face Daily Papers: the papers people upvote, with their trending signals.

`GET /api/daily_papers?date=YYYY-MM-DD&limit=N&p=P` answers a JSON list of entries; each entry
wraps the paper itself under `paper` (arXiv id, title, abstract, authors, upvotes and the
`ai_*`/`github*` fields), and carries the comment count of its discussion at the top level.
"""

import json
import logging
from collections.abc import Iterator
from datetime import date, datetime

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.models import CodeRepository, Paper
from service.settings import Settings
from service.sources import Rejected, SourcePage, one_line, without_version
from service.sources.jsonl import ARXIV_ID, paper_url
from service.sources.remote import SourceError, get_page

log = logging.getLogger(__name__)

SOURCE = "hf"


class HfAuthor(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = ""


class HfPaper(BaseModel):
    """The nested `paper` object. Unknown fields are ignored; id and title must be right."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(strict=True, pattern=ARXIV_ID.pattern)
    title: str = Field(strict=True, min_length=1, max_length=1000)
    summary: str | None = None
    authors: list[HfAuthor] | None = None
    published_at: datetime | None = Field(None, alias="publishedAt")
    upvotes: int | None = Field(None, ge=0)
    ai_summary: str | None = None
    ai_keywords: list[str] | None = None
    github_repo: CodeRepository = Field(None, alias="githubRepo")
    github_stars: int | None = Field(None, ge=0, alias="githubStars")

    @field_validator("title")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("blank title")
        return value


class HfDailyPaper(BaseModel):
    """One entry of the Daily Papers list."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    paper: HfPaper
    num_comments: int | None = Field(None, ge=0, alias="numComments")

    def to_paper(self, *, hf_base_url: str) -> Paper:
        paper = self.paper
        # arXiv versions are not papers of their own; Daily Papers lists the id without one.
        paper_id = without_version(paper.id)
        title = one_line(paper.title)
        authors = tuple(name for a in paper.authors or [] if (name := one_line(a.name)))
        keywords = tuple(
            dict.fromkeys(k for raw in paper.ai_keywords or [] if (k := one_line(raw)))
        )
        return Paper(
            id=paper_id,
            title=title,
            abstract=one_line(paper.summary or ""),
            authors=authors,
            authors_count=len(authors) if authors else None,
            published_date=paper.published_at.date() if paper.published_at else None,
            source=SOURCE,
            url=paper_url(paper_id, title),
            upvotes=paper.upvotes,
            comments=self.num_comments,
            github_stars=paper.github_stars,
            summary=one_line(paper.ai_summary or ""),
            keywords=keywords,
            hf_url=f"{hf_base_url}/papers/{paper_id}",
            github_repo=paper.github_repo,
        )


def fetch_daily_papers(
    client: httpx.Client, *, day: date, settings: Settings
) -> Iterator[SourcePage]:
    """The Daily Papers of `day`, a page at a time, until a short page."""
    url = f"{settings.hf_base_url}/api/daily_papers"
    limit = settings.hf_page_size
    for number in range(settings.source_max_pages):
        what = f"Hugging Face daily papers of {day}, page {number + 1}"
        params: dict[str, str | int] = {"date": day.isoformat(), "limit": limit, "p": number}
        body = get_page(client, url, params=params, settings=settings, what=what)
        entries = _entries(body, what=what)
        yield parse_entries(entries, hf_base_url=settings.hf_base_url)
        if len(entries) < limit:
            return
    log.warning("%s: stopped after %d pages", SOURCE, settings.source_max_pages)


def parse_entries(entries: list[object], *, hf_base_url: str) -> SourcePage:
    page = SourcePage()
    for position, entry in enumerate(entries):
        try:
            page.papers.append(HfDailyPaper.model_validate(entry).to_paper(hf_base_url=hf_base_url))
        except ValidationError as exc:
            page.rejected.append(Rejected(entry=_entry_name(entry, position), reason=_why(exc)))
    return page


def _entries(content: bytes, *, what: str) -> list[object]:
    try:
        body = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"{what}: malformed JSON: {exc}") from exc
    if not isinstance(body, list):
        raise SourceError(f"{what}: expected a JSON list, got {type(body).__name__}")
    return body


def _entry_name(entry: object, position: int) -> str:
    if isinstance(entry, dict) and isinstance(paper := entry.get("paper"), dict):
        paper_id = paper.get("id")
        if isinstance(paper_id, str) and paper_id:
            return paper_id[:64]
    return f"entry {position + 1}"


def _why(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'entry'}: {problem['msg']}"
        for problem in error.errors()
    )
