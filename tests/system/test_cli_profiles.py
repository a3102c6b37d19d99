"""Interest profiles through the installed `paperwire` command: `profiles list|add|remove` with
their one-line errors, and `digest run` into the SMTP sink with a section per profile, each
paper once, within the size cap. Dates matter (issues of ISSUE_DATE): `make test` runs these
again with the clock 400 days ahead."""

from datetime import date
from email.message import EmailMessage
from pathlib import Path

from service.delivery.day_papers import load_day_papers
from service.mail.compose import compose_digest
from service.models import DeliveryStatus, Digest, DigestSection, ScoredPaper
from service.ranking import rank_prepared
from service.settings import Settings
from service.store import Store
from tests.support.cli_runner import ISSUE_DATE, Run
from tests.support.smtp_sink import SmtpSink

ADA = "ada@example.org"


def open_store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'cli.db'}")


def one_line_error(result_stderr: str, *words: str) -> None:
    assert result_stderr.startswith("error: ") and result_stderr.count("\n") == 1, result_stderr
    for word in words:
        assert word in result_stderr, result_stderr


def test_profiles_are_listed_added_and_removed(seeded: Run) -> None:
    seeded("subscribers", "add", ADA, "-k", "diffusion models")
    listed = seeded("profiles", "list", ADA).stdout
    assert "My interests" in listed and "“diffusion models”" in listed

    added = seeded(
        "profiles",
        "add",
        "Ada@Example.org",
        "RL theory",
        "-k",
        "reinforcement learning",
        "--text",
        "Policy gradients.",
        "--like",
        "8d3b9b2bfaa0",
        "--author",
        "J. Müller",
        "--exclude",
        "robotics",
        "--papers",
        "5",
        "--trending-weight",
        "0.1",
    )
    assert added.stdout.strip() == f"added profile “RL theory” to {ADA}"
    rows = [line for line in seeded("profiles", "list", ADA).stdout.splitlines() if "│" in line]
    assert [row.split("│")[2].strip() for row in rows] == ["My interests", "RL theory"]
    assert [row.split("│")[4].strip() for row in rows] == ["10", "5"]

    shown = seeded("subscribers", "show", ADA).stdout
    assert "profile 1: “My interests”, 10 papers, trending weight 0.30" in shown
    assert "profile 2: “RL theory”, 5 papers, trending weight 0.10" in shown
    second = shown.split("profile 2:")[1]
    assert "interests: “reinforcement learning”, Policy gradients., 1 liked paper" in second
    assert "authors: “J. Müller”" in second and "excluded: “robotics”" in second
    assert "liked: 1\n  8d3b9b2bfaa0  REINFORCE++" in second

    removed = seeded("profiles", "remove", ADA, "rl  THEORY")
    assert removed.stdout.strip() == f"removed profile “RL theory” from {ADA}"
    assert "RL theory" not in seeded("profiles", "list", ADA).stdout


# Each command with the words its one-line error must have.
REFUSALS = [
    (("profiles", "list", "nobody@example.org"), ("no subscriber",)),
    (("profiles", "add", "nobody@example.org", "X", "-k", "x"), ("no subscriber",)),
    (("profiles", "add", ADA, "my INTERESTS", "-k", "x"), ("'My interests'", "already")),
    (("profiles", "add", ADA, "Big", "--papers", "31"), ("--papers", "1 to 30")),
    (("profiles", "add", ADA, "Small", "--papers", "0"), ("--papers", "1 to 30")),
    (("profiles", "add", ADA, "Mix", "--trending-weight", "2"), ("--trending-weight",)),
    (("profiles", "add", ADA, "   "), ("profile needs a name",)),
    (("profiles", "add", ADA, "Seeds", "--like", "2501.99999"), ("2501.99999",)),
    (("profiles", "remove", ADA, "Nothing"), ("no profile named 'Nothing'", "My interests")),
    (("profiles", "remove", ADA, "My interests"), ("at least one",)),
    (("profiles", "remove", "nobody@example.org", "X"), ("no subscriber",)),
]


def test_profile_commands_refuse_in_one_line_and_change_nothing(seeded: Run) -> None:
    # One subscriber for every refusal: each is a subprocess of its own, and none may change
    # what the others see.
    seeded("subscribers", "add", ADA, "-k", "diffusion models")
    before = seeded("profiles", "list", ADA).stdout
    for args, words in REFUSALS:
        refused = seeded(*args, check_exit=2)
        one_line_error(refused.stderr, *words)
    assert seeded("profiles", "list", ADA).stdout == before


def test_a_subscriber_has_at_most_the_configured_number_of_profiles(seeded: Run) -> None:
    seeded("subscribers", "add", ADA, "-k", "diffusion models")
    seeded("profiles", "add", ADA, "Second", "-k", "graphs", PAPERWIRE_MAX_PROFILES="2")
    refused = seeded(
        "profiles", "add", ADA, "Third", "-k", "speech", PAPERWIRE_MAX_PROFILES="2", check_exit=2
    )
    one_line_error(refused.stderr, "at most 2 interest profiles")


