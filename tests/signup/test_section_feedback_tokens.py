"""Feedback tokens of a digest's sections: they also name the interest profile a 👍/👎 trains,
and the tokens from before profiles stay readable."""

from datetime import UTC, datetime

import pytest

from service.signup.tokens import (
    InvalidToken,
    TokenPurpose,
    _make,  # a genuine token of any payload
    claimed_subscriber_id,
    make_feedback_tokens,
    read_feedback_token,
    read_section_feedback_token,
)

KEY = "test-secret-key"
LINK_KEY = "the-subscriber-link-key"
NOW = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("paper_id", ["2511.00001", "a:b", "hf-7f3c"])
def test_a_section_token_names_subscriber_profile_and_paper(paper_id: str) -> None:
    (token,) = make_feedback_tokens(
        42, [paper_id], link_key=LINK_KEY, secret_key=KEY, now=NOW, profile_id=7
    )
    assert claimed_subscriber_id(token) == 42
    read = read_section_feedback_token(token, link_key=LINK_KEY, secret_keys=[KEY])
    assert read == (42, 7, paper_id)
    # Not a plain feedback token: a reader of those could not tell the profile from the paper.
    with pytest.raises(InvalidToken):
        read_feedback_token(token, link_key=LINK_KEY, secret_keys=[KEY])


def test_a_token_from_before_profiles_names_no_profile() -> None:
    (token,) = make_feedback_tokens(42, ["2511.00001"], link_key=LINK_KEY, secret_key=KEY, now=NOW)
    read = read_section_feedback_token(token, link_key=LINK_KEY, secret_keys=[KEY])
    assert read == (42, None, "2511.00001")


@pytest.mark.parametrize("link_key", [None, "another-key"])
def test_a_section_token_reads_only_for_its_subscriber(link_key: str | None) -> None:
    (token,) = make_feedback_tokens(
        42, ["2511.00001"], link_key=LINK_KEY, secret_key=KEY, now=NOW, profile_id=7
    )
    with pytest.raises(InvalidToken):
        read_section_feedback_token(token, link_key=link_key, secret_keys=[KEY])


@pytest.mark.parametrize("payload", [b"42:7", b"42:7:", b"42:x:2511.00001", b"42::2511.00001"])
def test_a_genuine_section_token_that_names_no_profile_or_paper_is_refused(payload: bytes) -> None:
    token = _make(TokenPurpose.PROFILE_FEEDBACK, payload, secret_key=KEY, now=NOW, binding=LINK_KEY)
    with pytest.raises(InvalidToken):
        read_section_feedback_token(token, link_key=LINK_KEY, secret_keys=[KEY])
