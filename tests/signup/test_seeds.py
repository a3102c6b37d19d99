"""Papers a reader likes, as typed, resolved to stored papers on SQLite and PostgreSQL; an
arXiv id not stored yet is looked up on a scripted arXiv on 127.0.0.1."""

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest

from service.models import Vote
from service.settings import Settings
from service.signup.limits import MemoryWindowLimiter
from service.signup.seeds import (
    LOOKUPS_PER_CLIENT_PER_MINUTE,
    ArxivLookup,
    ResolvedPapers,
    arxiv_lookup,
    check_paper_lines,
    like_papers,
    paper_lines,
    resolve_papers,
)
from service.sources import SourcePage
from service.sources.remote import SourceError
from service.store import Store
from tests.support.factories import NOW, add_subscriber, make_paper, make_settings
from tests.support.paper_server import PaperServer, Reply, fixture_reply

ARXIV = "/api/query"
ID_LIST = "arxiv/id_list_2511.18201_2511.18299.xml"
PAPERS = [
    make_paper(id="2511.00001", title="Consistency models for fast diffusion sampling"),
    make_paper(id="2511.00002", title="Graph Networks: A Survey"),
    make_paper(id="2511.00003", title="Graph networks"),
    make_paper(id="40a9a5db52d6", title="Vertical Federated Graph Neural Network"),
    # The same title under an arXiv id and an imported one; and twice under arXiv ids.
    make_paper(id="f00dfeed0001", title="Attention over everything"),
    make_paper(id="2511.00004", title="Attention over everything"),
    make_paper(id="2511.00005", title="Scaling laws"),
    make_paper(id="2511.00006", title="Scaling Laws"),
    make_paper(id="2511.00007", title="100% _accurate_ parsing"),
]


@pytest.fixture
def papers(store: Store) -> Store:
    store.upsert_papers(PAPERS, now=NOW - timedelta(days=3))
    return store


def lookup_settings(server: PaperServer) -> Settings:
    return make_settings(arxiv_base_url=server.url, source_backoff_seconds=0.01)


def resolve(store: Store, *lines: str, lookup: ArxivLookup | None = None) -> ResolvedPapers:
    return resolve_papers(store, lines, lookup=lookup, now=NOW)


@pytest.mark.parametrize(
    ("typed", "paper_id"),
    [
        ("2511.00001", "2511.00001"),
        ("2511.00001v3", "2511.00001"),
        ("arXiv:2511.00001", "2511.00001"),
        ("https://arxiv.org/abs/2511.00001", "2511.00001"),
        ("http://arxiv.org/abs/2511.00001v2?context=cs.LG", "2511.00001"),
        ("https://arxiv.org/pdf/2511.00001v2.pdf", "2511.00001"),
        ("https://export.arxiv.org/pdf/2511.00001", "2511.00001"),
        ("https://huggingface.co/papers/2511.00001", "2511.00001"),
        ("https://huggingface.co/papers/2511.00001#community", "2511.00001"),
        ("40a9a5db52d6", "40a9a5db52d6"),
        ("consistency MODELS for   fast diffusion sampling", "2511.00001"),
        ("Graph Networks: a survey", "2511.00002"),
        ("Graph networks", "2511.00003"),
        # Punctuation aside, when nothing matches exactly.
        ("Graph networks - a survey.", "2511.00002"),
        ("vertical federated graph neural network!", "40a9a5db52d6"),
        ("Attention over everything", "2511.00004"),
        ("100% _accurate_ parsing", "2511.00007"),
    ],
)
def test_ids_links_stored_ids_and_titles_name_stored_papers(
    papers: Store, typed: str, paper_id: str
) -> None:
    assert resolve(papers, typed) == ResolvedPapers(paper_ids=(paper_id,))


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("A paper nobody wrote", "No paper found for “A paper nobody wrote”."),
        ("2511.09999", "No paper found for “2511.09999”."),
        ("%", "No paper found for “%”."),
        ("2513.00001", "“2513.00001” is not an arXiv id."),
        ("https://example.org/paper.pdf", "is not a link to a paper"),
        ("https://arxiv.org/list/cs.LG/new", "is not a link to a paper"),
        ("scaling laws", "Several papers are titled “scaling laws”"),
    ],
)
def test_a_line_that_names_no_paper_says_why(papers: Store, typed: str, problem: str) -> None:
    resolved = resolve(papers, typed)
    assert resolved.paper_ids == ()
    (said,) = resolved.problems
    assert problem in said


