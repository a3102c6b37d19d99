"""The pages of a signup: the form, and the confirmation link's page and button."""

import time

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from service.errors import InvalidInput, UnknownSubscriber
from service.signup.addresses import normalise_email
from service.signup.subscriptions import confirm_signup, pending_signup, request_signup
from service.signup.tokens import InvalidToken
from service.web.csrf import csrf_ok
from service.web.deps import ClockDep, LimiterDep, PagesDep, SettingsDep, StoreDep, VisitorDep
from service.web.forms import (
    default_form_values,
    read_form,
    read_preferences_form,
    resolve_paper_lines,
    with_liked,
)
from service.web.notices import answer_no_sooner_than, send_after_response
from service.web.rendering import describe_schedule, form_context, listed_papers

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def signup_page(pages: PagesDep, settings: SettingsDep) -> HTMLResponse:
    values = default_form_values(settings)
    context = form_context(values, {}) | {"autofill_zone": True}
    return pages.render("signup.html", context, with_csrf=True)


@router.post("/", response_class=HTMLResponse)
async def signup_submit(
    request: Request,
    background: BackgroundTasks,
    pages: PagesDep,
    settings: SettingsDep,
    store: StoreDep,
    limiter: LimiterDep,
    visitor: VisitorDep,
    now: ClockDep,
) -> HTMLResponse:
    started = time.monotonic()
    form = await read_form(request)
    outcome = read_preferences_form(form)
    values, errors = outcome.values, dict(outcome.errors)
    values["email"] = str(form.get("email", ""))[:320]
    if not csrf_ok(request, form, settings=settings):
        # Shown again with what was typed and a fresh token; nothing is stored or sent.
        stale = {"form": "This form was open too long. Check it and press Subscribe again."}
        context = form_context(values, stale) | {"autofill_zone": False}
        return pages.render("signup.html", context, status=403, with_csrf=True)
    try:
        normalise_email(values["email"], check_deliverability=settings.check_email_deliverability)
    except InvalidInput:
        errors["email"] = "Enter an email address like name@example.org."
    # Resolved even when another field is wrong, so that one answer shows every problem.
    resolved = await resolve_paper_lines(
        [] if "papers" in errors else outcome.paper_lines,
        store=store,
        settings=settings,
        limiter=limiter,
        client_key=visitor.ip,
        now=now(),
    )
    if resolved.problems:
        errors["papers"] = "\n".join(resolved.problems)
    if errors or outcome.preferences is None:
        context = form_context(values, errors) | {"autofill_zone": False}
        return pages.render("signup.html", context, status=422, with_csrf=True)
    mail = await run_in_threadpool(
        request_signup,
        store,
        limiter,
        values["email"],
        with_liked(outcome.preferences, resolved.paper_ids),
        origin=visitor.origin("web signup form"),
        settings=settings,
        now=now(),
    )
    if mail is not None:
        background.add_task(send_after_response, mail, store=store, settings=settings, now=now)
    await answer_no_sooner_than(started, settings=settings)
    return pages.render("check_inbox.html")


@router.get("/c/{token}", response_class=HTMLResponse)
async def confirm_page(
    token: str, pages: PagesDep, settings: SettingsDep, store: StoreDep, now: ClockDep
) -> HTMLResponse:
    try:
        subscriber, preferences = await run_in_threadpool(
            pending_signup, store, token, settings=settings, now=now()
        )
    except (InvalidToken, UnknownSubscriber):
        return pages.invalid_link()
    liked = await run_in_threadpool(store.get_papers, preferences.interests.liked)
    # What the button confirms is shown: exactly what was asked when this link was sent.
    context = {
        "email": subscriber.email,
        "preferences": preferences,
        "schedule": describe_schedule(preferences),
        "liked": listed_papers(preferences.interests.liked, liked),
    }
    return pages.render("confirm.html", context, with_csrf=True)


@router.post("/c/{token}", response_class=HTMLResponse)
async def confirm_submit(
    request: Request,
    token: str,
    pages: PagesDep,
    settings: SettingsDep,
    store: StoreDep,
    visitor: VisitorDep,
    now: ClockDep,
) -> HTMLResponse:
    form = await read_form(request)
    if not csrf_ok(request, form, settings=settings):
        return pages.stale_form()
    try:
        subscriber = await run_in_threadpool(
            confirm_signup,
            store,
            token,
            origin=visitor.origin("web confirm page"),
            settings=settings,
            now=now(),
        )
    except (InvalidToken, UnknownSubscriber):
        return pages.invalid_link()
    return pages.render("confirmed.html", {"email": subscriber.email})
