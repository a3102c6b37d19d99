"""A visitor's whole journey in headless Chromium against `paperwire serve` on 127.0.0.1:
sign up, confirm from the emailed link, get a digest, change interests from its manage link,
unsubscribe from its unsubscribe link; and one who likes papers, follows authors and leaves
topics out, on the signup and manage pages. Screenshots of each page at phone and desktop widths
go to var/test-artifacts/screenshots/<test name>/."""

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from service.models import SubscriptionStatus, Vote
from service.signup.links import subscriber_url
from service.signup.tokens import TokenPurpose
from service.store import Store
from tests.support.browser import DESKTOP, PHONE, BrowserPages, Screenshots, StartServer
from tests.support.factories import BACKGROUND_PAPERS, make_paper, make_settings
from tests.support.paper_server import PaperServer, fixture_reply
from tests.support.services import wait_until
from tests.support.smtp_sink import SmtpSink

PAPERWIRE = str(Path(sys.executable).parent / "paperwire")
SECRET = "browser-test-secret"


def links_in(message: EmailMessage, base_url: str) -> list[str]:
    """Every link to the app in the message's HTML part, in order."""
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    return [
        url for url in re.findall(r'href="([^"]+)"', html.get_content()) if url.startswith(base_url)
    ]


def test_a_visitor_signs_up_confirms_changes_interests_and_leaves_in_a_real_browser(
    new_page: BrowserPages,
    screenshots: Screenshots,
    start_server: StartServer,
    smtp_sink: SmtpSink,
    redis_url: str,
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'paperwire.db'}"
    store = Store(database_url)
    store.upgrade()
    app_env = {
        "PAPERWIRE_DATABASE_URL": database_url,
        "PAPERWIRE_MAIL_URL": smtp_sink.url,
        "PAPERWIRE_REDIS_URL": redis_url,
        "PAPERWIRE_SECRET_KEY": SECRET,
        "PAPERWIRE_MAIL_FROM_ADDRESS": "digest@paperwire.test",
    }
    server = start_server(
        [PAPERWIRE, "serve", "--host", "127.0.0.1", "--port", "{port}"],
        url="http://127.0.0.1:{port}/healthz",
        env={**app_env, "PAPERWIRE_PUBLIC_BASE_URL": "http://127.0.0.1:{port}"},
    )
    base = f"http://127.0.0.1:{server.port}"
    # The browser says it is in Berlin; the form picks that zone up by itself.
    page = new_page(PHONE, timezone_id="Europe/Berlin", locale="en-GB")

    page.goto(f"{base}/")
    assert page.locator("#time_zone").input_value() == "Europe/Berlin"
    page.fill("#email", "Ada.Lovelace@Example.org")
    page.fill("#interests", "diffusion models\nconsistency models")
    screenshots(page, "1-signup")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your inbox")
    screenshots(page, "2-check-your-inbox")

    wait_until(lambda: len(smtp_sink.messages) >= 1, timeout=10, what="the confirmation email")
    confirmation = smtp_sink.messages[0]
    assert confirmation.rcpt_tos == ("ada.lovelace@example.org",)
    (confirm_url,) = [u for u in links_in(confirmation.message, base) if "/c/" in u]

    page.goto(confirm_url)
    screenshots(page, "3-confirm")
    # Opening the link confirms nothing (mail scanners open links); the button does.
    assert store.find_subscriber("ada.lovelace@example.org").status is SubscriptionStatus.PENDING
    page.click("text=Confirm subscription")
    page.wait_for_selector("text=You're subscribed")
    screenshots(page, "4-confirmed")
    subscriber = store.find_subscriber("ada.lovelace@example.org")
    assert subscriber.status is SubscriptionStatus.CONFIRMED
    assert subscriber.time_zone == "Europe/Berlin"
    assert subscriber.interests.keywords == ("diffusion models", "consistency models")

    # A digest goes out, and its links lead back to the app.
    now = datetime.now(UTC)
    store.upsert_papers(BACKGROUND_PAPERS, now=now - timedelta(days=60))
    store.upsert_papers(
        [make_paper(id="2511.09001", title="Consistency models for one-step diffusion")],
        now=now - timedelta(hours=1),
    )
    # The day's run, as an operator starts it (the browser's event loop owns this thread).
    run = subprocess.run(
        [PAPERWIRE, "digest", "run", "--date", now.date().isoformat()],
        env={**os.environ, **app_env, "PAPERWIRE_PUBLIC_BASE_URL": base},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    wait_until(lambda: len(smtp_sink.messages) >= 2, timeout=10, what="the digest")
    digest = smtp_sink.messages[-1].message
    links = links_in(digest, base)
    (manage_url,) = {u for u in links if "/m/" in u}
    (unsubscribe_url,) = {u for u in links if "/u/" in u}

    page.goto(manage_url)
    assert page.locator("#interests").input_value() == "diffusion models\nconsistency models"
    page.fill("#interests", "protein folding")
    screenshots(page, "5-manage")
    page.click("text=Save changes")
    page.wait_for_selector("text=Saved")
    screenshots(page, "6-saved")
    assert store.get_subscriber(subscriber.id).interests.keywords == ("protein folding",)

    page.goto(unsubscribe_url)
    screenshots(page, "7-unsubscribe")
    # The page asks; only the button changes anything.
    assert store.get_subscriber(subscriber.id).status is SubscriptionStatus.CONFIRMED
    page.click("button[type=submit]")
    page.wait_for_selector("text=unsubscribed")
    screenshots(page, "8-unsubscribed")
    assert store.get_subscriber(subscriber.id).status is SubscriptionStatus.UNSUBSCRIBED

    # Every page fits a phone and a desktop without sideways scrolling.
    for viewport in (PHONE, DESKTOP):
        page.set_viewport_size(viewport.size)
        for url in (f"{base}/", confirm_url, manage_url, unsubscribe_url):
            page.goto(url)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport.width, (url, viewport, width)
    store.close()


def test_a_reader_likes_papers_follows_authors_and_leaves_topics_out_in_a_real_browser(
    new_page: BrowserPages,
    screenshots: Screenshots,
    start_server: StartServer,
    smtp_sink: SmtpSink,
    redis_url: str,
    paper_server: PaperServer,
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'paperwire.db'}"
    store = Store(database_url)
    store.upgrade()
    store.upsert_papers(
        [
            make_paper(id="2511.09001", title="Consistency models for one-step diffusion"),
            make_paper(
                id="2511.09002",
                title="Sparse attention for very long documents, with a title long enough "
                "to wrap on a phone",
                url="https://arxiv.org/abs/2511.09002",
            ),
        ],
        now=datetime.now(UTC) - timedelta(days=2),
    )
    paper_server.script(
        "/api/query",
        fixture_reply(
            "arxiv/id_list_2511.18201_2511.18299.xml", content_type="application/atom+xml"
        ),
        id_list="2511.18201",
    )
    server = start_server(
        [PAPERWIRE, "serve", "--host", "127.0.0.1", "--port", "{port}"],
        url="http://127.0.0.1:{port}/healthz",
        env={
            "PAPERWIRE_DATABASE_URL": database_url,
            "PAPERWIRE_MAIL_URL": smtp_sink.url,
            "PAPERWIRE_REDIS_URL": redis_url,
            "PAPERWIRE_SECRET_KEY": SECRET,
            "PAPERWIRE_MAIL_FROM_ADDRESS": "digest@paperwire.test",
            "PAPERWIRE_PUBLIC_BASE_URL": "http://127.0.0.1:{port}",
            "PAPERWIRE_ARXIV_BASE_URL": paper_server.url,
        },
    )
    base = f"http://127.0.0.1:{server.port}"
    page = new_page(PHONE, timezone_id="Europe/Berlin", locale="en-GB")

    page.goto(f"{base}/")
    page.fill("#email", "grace@example.org")
    page.fill(
        "#papers",
        "https://arxiv.org/abs/2511.18201v2\nconsistency MODELS for one-step diffusion\n"
        "A paper nobody wrote",
    )
    page.fill("#authors", "J. Müller, Amara Okafor")
    page.fill("#excluded", "robotics, quantum computing")
    page.click("button[type=submit]")
    # One line found nothing: the form comes back with that line named and all else kept.
    page.wait_for_selector("text=No paper found for “A paper nobody wrote”.")
    assert page.locator("#authors").input_value() == "J. Müller, Amara Okafor"
    assert page.locator("#papers").get_attribute("aria-invalid") == "true"
    screenshots(page, "1-signup-with-an-unknown-title")
    typed = page.locator("#papers").input_value()
    page.fill("#papers", typed.replace("\nA paper nobody wrote", ""))
    screenshots(page, "2-signup")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your inbox")

    wait_until(lambda: len(smtp_sink.messages) >= 1, timeout=10, what="the confirmation email")
    (confirm_url,) = [u for u in links_in(smtp_sink.messages[0].message, base) if "/c/" in u]
    page.goto(confirm_url)
    page.wait_for_selector("text=Sparse Autoencoders Find Interpretable Features")
    screenshots(page, "3-confirm")
    page.click("text=Confirm subscription")
    page.wait_for_selector("text=You're subscribed")
    subscriber = store.find_subscriber("grace@example.org")
    assert subscriber.interests.liked == ("2511.18201", "2511.09001")
    assert subscriber.interests.authors == ("J. Müller", "Amara Okafor")
    assert subscriber.interests.excluded == ("robotics", "quantum computing")

    store.set_paper_vote(subscriber.id, "2511.09002", Vote.DISLIKE)
    manage_url = subscriber_url(
        TokenPurpose.MANAGE,
        subscriber,
        settings=make_settings(public_base_url=base, secret_key=SECRET),
        now=datetime.now(UTC),
    )
    page.goto(manage_url)
    assert page.locator("#excluded").input_value() == "robotics, quantum computing"
    page.wait_for_selector("text=Sparse attention for very long documents")
    screenshots(page, "4-manage")
    page.click("button[aria-label='Remove Consistency models for one-step diffusion']")
    page.wait_for_selector("text=Removed “Consistency models for one-step diffusion”")
    screenshots(page, "5-removed")
    page.fill("#interests", "interpretability")
    page.click("text=Save changes")
    page.wait_for_selector("text=Saved")
    after = store.get_subscriber(subscriber.id).interests
    assert after.keywords == ("interpretability",)
    assert (after.liked, after.disliked) == (("2511.18201",), ("2511.09002",))
    assert after.authors == ("J. Müller", "Amara Okafor")

    for viewport in (PHONE, DESKTOP):
        page.set_viewport_size(viewport.size)
        for url in (f"{base}/", manage_url):
            page.goto(url)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport.width, (url, viewport, width)
    store.close()
