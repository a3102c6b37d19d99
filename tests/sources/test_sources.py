"""The live paper sources against a scripted server on 127.0.0.1, with recorded responses."""

import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.settings import Settings
from service.sources.arxiv import QueryRefused, announcement_window, fetch_papers_by_id
from service.sources.fetch import FetchFailed, FetchSummary, fetch_papers
from service.sources.huggingface import parse_entries
from service.sources.remote import make_client, requested_wait
from service.store import Store
from tests.support.factories import NOW, make_settings
from tests.support.paper_server import FIXTURES, PaperServer, Reply, fixture_reply

DAY = date(2026, 11, 24)  # a Tuesday: arXiv announces the Monday's submissions
HF = "/api/daily_papers"
ARXIV = "/api/query"
ATOM = "application/atom+xml"


def source_settings(server: PaperServer, **overrides: Any) -> Settings:
    # Tiny waits and timeouts keep the retry tests fast; the logic is the production one.
    fields: dict[str, Any] = {
        "hf_base_url": server.url,
        "arxiv_base_url": server.url,
        "hf_page_size": 3,
        "arxiv_page_size": 3,
        "source_timeout_seconds": 0.3,
        "source_max_attempts": 3,
        "source_backoff_seconds": 0.01,
        "source_backoff_max_seconds": 0.02,
        "arxiv_request_interval_seconds": 0.0,
    }
    fields.update(overrides)
    return make_settings(**fields)


def script_hf_pages(server: PaperServer, day: date = DAY) -> None:
    for number in range(3):
        name = f"hf/daily_papers_{day}_p{number}.json"
        server.script(HF, fixture_reply(name), date=day.isoformat(), p=str(number))


def script_arxiv_pages(server: PaperServer) -> None:
    for start in (0, 3):
        name = f"arxiv/query_2026-11-23_start{start}.xml"
        server.script(ARXIV, fixture_reply(name, content_type=ATOM), start=str(start))


def fetch(
    store: Store, settings: Settings, *sources: str, now: datetime = NOW, day: date = DAY
) -> list[FetchSummary]:
    return fetch_papers(store, settings=settings, now=now, sources=sources, day=day)


