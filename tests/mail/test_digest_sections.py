"""A digest of several interest profiles: a section each, headed by its name, a line naming the
profiles the issue was ranked for, and a message that stays under the clipping limit whatever
the sizes chosen."""

import re
from datetime import timedelta
from email.message import EmailMessage

from service.mail.compose import compose_digest, render_digest
from service.mail.digest_size import compose_digest_within
from service.models import (
    Digest,
    DigestSection,
    InterestProfile,
    Interests,
    Paper,
    ScoredPaper,
    Subscriber,
    SubscriptionStatus,
)
from tests.support.factories import NOW, TODAY, WHY, make_digest, make_paper, make_settings

SETTINGS = make_settings()
LONG_ABSTRACT = " ".join(
    f"Sentence {n} says what the method does for diffusion models at scale." for n in range(9)
)


def scored(paper: Paper) -> ScoredPaper:
    return ScoredPaper(paper=paper, score=1.0, relevance=0.8, trending=0.2, why=WHY)


def sectioned(papers: dict[str, list[Paper]], *, ranked_for: tuple[str, ...] = ()) -> Digest:
    names = tuple(papers)
    subscriber = Subscriber(
        id=42,
        email="alice@example.org",
        status=SubscriptionStatus.CONFIRMED,
        created_at=NOW - timedelta(days=30),
        link_key="alice-link-key",
        profiles=tuple(
            InterestProfile(id=n + 1, name=name, interests=Interests(keywords=("diffusion",)))
            for n, name in enumerate(ranked_for or names)
        ),
    )
    return Digest(
        subscriber=subscriber,
        issue_date=TODAY,
        sections=tuple(
            DigestSection(name=name, profile_id=n + 1, papers=tuple(map(scored, section)))
            for n, (name, section) in enumerate(papers.items())
        ),
        ranked_for=ranked_for or names,
    )


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return text.get_content(), html.get_content()


def paper(number: int, **overrides: object) -> Paper:
    fields: dict[str, object] = {
        "id": f"2511.{number:05d}",
        "title": f"Paper {number} on diffusion models",
    }
    fields.update(overrides)
    return make_paper(**fields)


def test_each_profile_heads_its_section_in_the_readers_order() -> None:
    digest = sectioned(
        {"Diffusion <models>": [paper(1), paper(2)], "RL theory": [paper(3)]},
        ranked_for=("Diffusion <models>", "RL theory", "Robotics"),
    )
    message = render_digest(digest, settings=SETTINGS, now=NOW)
    text, html = parts(message)
    # The subject names the day's top paper: the best of the first section.
    assert (
        message["Subject"] == "Your papers for Wed 25 Nov: “Paper 1 on diffusion models” and 2 more"
    )
    assert (
        "3 papers picked for your interests.\n\n"
        "Ranked for your profiles: Diffusion <models> · RL theory · Robotics.\n"
        "Edit them under “Manage preferences” below.\n" in text
    )
    assert "\n\nDiffusion <models>\n==================\n\n1.  Paper 1" in text
    assert "\n\nRL theory\n=========\n\n1.  Paper 3" in text
    assert text.index("Paper 2 on") < text.index("RL theory\n===") < text.index("Paper 3 on")

    assert "Ranked for your profiles: Diffusion &lt;models&gt; · RL theory · Robotics" in html
    manage = html.split("Ranked for your profiles:")[1].split("</p>")[0]
    assert 'href="https://paperwire.test/m/' in manage and ">Edit profiles</a>" in manage
    headings = html.split('class="section-heading"')
    assert len(headings) == 3
    assert ">Diffusion &lt;models&gt;</h2>" in headings[1].split("\n")[0]
    assert ">RL theory</h2>" in headings[2].split("\n")[0]
    assert "Paper 2 on" in headings[1] and "Paper 3 on" in headings[2]


