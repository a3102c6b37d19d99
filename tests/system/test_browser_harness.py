"""The browser harness itself: servers it starts, pages kept on 127.0.0.1, screenshot folders."""

import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.browser import (
    DESKTOP,
    PHONE,
    SCREENSHOTS_DIR,
    BrowserPages,
    Screenshots,
    ServeFolder,
    StartServer,
    screenshot_dir_for,
)
from tests.support.services import ServiceError, group_pids

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Harness</title>
<style>p { font-size: 20px; } @media (max-width: 620px) { p { font-size: 14px; } }</style>
</head><body><p>Served from 127.0.0.1</p></body></html>
"""


def write_site(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(PAGE, encoding="utf-8")
    return folder


def test_static_server_serves_a_folder_and_records_requests(
    static_server: ServeFolder, tmp_path: Path
) -> None:
    server = static_server(write_site(tmp_path / "site"))

    with urllib.request.urlopen(server.url("index.html"), timeout=5) as response:
        body = response.read().decode()

    assert server.url().startswith("http://127.0.0.1:")
    assert "Served from 127.0.0.1" in body
    assert server.requests == ["GET /index.html HTTP/1.1"]


def test_start_server_waits_for_the_url_then_kills_the_server(
    start_server: StartServer, tmp_path: Path
) -> None:
    site = write_site(tmp_path / "site")
    server = start_server(
        [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
        url="http://127.0.0.1:{port}/index.html",
        cwd=site,
    )

    with urllib.request.urlopen(server.url, timeout=5) as response:
        assert response.status == 200
    assert str(server.port) in server.url
    server.stop()
    assert not server.running
    assert group_pids(server._process.pid) == []


def test_start_server_reports_a_server_that_exits_with_its_log(
    start_server: StartServer,
) -> None:
    with pytest.raises(ServiceError, match=r"exited with status 3[\s\S]*no database here"):
        start_server(
            [sys.executable, "-c", "import sys; print('no database here'); sys.exit(3)"],
            url="http://127.0.0.1:{port}/",
        )


def test_a_page_opened_from_a_server_process_follows_the_media_query(
    new_page: BrowserPages, start_server: StartServer, screenshots: Screenshots, tmp_path: Path
) -> None:
    """The pattern for `paperwire serve`: a server in a subprocess, a page at each width."""
    server = start_server(
        [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
        url="http://127.0.0.1:{port}/",
        cwd=write_site(tmp_path / "site"),
    )
    sizes = {}
    for viewport in (PHONE, DESKTOP):
        page = new_page(viewport)
        page.goto(server.url + "index.html")
        sizes[viewport.width] = page.locator("p").evaluate("el => getComputedStyle(el).fontSize")

    shots = screenshots(page, "harness")

    assert sizes == {390: "14px", 1280: "20px"}
    folder = SCREENSHOTS_DIR / "test_a_page_opened_from_a_server_process_follows_the_media_query"
    assert shots == [folder / "harness-390.png", folder / "harness-1280.png"]
    assert all(path.is_file() for path in shots)
    # The screenshots were taken at those widths; the page is back at its own afterwards.
    assert page.viewport_size == DESKTOP.size


def test_a_page_never_reaches_past_127_0_0_1(
    new_page: BrowserPages, static_server: ServeFolder, tmp_path: Path
) -> None:
    site = write_site(tmp_path / "site")
    (site / "leaky.html").write_text(
        '<!doctype html><img src="https://example.org/pixel.png">'
        '<link rel="stylesheet" href="http://example.net/style.css">',
        encoding="utf-8",
    )
    server = static_server(site)
    page = new_page(PHONE)

    page.goto(server.url("leaky.html"))

    assert sorted(new_page.blocked) == [
        ("GET", "http://example.net/style.css"),
        ("GET", "https://example.org/pixel.png"),
    ]
    # Expected here: the fixture fails any other test whose pages asked for these.
    new_page.blocked.clear()


@pytest.mark.parametrize("name", ["test_x[sqlite]", "test_x[a b/c]"])
def test_screenshot_folders_are_safe_names(name: str) -> None:
    folder = screenshot_dir_for(name)

    assert folder.parent == SCREENSHOTS_DIR
    assert folder.name in ("test_x-sqlite", "test_x-a-b-c")