def test_it_reads_every_hf_page_until_a_short_one(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    script_hf_pages(paper_server)
    settings = source_settings(paper_server)

    [summary] = fetch(sqlite_store, settings, "hf")

    assert (summary.source, summary.new, summary.updated, summary.rejected) == ("hf", 6, 0, 1)
    assert [params["p"] for _, params in paper_server.requests] == ["0", "1", "2"]
    assert {params["limit"] for _, params in paper_server.requests} == {"3"}
    paper = sqlite_store.get_paper("2511.18001")
    assert paper is not None
    assert paper.title == "One-Step Consistency Distillation for Video Diffusion Models"
    assert paper.summary.startswith("A consistency distillation recipe")
    assert paper.keywords[:2] == ("consistency distillation", "video diffusion")
    assert (paper.upvotes, paper.comments, paper.github_stars) == (87, 5, 412)
    assert paper.url == "https://arxiv.org/abs/2511.18001"
    assert paper.hf_url == f"{paper_server.url}/papers/2511.18001"
    assert paper.github_repo == "https://github.com/example/one-step-video"
    assert paper.authors[-1] == "Emmy Noether" and paper.published_date == date(2026, 11, 23)
    assert paper.source == "hf"
    # An entry without `githubRepo` has no repository.
    without = sqlite_store.get_paper("2511.18002")
    assert without is not None and without.github_repo is None


def test_missing_optional_fields_unicode_and_latex_are_kept_as_given(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    script_hf_pages(paper_server)
    fetch(sqlite_store, source_settings(paper_server), "hf")

    bare = sqlite_store.get_paper("2511.18004")
    assert bare is not None
    assert (bare.abstract, bare.summary, bare.keywords, bare.authors) == ("", "", (), ())
    assert (bare.upvotes, bare.comments, bare.github_stars, bare.published_date) == (
        3,
        None,
        None,
        None,
    )
    fancy = sqlite_store.get_paper("2511.18005")
    assert fancy is not None
    assert fancy.title.startswith("$\\mathcal{O}(n \\log n)$ Attention")
    assert "Über-Efficient" in fancy.title and "日本語" in fancy.title
    assert fancy.authors == ("Zoë Müller-Şahin", "王小明")
    assert sqlite_store.get_paper("not an arXiv id") is None


def test_it_waits_as_long_as_a_429_asks_then_goes_on(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    paper_server.script(
        HF,
        Reply(status=429, headers=(("Retry-After", "1"),)),
        fixture_reply("hf/daily_papers_2026-11-24_p2.json"),
    )
    started = time.monotonic()
    [summary] = fetch(sqlite_store, source_settings(paper_server), "hf")
    assert time.monotonic() - started >= 1.0
    assert summary.new == 1 and paper_server.count(HF) == 2


def test_a_rate_limit_longer_than_the_cap_fails_at_once(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    paper_server.script(HF, Reply(status=429, headers=(("Retry-After", "3600"),)))
    settings = source_settings(paper_server, source_max_retry_after_seconds=60)
    with pytest.raises(FetchFailed, match="rate limited for 3600 s"):
        fetch(sqlite_store, settings, "hf")
    assert paper_server.count(HF) == 1


def test_the_ratelimit_header_and_an_http_date_say_how_long_to_wait() -> None:
    assert requested_wait(httpx.Headers({"RateLimit": '"api";r=0;t=42'})) == 42.0
    assert requested_wait(httpx.Headers({"Retry-After": "7"})) == 7.0
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert requested_wait(httpx.Headers({"Retry-After": past})) == 0.0
    assert requested_wait(httpx.Headers({})) is None


def test_a_500_is_retried_with_backoff(sqlite_store: Store, paper_server: PaperServer) -> None:
    paper_server.script(
        HF,
        Reply(status=500),
        Reply(status=503),
        fixture_reply("hf/daily_papers_2026-11-24_p2.json"),
    )
    [summary] = fetch(sqlite_store, source_settings(paper_server), "hf")
    assert summary.new == 1 and paper_server.count(HF) == 3


def test_a_404_is_not_retried(sqlite_store: Store, paper_server: PaperServer) -> None:
    paper_server.script(HF, Reply(status=404))
    with pytest.raises(FetchFailed, match="HTTP 404"):
        fetch(sqlite_store, source_settings(paper_server), "hf")
    assert paper_server.count(HF) == 1


def test_a_hanging_source_times_out_and_leaves_the_store_unchanged(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    paper_server.script(HF, Reply(delay=1.0, body=b"[]"))
    settings = source_settings(paper_server, source_timeout_seconds=0.2, source_max_attempts=2)
    with pytest.raises(FetchFailed, match=r"timed out after 0.2 s, 2 tries") as failure:
        fetch(sqlite_store, settings, "hf")
    assert failure.value.summaries[0].error is not None
    assert sqlite_store.count_papers() == 0


def test_a_failing_later_page_keeps_the_earlier_pages_whole(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    script_hf_pages(paper_server)
    paper_server.script(HF, Reply(status=502), p="1")
    with pytest.raises(FetchFailed, match="page 2: HTTP 502, 3 tries") as failure:
        fetch(sqlite_store, source_settings(paper_server), "hf")
    [summary] = failure.value.summaries
    assert (summary.new, summary.rejected) == (3, 0)
    ids = {paper.id for paper in sqlite_store.list_papers()}
    assert ids == {"2511.18001", "2511.18002", "2511.18003"}


def test_malformed_json_is_a_clear_error_and_writes_nothing(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    paper_server.script(HF, fixture_reply("hf/malformed.json"))
    with pytest.raises(FetchFailed, match="page 1: malformed JSON"):
        fetch(sqlite_store, source_settings(paper_server), "hf")
    assert sqlite_store.count_papers() == 0


def test_json_that_is_not_a_list_is_refused(sqlite_store: Store, paper_server: PaperServer) -> None:
    paper_server.script(HF, Reply(body=b'{"error": "Invalid date"}'))
    with pytest.raises(FetchFailed, match="expected a JSON list, got dict"):
        fetch(sqlite_store, source_settings(paper_server), "hf")


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("arxiv/malformed.xml", "malformed XML"),
        ("arxiv/entity_expansion.xml", "malformed XML: DTDForbidden"),
        ("arxiv/error.xml", "arXiv refused the query: incorrect id format"),
    ],
)
def test_bad_xml_is_a_clear_error_and_writes_nothing(
    sqlite_store: Store, paper_server: PaperServer, fixture: str, message: str
) -> None:
    paper_server.script(ARXIV, fixture_reply(fixture, content_type=ATOM))
    with pytest.raises(FetchFailed, match=message):
        fetch(sqlite_store, source_settings(paper_server), "arxiv")
    assert sqlite_store.count_papers() == 0


def test_arxiv_pages_keep_categories_and_drop_withdrawn_papers(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    script_arxiv_pages(paper_server)
    [summary] = fetch(sqlite_store, source_settings(paper_server), "arxiv")

    assert (summary.new, summary.updated, summary.rejected) == (4, 0, 1)
    query = paper_server.requests[0][1]
    assert query["search_query"] == (
        "(cat:cs.LG OR cat:cs.CL OR cat:cs.CV) AND submittedDate:[202611230000 TO 202611232359]"
    )
    assert (query["sortBy"], query["max_results"]) == ("submittedDate", "3")
    assert [params["start"] for _, params in paper_server.requests] == ["0", "3"]
    assert sqlite_store.get_paper("2511.18103") is None  # withdrawn
    robust = sqlite_store.get_paper("2511.18101")
    assert robust is not None
    assert robust.title == (
        "Bounds on $\\ell_p$-Robustness of Transformers: A $\\mathbb{R}^d$ View with "
        "Zürich & Kraków Data"
    )
    assert robust.categories == ("cs.LG", "stat.ML")
    assert robust.url == "https://arxiv.org/abs/2511.18101" and robust.hf_url is None
    assert sqlite_store.get_paper("2511.18104v3") is None  # no version in ids
    assert sqlite_store.get_paper("2511.18104") is not None


def test_an_id_list_lookup_answers_the_named_papers_that_arxiv_has(
    paper_server: PaperServer,
) -> None:
    name = "arxiv/id_list_2511.18201_2511.18299.xml"
    paper_server.script(
        ARXIV, fixture_reply(name, content_type=ATOM), id_list="2511.18201,2511.18299"
    )
    settings = source_settings(paper_server)
    with make_client(settings) as client:
        page = fetch_papers_by_id(client, ["2511.18201", "2511.18299"], settings=settings)
        nothing = fetch_papers_by_id(client, [], settings=settings)

    # An id arXiv does not have is left out of its answer.
    (paper,) = page.papers
    assert (paper.id, paper.source) == ("2511.18201", "arxiv")
    assert paper.title == "Sparse Autoencoders Find Interpretable Features in Vision Transformers"
    assert paper.published_date == date(2026, 11, 18)
    assert paper.url == "https://arxiv.org/abs/2511.18201"
    assert nothing.papers == [] and paper_server.count(ARXIV) == 1
    assert paper_server.requests[0][1] == {"id_list": "2511.18201,2511.18299", "max_results": "2"}


def test_an_id_list_lookup_refused_by_arxiv_is_told_apart(paper_server: PaperServer) -> None:
    paper_server.script(ARXIV, fixture_reply("arxiv/error.xml", content_type=ATOM))
    settings = source_settings(paper_server)
    with make_client(settings) as client:
        with pytest.raises(QueryRefused, match=r"incorrect id format for 1234\.12345"):
            fetch_papers_by_id(client, ["1234.12345"], settings=settings)
        # Not an id at all: refused before asking.
        with pytest.raises(QueryRefused, match="not an arXiv id"):
            fetch_papers_by_id(client, ["2511.1820 OR cat:cs.LG"], settings=settings)
    assert paper_server.count(ARXIV) == 1


def test_a_paper_on_both_sources_is_one_paper(store: Store, paper_server: PaperServer) -> None:
    script_hf_pages(paper_server)
    script_arxiv_pages(paper_server)
    hf, arxiv = fetch(store, source_settings(paper_server), "hf", "arxiv")

    assert (hf.new, hf.updated) == (6, 0)
    assert (arxiv.new, arxiv.updated) == (3, 1)
    assert store.count_papers() == 9
    paper = store.get_paper("2511.18001")
    assert paper is not None
    assert (paper.upvotes, paper.comments, paper.github_stars) == (87, 5, 412)
    assert paper.categories == ("cs.CV", "cs.LG")
    assert paper.summary.startswith("A consistency distillation recipe")
    assert paper.hf_url == f"{paper_server.url}/papers/2511.18001"
    # arXiv names no repository; the one Hugging Face gave stays.
    assert paper.github_repo == "https://github.com/example/one-step-video"


def test_a_refetch_updates_signals_and_keeps_their_history(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    settings = source_settings(paper_server, hf_page_size=10)
    page = json.loads((FIXTURES / "hf/daily_papers_2026-11-24_p0.json").read_text("utf-8"))
    paper_server.script(HF, Reply(body=json.dumps(page).encode()))
    fetch(sqlite_store, settings, "hf")

    page[0]["paper"]["upvotes"] = 130
    page[0]["numComments"] = 9
    paper_server.script(HF, Reply(body=json.dumps(page).encode()))
    later = NOW + timedelta(hours=6)
    [summary] = fetch(sqlite_store, settings, "hf", now=later)

    assert (summary.new, summary.updated) == (0, 3)
    assert sqlite_store.count_papers() == 3
    paper = sqlite_store.get_paper("2511.18001")
    assert paper is not None and (paper.upvotes, paper.comments) == (130, 9)
    assert paper.first_seen_at == NOW
    history = [(s.observed_at, s.upvotes, s.comments) for s in sqlite_store.paper_signals(paper.id)]
    assert history == [(NOW, 87, 5), (later, 130, 9)]


def test_a_refetch_without_the_repository_keeps_it_and_a_new_one_replaces_it(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    settings = source_settings(paper_server, hf_page_size=10)
    page = json.loads((FIXTURES / "hf/daily_papers_2026-11-24_p0.json").read_text("utf-8"))
    paper_server.script(HF, Reply(body=json.dumps(page).encode()))
    fetch(sqlite_store, settings, "hf")

    del page[0]["paper"]["githubRepo"]
    page[2]["paper"]["githubRepo"] = "https://github.com/example/citing-agents-v2"
    paper_server.script(HF, Reply(body=json.dumps(page).encode()))
    fetch(sqlite_store, settings, "hf", now=NOW + timedelta(hours=6))

    kept, replaced = (sqlite_store.get_paper(paper_id) for paper_id in ("2511.18001", "2511.18003"))
    assert kept is not None and kept.github_repo == "https://github.com/example/one-step-video"
    assert replaced is not None
    assert replaced.github_repo == "https://github.com/example/citing-agents-v2"


# The `githubRepo` field as the Daily Papers API could carry it, and what is kept of it.
REPOSITORIES = [
    ("https://github.com/example/one-step-video", "https://github.com/example/one-step-video"),
    ("http://github.com/example/repo", "https://github.com/example/repo"),
    (" https://www.github.com/example/repo/tree/main/src ", "https://www.github.com/example/repo/tree/main/src"),
    ("https://GitLab.com/group/project", "https://gitlab.com/group/project"),
    ("https://codeberg.org/owner/repo", "https://codeberg.org/owner/repo"),
    ("javascript:alert(1)", None),
    ("JavaScript://github.com/%0Aalert(1)", None),
    ("data:text/html,<script>alert(1)</script>", None),
    ("ftp://github.com/example/repo", None),
    ("github.com/example/repo", None),
    ("//github.com/example/repo", None),
    ("https://github.com", None),
    ("https://github.com/", None),
    ("https://github.com.evil.example/example/repo", None),
    ("https://evil.example/github.com/example/repo", None),
    ("https://github.com@evil.example/example/repo", None),
    ("https://user@github.com/example/repo", None),
    ("https://github.com:8443/example/repo", None),
    ("https://github.com/example/repo\nBcc: x", None),
    ("https://github.com/example/re po", None),
    ("https://github.com/example/re\u2028po", None),
    ("https://example.org/one-step-video", None),
    ("", None),
    (None, None),
    (42, None),
    (["https://github.com/example/repo"], None),
]  # fmt: skip


@pytest.mark.parametrize(("given", "kept"), REPOSITORIES)
def test_a_repository_is_kept_only_as_a_code_hosts_web_link(
    given: object, kept: str | None
) -> None:
    entry = {"paper": {"id": "2511.18001", "title": "A paper", "githubRepo": given}}

    page = parse_entries([entry], hf_base_url="https://huggingface.co")

    # Whatever the field holds, the paper itself is kept.
    assert page.rejected == []
    assert [paper.github_repo for paper in page.papers] == [kept]


def test_arxiv_announces_nothing_on_a_weekend(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    saturday = date(2026, 11, 28)
    [summary] = fetch(sqlite_store, source_settings(paper_server), "arxiv", day=saturday)
    assert (summary.new, summary.error) == (0, None)
    assert "no arXiv announcement on 2026-11-28" in summary.note
    assert paper_server.requests == []


def test_an_empty_day_is_a_normal_day(sqlite_store: Store, paper_server: PaperServer) -> None:
    paper_server.script(HF, Reply(body=b"[]"))
    [summary] = fetch(sqlite_store, source_settings(paper_server), "hf")
    assert (summary.new, summary.updated, summary.rejected, summary.error) == (0, 0, 0, None)


@pytest.mark.parametrize(
    ("day", "window"),
    [
        (date(2026, 11, 24), (date(2026, 11, 23), date(2026, 11, 23))),  # Tuesday
        (date(2026, 11, 23), (date(2026, 11, 20), date(2026, 11, 22))),  # Monday: Fri-Sun
        (date(2026, 11, 29), None),  # Sunday
        (date(2026, 12, 25), None),  # a holiday
        (date(2026, 12, 28), (date(2026, 12, 24), date(2026, 12, 27))),  # after it
    ],
)
def test_the_arxiv_calendar(day: date, window: tuple[date, date] | None) -> None:
    assert announcement_window(day, holidays=frozenset({date(2026, 12, 25)})) == window


def test_the_daily_run_reads_yesterday_and_today_of_the_configured_sources(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    paper_server.script(HF, Reply(body=b"[]"))
    settings = source_settings(paper_server, paper_sources="hf")
    now = datetime(2026, 11, 24, 5, 30, tzinfo=UTC)
    [summary] = fetch_papers(sqlite_store, settings=settings, now=now)
    assert summary.source == "hf"
    assert [params["date"] for _, params in paper_server.requests] == ["2026-11-23", "2026-11-24"]


def test_an_unknown_source_is_refused(sqlite_store: Store) -> None:
    with pytest.raises(Exception, match="unknown paper source 'rss'"):
        fetch_papers(sqlite_store, settings=make_settings(), now=NOW, sources=["rss"])


def test_a_source_that_is_down_is_reported_after_its_tries(sqlite_store: Store) -> None:
    closed = make_settings(
        hf_base_url="http://127.0.0.1:9",
        source_max_attempts=2,
        source_backoff_seconds=0.01,
        source_timeout_seconds=0.5,
    )
    with pytest.raises(FetchFailed, match=r"hf: .*page 1: connection failed: .*2 tries"):
        fetch(sqlite_store, closed, "hf")
    assert sqlite_store.count_papers() == 0


def test_settings_refuse_an_unknown_source_and_a_bad_holiday() -> None:
    with pytest.raises(ValueError, match="unknown paper source 'rss'"):
        make_settings(paper_sources="hf, rss")
    with pytest.raises(ValueError, match="invalid arXiv holiday"):
        make_settings(arxiv_holidays="2026-12-25,Christmas")
    settings = make_settings(paper_sources=" HF , arxiv ", arxiv_holidays="2026-12-25")
    assert settings.paper_source_names == ("hf", "arxiv")
    assert settings.arxiv_holiday_dates == frozenset({date(2026, 12, 25)})


def test_an_oversized_answer_is_refused_unread(
    sqlite_store: Store, paper_server: PaperServer
) -> None:
    paper_server.script(HF, fixture_reply("hf/daily_papers_2026-11-24_p0.json"))
    settings = source_settings(paper_server, source_max_response_bytes=1000)
    with pytest.raises(FetchFailed, match="answer larger than 1,000 bytes"):
        fetch(sqlite_store, settings, "hf")
    assert sqlite_store.count_papers() == 0