def test_lines_keep_their_order_each_paper_once_and_every_problem(papers: Store) -> None:
    resolved = resolve(
        papers, "Graph networks", "nope", "2511.00001", "2511.00003v2", "https://x.test/"
    )
    assert resolved.paper_ids == ("2511.00003", "2511.00001")
    assert len(resolved.problems) == 2 and not resolved.lookup_failed


def test_papers_already_liked_resolve_even_when_not_stored(papers: Store) -> None:
    resolved = resolve_papers(
        papers,
        ["2401.99999", "gone-paper"],
        lookup=None,
        now=NOW,
        known={"2401.99999", "gone-paper"},
    )
    assert resolved.paper_ids == ("2401.99999", "gone-paper")


def test_an_arxiv_paper_not_stored_is_looked_up_and_stored_as_first_seen_when_published(
    papers: Store, paper_server: PaperServer
) -> None:
    paper_server.script(
        ARXIV,
        fixture_reply(ID_LIST, content_type="application/atom+xml"),
        id_list="2511.18201,2511.18299",
    )
    settings = lookup_settings(paper_server)
    lookup = arxiv_lookup(settings, limiter=MemoryWindowLimiter())

    resolved = resolve(
        papers,
        "https://arxiv.org/abs/2511.18201v1",
        "2511.18299",
        "2511.00001",
        lookup=lookup,
    )

    assert resolved.paper_ids == ("2511.18201", "2511.00001")
    assert resolved.problems == ("No paper found for “2511.18299”.",)
    # One call for every id the store lacked, none for those it holds.
    assert paper_server.requests == [
        (ARXIV, {"id_list": "2511.18201,2511.18299", "max_results": "2"})
    ]
    fetched = papers.get_paper("2511.18201")
    assert fetched is not None
    assert fetched.title == "Sparse Autoencoders Find Interpretable Features in Vision Transformers"
    assert fetched.authors == ("Jürgen Müller", "Amara Okafor")
    assert fetched.categories == ("cs.CV", "cs.LG")
    # An old paper a reader likes is not news: no digest takes it as a new paper.
    assert fetched.first_seen_at == datetime(2026, 11, 18, tzinfo=UTC)
    # Stored now: asked again, arXiv is not.
    assert resolve(papers, "2511.18201", lookup=lookup).paper_ids == ("2511.18201",)
    assert len(paper_server.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [Reply(status=503), Reply(status=429, headers=(("Retry-After", "30"),))],
    ids=["down", "rate-limited"],
)
def test_when_arxiv_cannot_be_asked_those_lines_say_so_at_once(
    papers: Store, paper_server: PaperServer, reply: Reply
) -> None:
    paper_server.script(ARXIV, reply)
    lookup = arxiv_lookup(lookup_settings(paper_server), limiter=MemoryWindowLimiter())

    resolved = resolve(papers, "2511.18201", "Graph networks", "2511.18299", lookup=lookup)

    assert resolved.paper_ids == ("2511.00003",)
    assert resolved.lookup_failed
    assert resolved.problems == (
        "arXiv could not be asked about “2511.18201” just now: try again later.",
        "arXiv could not be asked about “2511.18299” just now: try again later.",
    )
    # One try: a reader is waiting, and the daily fetch's retries would keep them waiting.
    assert paper_server.count(ARXIV) == 1


