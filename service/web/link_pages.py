"""The pages a subscriber's links open: manage (with its renewal when expired, the interest
profiles (`profile_pages`), and the papers liked and disliked, each with a remove button),
unsubscribe (with RFC 8058's one-click POST)
and the archived copy of an issue."""

import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from service.errors import UnknownSubscriber
from service.models import Subscriber, UnsubscribeChannel
from service.signup.archive import IssueNotFound, archived_issue_html
from service.signup.limits import WindowLimiter
from service.signup.links import archive_list_url, feed_url, subscriber_for_link
from service.signup.seeds import like_papers
from service.signup.subscriptions import (
    erase_subscriber,
    export_subscriber,
    request_fresh_manage_link,
    set_paused,
    unsubscribe_with_link,
    update_preferences,
)
from service.signup.tokens import InvalidToken, TokenExpired, TokenPurpose
from service.store import Store
from service.web.csrf import csrf_ok
from service.web.deps import (
    Clock,
    ClockDep,
    LimiterDep,
    PagesDep,
    SettingsDep,
    StoreDep,
    Visitor,
    VisitorDep,
    manage_link_subscriber,
)
from service.web.forms import form_values, read_form, read_preferences_form, resolve_paper_lines
from service.web.notices import send_after_response
from service.web.profile_pages import (
    PROFILE_ACTIONS,
    ProfileOutcome,
    change_profile,
    profiles_context,
)
from service.web.rendering import Pages, form_context, listed_papers

ONE_CLICK = "One-Click"
# An archived issue is the email's HTML, whose CSS is inline by design; it runs no script.
ARCHIVE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

router = APIRouter(include_in_schema=False)


def expired_manage_link(pages: Pages, token: str) -> HTMLResponse:
    days = max(1, round(pages.settings.manage_link_max_age_days))
    context = {"token": token, "days": days}
    return pages.render("manage_expired.html", context, status=410, with_csrf=True)


async def manage_view(
    pages: Pages,
    store: Store,
    subscriber: Subscriber,
    values: Mapping[str, str],
    errors: Mapping[str, str],
    *,
    notice: str,
    status: int = 200,
    profiles: ProfileOutcome | None = None,
) -> HTMLResponse:
    """The manage page; `profiles` is a profile action's outcome, a refused form shown back."""
    interests = subscriber.interests
    stored = await run_in_threadpool(store.get_papers, [*interests.liked, *interests.disliked])
    context = form_context(values, errors) | {
        "subscriber": subscriber,
        "notice": notice,
        "autofill_zone": False,
        # Newest first: the votes are kept oldest first.
        "liked": listed_papers(interests.liked[::-1], stored),
        "disliked": listed_papers(interests.disliked[::-1], stored),
        "archive_url": archive_list_url(subscriber, settings=pages.settings),
        "feed_url": feed_url(subscriber, settings=pages.settings),
    }
    context |= profiles_context(subscriber, profiles, max_profiles=pages.settings.max_profiles)
    return pages.render("manage.html", context, status=status, with_csrf=True)


@router.get("/m/{token}", response_class=HTMLResponse)
async def manage_page(
    token: str, pages: PagesDep, settings: SettingsDep, store: StoreDep, now: ClockDep
) -> HTMLResponse:
    try:
        subscriber = await manage_link_subscriber(token, store=store, settings=settings, now=now)
    except TokenExpired:
        return expired_manage_link(pages, token)
    except InvalidToken:
        return pages.invalid_link()
    return await manage_view(pages, store, subscriber, form_values(subscriber), {}, notice="")


@router.post("/m/{token}/renew", response_class=HTMLResponse)
async def manage_link_renew(
    request: Request,
    token: str,
    background: BackgroundTasks,
    pages: PagesDep,
    settings: SettingsDep,
    store: StoreDep,
    limiter: LimiterDep,
    now: ClockDep,
) -> HTMLResponse:
    """From the page of an expired manage link: a fresh one, mailed to the subscriber."""
    form = await read_form(request)
    if not csrf_ok(request, form, settings=settings):
        return pages.stale_form()
    try:
        mail = await run_in_threadpool(
            request_fresh_manage_link, store, limiter, token, settings=settings, now=now()
        )
    except InvalidToken:
        return pages.invalid_link()
    if mail is not None:
        background.add_task(send_after_response, mail, store=store, settings=settings, now=now)
    return pages.render("manage_link_sent.html")


