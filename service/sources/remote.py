"""Polite GET for the paper sources: waits when asked to (429), retries what is transient."""

import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from service.errors import PaperwireError
from service.settings import Settings

log = logging.getLogger(__name__)

# `RateLimit: "api";r=0;t=42` (the IETF draft Hugging Face follows): t is seconds to the reset.
_RATELIMIT_RESET = re.compile(r"(?:^|;)\s*t=(\d+)")
USER_AGENT = "Paperwire (self-hosted research digest)"


class SourceError(PaperwireError):
    """A source could not be read after its retries, or sent what cannot be parsed."""


def make_client(settings: Settings) -> httpx.Client:
    return httpx.Client(
        timeout=settings.source_timeout_seconds,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,
    )


def get_page(
    client: httpx.Client,
    url: str,
    *,
    params: Mapping[str, str | int],
    settings: Settings,
    what: str,
) -> bytes:
    """The body of GET `url`, at most PAPERWIRE_SOURCE_MAX_RESPONSE_BYTES.

    Waits out a 429 as long as the server asks (within a cap), retries 5xx and timeouts with
    capped exponential backoff, and raises `SourceError` naming `what` when the tries run out.
    Other 4xx answers are not retried: asking again would not change them."""
    problem = ""
    for attempt in range(1, settings.source_max_attempts + 1):
        try:
            response, body = _get(client, url, params=params, settings=settings, what=what)
        except httpx.TimeoutException:
            problem = f"timed out after {settings.source_timeout_seconds:g} s"
            wait = _backoff(attempt, settings)
        except httpx.TransportError as exc:
            problem = f"connection failed: {exc}"
            wait = _backoff(attempt, settings)
        else:
            if response.is_success:
                return body
            problem = f"HTTP {response.status_code}"
            if response.status_code == httpx.codes.TOO_MANY_REQUESTS:
                wait = requested_wait(response.headers) or _backoff(attempt, settings)
                if wait > settings.source_max_retry_after_seconds:
                    raise SourceError(
                        f"{what}: rate limited for {wait:g} s, longer than "
                        f"PAPERWIRE_SOURCE_MAX_RETRY_AFTER_SECONDS"
                    )
            elif response.status_code >= 500:
                wait = _backoff(attempt, settings)
            else:
                raise SourceError(f"{what}: {problem} from {response.url}")
        if attempt < settings.source_max_attempts:
            log.info("%s: %s; try %d again in %.2f s", what, problem, attempt + 1, wait)
            time.sleep(wait)
    tries = settings.source_max_attempts
    raise SourceError(f"{what}: {problem}, {tries} {'try' if tries == 1 else 'tries'}")


def _get(
    client: httpx.Client,
    url: str,
    *,
    params: Mapping[str, str | int],
    settings: Settings,
    what: str,
) -> tuple[httpx.Response, bytes]:
    """The response and, when it is a success, its body: read in chunks and refused past the
    cap, so a runaway or hostile answer cannot fill the worker's memory."""
    limit = settings.source_max_response_bytes
    with client.stream("GET", url, params=params) as response:
        if not response.is_success:
            return response, b""
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise SourceError(f"{what}: answer larger than {limit:,} bytes")
            chunks.append(chunk)
        return response, b"".join(chunks)


def _backoff(attempt: int, settings: Settings) -> float:
    return float(
        min(
            settings.source_backoff_seconds * 2 ** (attempt - 1),
            settings.source_backoff_max_seconds,
        )
    )


def requested_wait(headers: httpx.Headers) -> float | None:
    """Seconds the server asked us to wait: `Retry-After` (seconds or a date), else the reset
    time of a `RateLimit` header."""
    retry_after = headers.get("retry-after")
    if retry_after:
        value = retry_after.strip()
        if value.isdigit():
            return float(value)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    ratelimit = headers.get("ratelimit")
    if ratelimit and (match := _RATELIMIT_RESET.search(ratelimit)):
        return float(match.group(1))
    return None
