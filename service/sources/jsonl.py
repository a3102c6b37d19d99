"""Reading papers from JSONL files into validated `Paper`s."""

import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import quote_plus

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from service.errors import InvalidInput
from service.models import CodeRepository, Paper
from service.sources import Rejected, SourcePage

# New-style arXiv identifiers (2007 on), optionally versioned: 2501.01234v2.
ARXIV_ID = re.compile(r"^\d{4}\.\d{4,5}(v\d+)?$")


class PaperRecord(BaseModel):
    """One line of a papers JSONL file. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:/-]+$")
    title: str = Field(min_length=1, max_length=1000)
    abstract: str = ""
    authors: list[str] = []
    authors_count: int | None = Field(None, ge=0)
    published: date | None = None
    published_date: date | None = None
    published_inferred: date | None = None
    url: str | None = Field(None, pattern=r"^https?://")
    upvotes: int | None = Field(None, ge=0)
    comments: int | None = Field(None, ge=0)
    github_stars: int | None = Field(None, ge=0)
    source: str = Field("import", max_length=32)
    github_repo: CodeRepository = None

    @model_validator(mode="after")
    def _count_authors(self) -> "PaperRecord":
        if self.authors and self.authors_count is None:
            self.authors_count = len(self.authors)
        return self

    def to_paper(self) -> Paper:
        paper_id = self.id.removeprefix("arXiv:").removeprefix("arxiv:")
        return Paper(
            id=paper_id,
            title=" ".join(self.title.split()),
            abstract=" ".join(self.abstract.split()),
            authors=tuple(self.authors),
            authors_count=self.authors_count,
            published_date=self.published_date or self.published or self.published_inferred,
            source=self.source,
            url=self.url or paper_url(paper_id, self.title),
            upvotes=self.upvotes,
            comments=self.comments,
            github_stars=self.github_stars,
            github_repo=self.github_repo,
        )


def paper_url(paper_id: str, title: str) -> str:
    """The arXiv abstract page when the id is an arXiv id, else an arXiv title search."""
    if ARXIV_ID.match(paper_id):
        return f"https://arxiv.org/abs/{paper_id}"
    return f"https://arxiv.org/search/?searchtype=title&query={quote_plus(title)}"


def read_papers_file(path: Path) -> SourcePage:
    """The valid papers of a file, as one page of a source, and the lines that were rejected,
    each named `FILE:LINE` (the form editors and compilers use)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise InvalidInput(f"no such file: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc
    result = SourcePage()
    seen: dict[str, int] = {}
    for number, line in _numbered_lines(lines):
        try:
            paper = PaperRecord.model_validate(json.loads(line)).to_paper()
        except json.JSONDecodeError as exc:
            result.rejected.append(Rejected(f"{path}:{number}", f"not JSON: {exc.msg}"))
            continue
        except ValidationError as exc:
            result.rejected.append(Rejected(f"{path}:{number}", _describe(exc)))
            continue
        if paper.id in seen:
            # A later line for the same id wins, as a re-import would.
            result.papers[seen[paper.id]] = paper
        else:
            seen[paper.id] = len(result.papers)
            result.papers.append(paper)
    return result


def _numbered_lines(lines: list[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield number, line


def _describe(error: ValidationError) -> str:
    parts = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "record"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)
