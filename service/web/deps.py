"""What the routes take from their app and their request, as FastAPI dependencies.

The app's own objects (settings, store, limiters, clock) are set up once by `create_app` and
kept in `app.state`, never in a module: two apps with different settings and stores can run
side by side in one process, as the tests run them.

The dependencies are `async def` though none awaits: FastAPI would run a plain `def` one in a
worker thread, a thread hop per dependency per request for reading an attribute.
"""

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from service.inbound.sns import SigningCertificates
from service.models import Subscriber
from service.settings import Settings
from service.signup.limits import RedisWindowLimiter, WindowLimiter
from service.signup.links import subscriber_for_link
from service.signup.subscriptions import RequestOrigin
from service.signup.tokens import TokenPurpose
from service.store import Store
from service.web.rendering import Pages

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WebState:
    """Everything the routes of one app share, in `app.state.web`."""

    settings: Settings
    store: Store
    # A store the app made from the settings is the app's to close at shutdown.
    owns_store: bool
    limiter: WindowLimiter
    # Set when the settings name a Redis: /healthz pings it, shutdown closes it.
    redis_limiter: RedisWindowLimiter | None
    trusted_proxies: tuple[IPNetwork, ...]
    clock: Clock = utc_now
    # Amazon SNS's signing certificates, fetched by /webhooks/ses once per URL.
    sns_certificates: SigningCertificates = field(default_factory=SigningCertificates)


@dataclass(frozen=True)
class Visitor:
    """Who sent a request, as far as can be told: for the consent record and the limits."""

    ip: str | None
    user_agent: str | None

    def origin(self, via: str) -> RequestOrigin:
        return RequestOrigin(ip=self.ip, user_agent=self.user_agent, via=via)


async def get_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


StateDep = Annotated[WebState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    """This app's settings (never the cached global: apps with other settings run alongside)."""
    return state.settings


async def get_store(state: StateDep) -> Store:
    return state.store


async def get_limiter(state: StateDep) -> WindowLimiter:
    return state.limiter


async def get_clock(state: StateDep) -> Clock:
    return state.clock


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
LimiterDep = Annotated[WindowLimiter, Depends(get_limiter)]
ClockDep = Annotated[Clock, Depends(get_clock)]


async def get_visitor(request: Request, state: StateDep) -> Visitor:
    peer = request.client.host if request.client else None
    forwarded = request.headers.getlist("x-forwarded-for")
    return Visitor(
        ip=client_address(peer, forwarded, trusted=state.trusted_proxies),
        user_agent=request.headers.get("user-agent"),
    )


async def get_pages(request: Request, settings: SettingsDep) -> Pages:
    return Pages(request=request, settings=settings)


VisitorDep = Annotated[Visitor, Depends(get_visitor)]
PagesDep = Annotated[Pages, Depends(get_pages)]


async def manage_link_subscriber(
    token: str, *, store: Store, settings: Settings, now: Clock
) -> Subscriber:
    """The subscriber of a live manage link; raises `TokenExpired` or `InvalidToken`."""
    return await run_in_threadpool(
        subscriber_for_link, store, TokenPurpose.MANAGE, token, settings=settings, now=now()
    )


def client_address(
    peer: str | None,
    forwarded_for: Sequence[str],
    *,
    trusted: Sequence[IPNetwork],
) -> str | None:
    """The client's address: the peer's, unless the peer is a trusted proxy, in which case the
    right-most X-Forwarded-For entry that is not itself a trusted proxy. Entries left of that
    are whatever the client chose to send, and are never believed."""

    def is_trusted(address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in trusted)

    if peer is None or not is_trusted(peer):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a garbled chain: fall back to what the socket says
        if not is_trusted(hop):
            return hop
    return peer
