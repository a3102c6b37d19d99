"""The site's pages, rendered from `templates/web/` for one request."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from service.models import DeliveryPreferences, Frequency, Paper
from service.settings import Settings
from service.templating import template_environment
from service.web.csrf import csrf_cookie_of, make_csrf_token, set_csrf_cookie
from service.web.forms import MIX_PERCENT_RANGE, time_zone_names

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class ListedPaper:
    """A paper a page lists: its title and link when stored, else only its id."""

    id: str
    title: str | None = None
    url: str | None = None


def listed_papers(paper_ids: Sequence[str], stored: Mapping[str, Paper]) -> list[ListedPaper]:
    """`paper_ids` as a page lists them, from the `stored` papers among them."""
    listed = []
    for paper_id in paper_ids:
        paper = stored.get(paper_id)
        if paper is None:
            listed.append(ListedPaper(id=paper_id))
            continue
        # Only a web link becomes a link: an imported paper's URL is whatever its file said.
        url = next(
            (u for u in (paper.url, paper.hf_url) if u and u.startswith(("https://", "http://"))),
            None,
        )
        listed.append(ListedPaper(id=paper_id, title=paper.title, url=url))
    return listed


@dataclass(frozen=True)
class Pages:
    """Renders pages for `request`; a page with a form gets a CSRF token, and the cookie it is
    bound to."""

    request: Request
    settings: Settings

    def render(
        self,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
        with_csrf: bool = False,
    ) -> HTMLResponse:
        full: dict[str, Any] = {"base_url": self.settings.public_base_url, **(context or {})}
        cookie = csrf_cookie_of(self.request) if with_csrf else None
        if cookie is not None:
            full["csrf_token"] = make_csrf_token(cookie, settings=self.settings)
        html = template_environment().get_template(f"web/{name}").render(full)
        response = HTMLResponse(html, status_code=status)
        if cookie is not None:
            set_csrf_cookie(response, cookie, settings=self.settings)
        return response

    def stale_form(self) -> HTMLResponse:
        return self.render("form_expired.html", status=403)

    def invalid_link(self) -> HTMLResponse:
        """One page for every link that does not work: tampered, truncated, expired, used,
        meant for something else or for someone erased. It says nothing about which."""
        return self.render("link_invalid.html", status=400)


def form_context(values: Mapping[str, str], errors: Mapping[str, str]) -> dict[str, Any]:
    return {
        "values": values,
        "errors": errors,
        "time_zones": time_zone_names(),
        "weekdays": list(enumerate(WEEKDAY_NAMES)),
        "hours": list(range(24)),
        "mix_range": MIX_PERCENT_RANGE,
    }


def describe_schedule(preferences: DeliveryPreferences) -> str:
    """ "Weekly on Wednesday at 07:00, Europe/Paris time", for a page."""
    if preferences.frequency is Frequency.WEEKLY:
        when = f"Weekly on {WEEKDAY_NAMES[preferences.weekday]}"
    else:
        when = "Daily"
    return f"{when} at {preferences.delivery_hour:02d}:00, {preferences.time_zone} time"