def text_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def sent_papers(tmp_path: Path) -> tuple[str, ...]:
    store = open_store(tmp_path)
    try:
        subscriber = store.find_subscriber(ADA)
        delivery = store.get_delivery(subscriber.id, date.fromisoformat(ISSUE_DATE))
    finally:
        store.close()
    assert delivery is not None and delivery.status is DeliveryStatus.SENT
    return delivery.paper_ids


def rankings(tmp_path: Path) -> list[list[ScoredPaper]]:
    """Each profile's own ranking of the day, as if it were the only one."""
    store = open_store(tmp_path)
    try:
        day = load_day_papers(store, date.fromisoformat(ISSUE_DATE))
        profiles = store.find_subscriber(ADA).profiles
        return [
            rank_prepared(
                day.prepared,
                profile.interests,
                trending_weight=profile.trending_weight,
                limit=len(day.recent),
            )
            for profile in profiles
        ]
    finally:
        store.close()


def test_digest_run_sends_a_section_per_profile_each_paper_once(
    seeded: Run, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    seeded("subscribers", "add", ADA, "-k", "diffusion models", "--trending-weight", "0")
    # Image generation is mostly diffusion: the two profiles want some papers alike.
    seeded(
        "profiles",
        "add",
        ADA,
        "Image generation",
        "-k",
        "image generation",
        "-k",
        "diffusion",
        "--papers",
        "6",
        "--trending-weight",
        "0",
    )
    seeded("digest", "run", "--date", ISSUE_DATE, PAPERWIRE_MAIL_URL=smtp_sink.url)

    (received,) = smtp_sink.messages
    assert received.rcpt_tos == (ADA,)
    text = text_part(received.message)
    assert "Ranked for your profiles: My interests · Image generation." in text
    first_at = text.index("\n\nMy interests\n============\n")
    second_at = text.index("\n\nImage generation\n================\n")
    assert first_at < second_at
    sections = (text[first_at:second_at], text[second_at:])

    sent = sent_papers(tmp_path)
    assert len(sent) == len(set(sent))
    first, second = rankings(tmp_path)
    position = [{s.paper.id: n for n, s in enumerate(ranking)} for ranking in (first, second)]
    titles = {s.paper.id: s.paper.title for s in (*first, *second)}
    shown_in = [
        [paper_id for paper_id in sent if titles[paper_id][:30] in section] for section in sections
    ]
    assert len(shown_in[0]) == 10 and len(shown_in[1]) == 6
    assert shown_in[0] + shown_in[1] == list(sent)
    wanted_by_both = set(position[0]) & set(position[1])
    assert wanted_by_both & set(sent), "the test needs papers both profiles want"
    for section, shown in enumerate(shown_in):
        other = 1 - section
        for paper_id in wanted_by_both & set(shown):
            # Where it is: its better position, or the other section had no room for it.
            here, there = position[section][paper_id], position[other][paper_id]
            better_here = here < there or (here == there and section == 0)
            assert better_here or there >= len(shown_in[other]), paper_id


def test_five_profiles_of_thirty_papers_stay_under_the_size_cap(
    seeded: Run, tmp_path: Path, smtp_sink: SmtpSink, settings: Settings
) -> None:
    seeded("subscribers", "add", ADA, "-k", "language models")
    for name, keyword in [
        ("Language models", "language models"),
        ("Diffusion", "diffusion"),
        ("Agents", "agents"),
        ("Vision", "vision"),
    ]:
        seeded("profiles", "add", ADA, name, "-k", keyword, "--papers", "30")
    # No keywords: a trending section, which always has 30 papers to give.
    seeded("profiles", "add", ADA, "Trending", "--papers", "30", PAPERWIRE_MAX_PROFILES="6")
    seeded("profiles", "remove", ADA, "My interests")
    seeded("digest", "run", "--date", ISSUE_DATE, PAPERWIRE_MAIL_URL=smtp_sink.url)

    (received,) = smtp_sink.messages
    assert len(received.raw) <= settings.digest_max_bytes
    sent = sent_papers(tmp_path)
    assert len(sent) == len(set(sent))
    # Whole, the issue would have been far larger.
    by_id = {s.paper.id: s for ranking in rankings(tmp_path) for s in ranking}
    store = open_store(tmp_path)
    try:
        subscriber = store.find_subscriber(ADA)
    finally:
        store.close()
    assert len(subscriber.profiles) == 5
    whole = Digest(
        subscriber=subscriber,
        issue_date=date.fromisoformat(ISSUE_DATE),
        sections=(DigestSection(papers=tuple(by_id.values())[:150]),),
    )
    assert len(compose_digest(whole, settings=settings).data) > 2 * settings.digest_max_bytes
    text = text_part(received.message)
    for name in ("Language models", "Diffusion", "Agents", "Vision", "Trending"):
        assert f"\n\n{name}\n{'=' * len(name)}\n" in text