@router.post("/m/{token}", response_model=None)
async def manage_submit(
    request: Request,
    token: str,
    pages: PagesDep,
    settings: SettingsDep,
    store: StoreDep,
    limiter: LimiterDep,
    visitor: VisitorDep,
    now: ClockDep,
) -> Response:
    form = await read_form(request)
    if not csrf_ok(request, form, settings=settings):
        return pages.stale_form()
    try:
        subscriber = await manage_link_subscriber(token, store=store, settings=settings, now=now)
    except TokenExpired:
        return expired_manage_link(pages, token)
    except InvalidToken:
        return pages.invalid_link()
    action = form.get("action")
    if action == "save":
        return await save_preferences(
            pages, store, subscriber, form, limiter=limiter, visitor=visitor, now=now
        )
    if action in PROFILE_ACTIONS:
        try:
            outcome = await change_profile(
                store, subscriber, str(action), form, max_profiles=settings.max_profiles, now=now()
            )
        except UnknownSubscriber:  # erased while the request ran: the link died with the row
            return pages.invalid_link()
        updated = outcome.subscriber
        return await manage_view(
            pages,
            store,
            updated,
            form_values(updated),
            {},
            notice=outcome.notice,
            status=outcome.status,
            profiles=outcome,
        )
    if action == "remove_paper":
        return await remove_paper(pages, store, subscriber, str(form.get("paper_id", "")))
    if action in ("pause", "resume"):
        updated = await run_in_threadpool(
            set_paused,
            store,
            subscriber.id,
            paused=action == "pause",
            origin=visitor.origin("web manage page"),
            now=now(),
        )
        notice = "Paused: no issues until you resume." if action == "pause" else "Resumed."
        return await manage_view(pages, store, updated, form_values(updated), {}, notice=notice)
    if action == "export":
        data = await run_in_threadpool(export_subscriber, store, subscriber.id)
        return Response(
            json.dumps(data, ensure_ascii=False, indent=2),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="paperwire-data.json"'},
        )
    if action == "erase":
        if form.get("confirm_erase") != "yes":
            errors = {"erase": "Tick the box to confirm that everything should be deleted."}
            return await manage_view(
                pages, store, subscriber, form_values(subscriber), errors, notice="", status=422
            )
        await run_in_threadpool(
            erase_subscriber, store, subscriber.id, settings=settings, now=now()
        )
        return pages.render("erased.html")
    return pages.render("form_expired.html", status=400)


async def save_preferences(
    pages: Pages,
    store: Store,
    subscriber: Subscriber,
    form: Mapping[str, Any],
    *,
    limiter: WindowLimiter,
    visitor: Visitor,
    now: Clock,
) -> HTMLResponse:
    """The manage form saved: its preferences, and the papers typed in as new likes. The
    votes already given are never touched (`update_preferences` leaves them be)."""
    outcome = read_preferences_form(form)
    errors = dict(outcome.errors)
    interests = subscriber.interests
    resolved = await resolve_paper_lines(
        [] if "papers" in errors else outcome.paper_lines,
        store=store,
        settings=pages.settings,
        limiter=limiter,
        client_key=visitor.ip,
        now=now(),
        known=(*interests.liked, *interests.disliked),
    )
    if resolved.problems:
        errors["papers"] = "\n".join(resolved.problems)
    if errors or outcome.preferences is None:
        return await manage_view(
            pages, store, subscriber, outcome.values, errors, notice="", status=422
        )
    await run_in_threadpool(update_preferences, store, subscriber.id, outcome.preferences)
    added = await run_in_threadpool(like_papers, store, subscriber.id, resolved.paper_ids)
    updated = await run_in_threadpool(store.get_subscriber, subscriber.id)
    notice = "Saved. Your next issue follows these settings."
    if added:
        notice += f" {added} {'paper' if added == 1 else 'papers'} added to those you like."
    return await manage_view(pages, store, updated, form_values(updated), {}, notice=notice)


async def remove_paper(
    pages: Pages, store: Store, subscriber: Subscriber, paper_id: str
) -> HTMLResponse:
    """A paper taken off the liked or disliked list; one not on either changes nothing."""
    vote = subscriber.interests.vote_of(paper_id)
    notice = ""
    if vote is not None:
        await run_in_threadpool(store.set_paper_vote, subscriber.id, paper_id, None)
        paper = await run_in_threadpool(store.get_paper, paper_id)
        name = f"“{paper.title}”" if paper is not None else paper_id
        notice = f"Removed {name} from the papers you {vote.value}d."
        subscriber = await run_in_threadpool(store.get_subscriber, subscriber.id)
    return await manage_view(pages, store, subscriber, form_values(subscriber), {}, notice=notice)


@router.get("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(
    token: str, pages: PagesDep, settings: SettingsDep, store: StoreDep, now: ClockDep
) -> HTMLResponse:
    # The link is checked against its subscriber's row, and nothing is changed: scanners
    # open this link.
    try:
        await run_in_threadpool(
            subscriber_for_link,
            store,
            TokenPurpose.UNSUBSCRIBE,
            token,
            settings=settings,
            now=now(),
        )
    except InvalidToken:
        return pages.invalid_link()
    return pages.render("unsubscribe.html", with_csrf=True)


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_submit(
    request: Request,
    token: str,
    pages: PagesDep,
    settings: SettingsDep,
    store: StoreDep,
    visitor: VisitorDep,
    now: ClockDep,
) -> HTMLResponse:
    form = await read_form(request)
    one_click = form.get("List-Unsubscribe") == ONE_CLICK
    # RFC 8058: the mail client's POST has no cookie and no CSRF token; the unguessable
    # link is the credential. Anything else is the page's own form.
    if not one_click and not csrf_ok(request, form, settings=settings):
        return pages.stale_form()
    via = "one-click (RFC 8058)" if one_click else "web unsubscribe page"
    try:
        await run_in_threadpool(
            unsubscribe_with_link,
            store,
            token,
            origin=visitor.origin(via),
            settings=settings,
            now=now(),
            channel=UnsubscribeChannel.ONE_CLICK if one_click else UnsubscribeChannel.LINK,
        )
    except InvalidToken:
        return pages.invalid_link()
    return pages.render("unsubscribed.html")


@router.get("/a/{token}", response_class=HTMLResponse)
async def archive_page(
    token: str, pages: PagesDep, settings: SettingsDep, store: StoreDep, now: ClockDep
) -> HTMLResponse:
    try:
        html = await run_in_threadpool(
            archived_issue_html, store, token, settings=settings, now=now()
        )
    except (InvalidToken, IssueNotFound, UnknownSubscriber):
        return pages.invalid_link()
    return HTMLResponse(html, headers={"Content-Security-Policy": ARCHIVE_CSP})
