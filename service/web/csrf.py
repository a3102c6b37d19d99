"""The CSRF token of every form POST: a random cookie, and a signed token bound to it that the
page puts in the form. A POST is taken only when the two match."""

import secrets
from datetime import timedelta

from fastapi import Request, Response
from starlette.datastructures import FormData

from service.settings import Settings
from service.signup.tokens import InvalidToken, TokenPurpose, make_token, read_token

CSRF_COOKIE = "paperwire_csrf"
CSRF_FIELD = "csrf_token"
# Long enough to fill in a form after a coffee; a stale form just asks to be sent again.
CSRF_MAX_AGE = timedelta(hours=12)


def csrf_cookie_of(request: Request) -> str:
    """The visitor's CSRF cookie value, or a new one to set."""
    value = request.cookies.get(CSRF_COOKIE, "")
    return value if 16 <= len(value) <= 64 and value.isascii() else secrets.token_urlsafe(18)


def make_csrf_token(cookie: str, *, settings: Settings) -> str:
    return make_token(TokenPurpose.CSRF, cookie, secret_key=settings.secret_key.get_secret_value())


def set_csrf_cookie(response: Response, cookie: str, *, settings: Settings) -> None:
    response.set_cookie(
        CSRF_COOKIE,
        cookie,
        max_age=int(CSRF_MAX_AGE.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=settings.public_base_url.startswith("https://"),
    )


def csrf_ok(request: Request, form: FormData, *, settings: Settings) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    field = form.get(CSRF_FIELD)
    if not cookie or not isinstance(field, str):
        return False
    try:
        bound = read_token(
            TokenPurpose.CSRF, field, secret_keys=settings.secret_keys, max_age=CSRF_MAX_AGE
        )
    except InvalidToken:
        return False
    return secrets.compare_digest(bound, cookie)