def test_one_profile_reads_as_a_digest_without_sections() -> None:
    plain = render_digest(make_digest([paper(1), paper(2)]), settings=SETTINGS, now=NOW)
    named = sectioned({"My interests": [paper(1), paper(2)]})

    def layout(message: EmailMessage) -> tuple[str, ...]:
        # Its 👍/👎 links name the profile they train: the rest is the same, byte for byte.
        return tuple(re.sub(r"/f/[A-Za-z0-9_-]+", "/f/…", part) for part in parts(message))

    assert layout(render_digest(named, settings=SETTINGS, now=NOW)) == layout(plain)
    text, html = parts(plain)
    assert "Ranked for" not in text + html and 'class="section-heading"' not in html


def long_paper(number: int) -> Paper:
    return paper(
        number,
        title=f"Paper {number}: a rather long title about diffusion models and how they scale",
        abstract=LONG_ABSTRACT,
        authors=tuple(f"Author {n} Surname" for n in range(8)),
        hf_url=f"https://huggingface.co/papers/2511.{number:05d}",
        upvotes=number,
        comments=number,
    )


def test_five_profiles_of_thirty_papers_stay_under_the_limit() -> None:
    names = ["Diffusion", "RL theory", "Graphs", "Robotics", "Speech"]
    papers = {
        name: [long_paper(section * 100 + n) for n in range(30)]
        for section, name in enumerate(names)
    }
    digest = sectioned(papers)
    whole = compose_digest(digest, settings=SETTINGS, now=NOW)
    assert len(whole.data) > 2 * SETTINGS.digest_max_bytes  # the test is about something

    fitted, mail = compose_digest_within(digest, settings=SETTINGS, now=NOW)
    assert len(mail.data) <= SETTINGS.digest_max_bytes
    # Not much less either: the estimate leaves out what it must, and little more.
    assert len(mail.data) > SETTINGS.digest_max_bytes - 5_000
    assert mail == compose_digest(fitted, settings=SETTINGS, now=NOW)
    # Every section keeps its best papers, the same number each (±1): the longest lost most.
    kept = [len(section.papers) for section in fitted.sections]
    assert [section.name for section in fitted.sections] == names
    assert max(kept) - min(kept) <= 1
    assert kept == sorted(kept, reverse=True)
    for section, original in zip(fitted.sections, digest.sections, strict=True):
        assert section.papers == original.papers[: len(section.papers)]
    assert fitted.ranked_for == digest.ranked_for


def test_a_digest_under_the_limit_is_sent_whole() -> None:
    digest = sectioned({"Diffusion": [long_paper(n) for n in range(10)]})
    fitted, mail = compose_digest_within(digest, settings=SETTINGS, now=NOW)
    assert fitted == digest
    assert mail == compose_digest(digest, settings=SETTINGS, now=NOW)


def test_a_smaller_limit_drops_from_the_end_of_the_longest_sections() -> None:
    digest = sectioned(
        {"Short": [long_paper(n) for n in range(3)], "Long": [long_paper(n) for n in range(10, 30)]}
    )
    settings = make_settings(digest_max_bytes=40_000)
    fitted, mail = compose_digest_within(digest, settings=settings, now=NOW)
    assert len(mail.data) <= 40_000
    short, long = fitted.sections
    assert short.papers == digest.sections[0].papers
    assert 3 <= len(long.papers) < 20


def test_a_trending_profile_beside_a_topical_one_is_no_trending_digest() -> None:
    digest = sectioned({"Trending": [paper(1)], "Diffusion": [paper(2)]})
    profiles = digest.subscriber.profiles
    trending = profiles[0].model_copy(update={"interests": Interests()})
    subscriber = digest.subscriber.model_copy(update={"profiles": (trending, profiles[1])})
    text, _ = parts(
        render_digest(digest.model_copy(update={"subscriber": subscriber}), settings=SETTINGS)
    )
    assert "2 papers picked for your interests." in text
    assert "trending papers" not in text
    everything_trending = subscriber.model_copy(
        update={"profiles": (trending, profiles[1].model_copy(update={"interests": Interests()}))}
    )
    text, _ = parts(
        render_digest(
            digest.model_copy(update={"subscriber": everything_trending}), settings=SETTINGS
        )
    )
    assert "2 trending papers." in text