def test_an_id_arxiv_refuses_is_not_found(papers: Store, paper_server: PaperServer) -> None:
    error = fixture_reply("arxiv/error.xml", content_type="application/atom+xml")
    paper_server.script(ARXIV, error)
    lookup = arxiv_lookup(lookup_settings(paper_server), limiter=MemoryWindowLimiter())
    resolved = resolve(papers, "1201.12345", lookup=lookup)
    assert resolved == ResolvedPapers(paper_ids=(), problems=("No paper found for “1201.12345”.",))


def test_without_a_lookup_only_stored_papers_resolve(papers: Store) -> None:
    resolved = resolve(papers, "2511.18201")
    assert resolved.problems == ("No paper found for “2511.18201”.",)


def test_one_client_gets_a_share_of_the_arxiv_lookups(
    papers: Store, paper_server: PaperServer
) -> None:
    paper_server.script(
        ARXIV, Reply(status=200, body=b"<feed xmlns='http://www.w3.org/2005/Atom'/>")
    )
    settings = lookup_settings(paper_server)
    limiter = MemoryWindowLimiter()

    def ask(client: str) -> ResolvedPapers:
        lookup = arxiv_lookup(settings, limiter=limiter, client_key=client)
        return resolve(papers, "2511.18201", lookup=lookup)

    answers = [ask("198.51.100.1") for _ in range(LOOKUPS_PER_CLIENT_PER_MINUTE + 1)]
    assert [answer.lookup_failed for answer in answers] == [
        *[False] * LOOKUPS_PER_CLIENT_PER_MINUTE,
        True,
    ]
    assert not ask("198.51.100.2").lookup_failed
    assert paper_server.count(ARXIV) == LOOKUPS_PER_CLIENT_PER_MINUTE + 1


def test_a_lookup_that_fails_for_a_reason_of_its_own_is_a_failed_lookup(papers: Store) -> None:
    def broken(arxiv_ids: Sequence[str]) -> SourcePage:
        raise SourceError("arXiv: connection failed")

    assert resolve(papers, "2511.18201", lookup=broken).lookup_failed


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("\n".join(f"2511.{n:05d}" for n in range(21)), "Up to 20 papers"),
        ("x" * 301, "under 300 characters"),
        ("\n\n  2511.00001  \n" + "y" * 300, None),
    ],
)
def test_one_submit_asks_for_at_most_20_lines_of_300_characters(
    typed: str, problem: str | None
) -> None:
    said = check_paper_lines(paper_lines(typed))
    assert said is None if problem is None else problem in (said or "")


def test_liking_papers_turns_a_dislike_into_a_like_and_counts_the_new_ones(store: Store) -> None:
    subscriber = add_subscriber(store)
    store.set_paper_vote(subscriber.id, "2511.00002", Vote.DISLIKE)
    store.set_paper_vote(subscriber.id, "2511.00001", Vote.LIKE)

    added = like_papers(store, subscriber.id, ["2511.00001", "2511.00002", "2511.00003"])

    assert added == 2
    interests = store.get_subscriber(subscriber.id).interests
    assert interests.liked == ("2511.00001", "2511.00002", "2511.00003")
    assert interests.disliked == ()


def test_a_paper_published_later_than_now_is_seen_now(
    papers: Store, paper_server: PaperServer
) -> None:
    paper_server.script(
        ARXIV,
        fixture_reply(ID_LIST, content_type="application/atom+xml"),
        id_list="2511.18201",
    )
    lookup = arxiv_lookup(lookup_settings(paper_server), limiter=MemoryWindowLimiter())
    before = datetime.combine(date(2026, 11, 17), datetime.min.time(), tzinfo=UTC)
    resolve_papers(papers, ["2511.18201"], lookup=lookup, now=before)
    fetched = papers.get_paper("2511.18201")
    assert fetched is not None and fetched.first_seen_at == before
