"""The page a digest's 👍/👎 link opens (`/f/{token}?vote=like`), and the thanks page with its undo.

Opening the link records nothing: mail scanners open every link of a message, so the page
shows the paper and the verdict's button, and only its POST records. The token stands for the
reader's say on one paper, not for one verdict: the POST may record like, dislike or none,
which is how "Less like this" replaces "More like this" and how undo puts back what was there.
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from service.mail.compose import paper_view
from service.models import Vote
from service.signup.feedback import (
    FeedbackRecorded,
    FeedbackTarget,
    feedback_target,
    record_feedback,
)
from service.signup.tokens import InvalidToken
from service.web.csrf import csrf_ok
from service.web.deps import ClockDep, PagesDep, SettingsDep, StoreDep
from service.web.forms import read_form

# The form's value for "no verdict on this paper", as undo may restore.
NO_VOTE = "none"
VOTES = {vote.value: vote for vote in Vote}

router = APIRouter(include_in_schema=False)


def vote_of_form(value: object) -> Vote | None:
    """The verdict a form posted: like, dislike or none; ValueError for anything else."""
    if value == NO_VOTE:
        return None
    if isinstance(value, str) and value in VOTES:
        return VOTES[value]
    raise ValueError(f"not a verdict: {str(value)[:20]!r}")


def paper_context(target: FeedbackTarget) -> dict[str, Any]:
    """The paper as the pages show it: its digest view, or only its id when not stored."""
    return {
        "paper": paper_view(target.paper) if target.paper is not None else None,
        "paper_id": target.paper_id,
    }


@router.get("/f/{token}", response_class=HTMLResponse)
async def feedback_page(
    token: str,
    pages: PagesDep,
    settings: SettingsDep,
    store: StoreDep,
    now: ClockDep,
    vote: str | None = None,
) -> HTMLResponse:
    try:
        target = await run_in_threadpool(
            feedback_target, store, token, settings=settings, now=now()
        )
    except InvalidToken:
        return pages.invalid_link()
    # The link's verdict is the one button; a link cut short of its `?vote=` offers both.
    chosen = VOTES.get(vote or "")
    context = paper_context(target) | {
        "choices": [chosen] if chosen is not None else list(Vote),
        "other": _other(chosen),
        "current": target.vote,
    }
    return pages.render("feedback.html", context, with_csrf=True)


@router.post("/f/{token}", response_class=HTMLResponse)
async def feedback_submit(
    request: Request,
    token: str,
    pages: PagesDep,
    settings: SettingsDep,
    store: StoreDep,
    now: ClockDep,
) -> HTMLResponse:
    form = await read_form(request)
    if not csrf_ok(request, form, settings=settings):
        return pages.stale_form()
    try:
        vote = vote_of_form(form.get("vote"))
    except ValueError:
        return pages.render("form_expired.html", status=400)
    try:
        recorded = await run_in_threadpool(
            record_feedback, store, token, vote, settings=settings, now=now()
        )
    except InvalidToken:
        return pages.invalid_link()
    return pages.render(
        "feedback_saved.html",
        thanks_context(recorded, undone=form.get("undo") == "yes"),
        with_csrf=True,
    )


def thanks_context(recorded: FeedbackRecorded, *, undone: bool) -> dict[str, Any]:
    """The thanks page carries the verdict an undo restores; after an undo, none."""
    previous = recorded.previous
    undo_to = None if undone or not recorded.changed else (previous or NO_VOTE)
    return paper_context(recorded.target) | {
        "vote": recorded.target.vote,
        "changed": recorded.changed,
        "undone": undone,
        "undo_to": undo_to,
    }


def _other(vote: Vote | None) -> Vote | None:
    if vote is None:
        return None
    return Vote.DISLIKE if vote is Vote.LIKE else Vote.LIKE
