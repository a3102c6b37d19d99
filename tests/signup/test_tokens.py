"""Tokens in email links: round trips, purposes, tampering, key rotation, expiry."""

from datetime import UTC, date, datetime, timedelta

import pytest

from service.signup.tokens import (
    InvalidToken,
    TokenExpired,
    TokenPurpose,
    _make,  # a genuine token of any payload, text or not
    claimed_subscriber_id,
    make_confirm_token,
    make_feedback_token,
    make_feedback_tokens,
    make_issue_token,
    make_subscriber_token,
    make_token,
    pack_paper_id,
    read_feedback_token,
    read_issue_token,
    read_subscriber_token,
    read_token,
    token_issued_at,
)

KEY = "test-secret-key"
LINK_KEY = "the-subscriber-link-key"
NOW = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)


def test_a_subscriber_token_round_trips() -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    assert (
        read_subscriber_token(TokenPurpose.UNSUBSCRIBE, token, link_key=LINK_KEY, secret_keys=[KEY])
        == 42
    )


def test_an_issue_token_round_trips() -> None:
    token = make_issue_token(42, date(2026, 11, 25), link_key=LINK_KEY, secret_key=KEY, now=NOW)
    assert read_issue_token(token, link_key=LINK_KEY, secret_keys=[KEY]) == (42, date(2026, 11, 25))


def test_any_text_payload_round_trips() -> None:
    token = make_token(TokenPurpose.MANAGE, "héllo:1", secret_key=KEY, now=NOW)
    assert read_token(TokenPurpose.MANAGE, token, secret_keys=[KEY]) == "héllo:1"


def test_tokens_are_compact_and_url_safe() -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 123_456, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    assert len(token) <= 30
    assert token.replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize("other", [TokenPurpose.MANAGE, TokenPurpose.ARCHIVE])
def test_a_token_of_one_purpose_never_reads_as_another(other: TokenPurpose) -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    with pytest.raises(InvalidToken):
        read_token(other, token, secret_keys=[KEY], binding=LINK_KEY)


def _tampered(token: str, index: int) -> str:
    replacement = "A" if token[index] != "A" else "B"
    return token[:index] + replacement + token[index + 1 :]


@pytest.mark.parametrize("index", [0, 3, 6, 10, -1])
def test_a_tampered_token_is_refused(index: int) -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    with pytest.raises(InvalidToken):
        read_token(
            TokenPurpose.UNSUBSCRIBE, _tampered(token, index), secret_keys=[KEY], binding=LINK_KEY
        )


@pytest.mark.parametrize("keep", [0, 1, 5, 20, -1, -2])
def test_a_truncated_token_is_refused(keep: int) -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    with pytest.raises(InvalidToken):
        read_token(TokenPurpose.UNSUBSCRIBE, token[:keep], secret_keys=[KEY], binding=LINK_KEY)


@pytest.mark.parametrize("junk", ["", "not a token", "abc=", "a+b/c", "é" * 24, "A" * 600])
def test_junk_is_refused(junk: str) -> None:
    with pytest.raises(InvalidToken):
        read_token(TokenPurpose.UNSUBSCRIBE, junk, secret_keys=[KEY], binding=LINK_KEY)


def test_a_token_signed_with_an_unknown_key_is_refused() -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key="other", now=NOW
    )
    with pytest.raises(InvalidToken):
        read_token(TokenPurpose.UNSUBSCRIBE, token, secret_keys=[KEY], binding=LINK_KEY)


def test_an_old_key_still_reads_while_listed() -> None:
    token = make_subscriber_token(
        TokenPurpose.MANAGE, 7, link_key=LINK_KEY, secret_key="old-key", now=NOW
    )
    assert (
        read_subscriber_token(
            TokenPurpose.MANAGE, token, link_key=LINK_KEY, secret_keys=[KEY, "old-key"]
        )
        == 7
    )
    with pytest.raises(InvalidToken):
        read_subscriber_token(TokenPurpose.MANAGE, token, link_key=LINK_KEY, secret_keys=[KEY])


def test_a_token_older_than_max_age_has_expired() -> None:
    token = make_subscriber_token(
        TokenPurpose.MANAGE, 7, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    max_age = timedelta(days=3)
    in_time = NOW + timedelta(days=3)
    late = NOW + timedelta(days=3, seconds=1)

    def read(now: datetime) -> int:
        return read_subscriber_token(
            TokenPurpose.MANAGE,
            token,
            link_key=LINK_KEY,
            secret_keys=[KEY],
            max_age=max_age,
            now=now,
        )

    assert read(in_time) == 7
    with pytest.raises(TokenExpired):
        read(late)


def test_an_expired_token_is_also_an_invalid_one() -> None:
    assert issubclass(TokenExpired, InvalidToken)


def test_a_forged_old_token_is_invalid_not_expired() -> None:
    token = make_subscriber_token(
        TokenPurpose.MANAGE, 7, link_key=LINK_KEY, secret_key="forger", now=NOW
    )
    later = NOW + timedelta(days=30)
    with pytest.raises(InvalidToken) as caught:
        read_token(
            TokenPurpose.MANAGE, token, secret_keys=[KEY], max_age=timedelta(days=1), now=later
        )
    assert not isinstance(caught.value, TokenExpired)


def test_keys_must_be_a_list_not_one_string() -> None:
    token = make_subscriber_token(
        TokenPurpose.MANAGE, 7, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    with pytest.raises(TypeError):
        read_token(TokenPurpose.MANAGE, token, secret_keys=KEY)
    with pytest.raises(ValueError):
        read_token(TokenPurpose.MANAGE, token, secret_keys=[])


def test_a_subscriber_reader_refuses_a_payload_that_is_not_an_id() -> None:
    token = make_token(TokenPurpose.MANAGE, "42:x", secret_key=KEY, now=NOW, binding=LINK_KEY)
    with pytest.raises(InvalidToken):
        read_subscriber_token(TokenPurpose.MANAGE, token, link_key=LINK_KEY, secret_keys=[KEY])


@pytest.mark.parametrize("reader_key", ["another-subscriber-key", None])
def test_a_link_reads_only_with_the_link_key_it_was_made_with(reader_key: str | None) -> None:
    token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    with pytest.raises(InvalidToken) as caught:
        read_subscriber_token(
            TokenPurpose.UNSUBSCRIBE, token, link_key=reader_key, secret_keys=[KEY]
        )
    assert not isinstance(caught.value, TokenExpired)


def test_a_link_from_before_link_keys_reads_only_without_one() -> None:
    token = make_subscriber_token(TokenPurpose.MANAGE, 42, link_key=None, secret_key=KEY, now=NOW)
    assert read_subscriber_token(TokenPurpose.MANAGE, token, link_key=None, secret_keys=[KEY]) == 42
    with pytest.raises(InvalidToken):
        read_subscriber_token(TokenPurpose.MANAGE, token, link_key=LINK_KEY, secret_keys=[KEY])


def test_a_bound_link_is_as_short_as_an_unbound_one() -> None:
    bound = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 123_456, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    unbound = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 123_456, link_key=None, secret_key=KEY, now=NOW
    )
    assert len(bound) == len(unbound) and bound != unbound


def test_every_link_names_the_subscriber_to_look_up_and_when_it_was_made() -> None:
    tokens = [
        make_subscriber_token(TokenPurpose.MANAGE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW),
        make_issue_token(42, date(2026, 11, 25), link_key=LINK_KEY, secret_key=KEY, now=NOW),
        make_confirm_token(42, "nonce", link_key=LINK_KEY, secret_key=KEY, now=NOW),
        make_feedback_token(42, "2511.00001", link_key=LINK_KEY, secret_key=KEY, now=NOW),
        make_feedback_token(42, "a:b", link_key=LINK_KEY, secret_key=KEY, now=NOW),
    ]
    assert [claimed_subscriber_id(token) for token in tokens] == [42] * 5
    assert {token_issued_at(token) for token in tokens} == {NOW}


@pytest.mark.parametrize("payload", ["", "x", ":1", "-1", "1" * 19, "\uff14\uff12"])
def test_a_token_without_a_subscriber_id_claims_none(payload: str) -> None:
    token = make_token(TokenPurpose.MANAGE, payload, secret_key=KEY, now=NOW)
    with pytest.raises(InvalidToken):
        claimed_subscriber_id(token)


@pytest.mark.parametrize(
    "paper_id",
    [
        "2511.00001", "2511.99999", "1412.0001", "0704.0001", "0001.0000", "9912.99999",
        "1412.00001", "2511.0001",  # 4 and 5 digits in any month are told apart
        "2511.00001v2", "hep-th/9901001", "8d3b9b2bfaa0", "a:b", "é", "🚀 x", "1" * 64,
        "2513.00001", "2511.000001", "\u0662\u0665\u0661\u0661.00001",  # not arXiv ids
    ],
)  # fmt: skip
def test_a_feedback_token_round_trips_any_paper_id(paper_id: str) -> None:
    token = make_feedback_token(42, paper_id, link_key=LINK_KEY, secret_key=KEY, now=NOW)
    assert read_feedback_token(token, link_key=LINK_KEY, secret_keys=[KEY]) == (42, paper_id)


def test_an_arxiv_id_is_packed_into_four_bytes_that_no_text_id_starts_like() -> None:
    packed = {
        pack_paper_id(f"{month}.{n:05d}")
        for month in ("0701", "2511", "9912")
        for n in (0, 1, 99999)
    }
    assert len(packed) == 9 and all(len(raw) == 4 and 0x80 <= raw[0] <= 0xBF for raw in packed)
    # A text id's first byte is never a UTF-8 continuation byte, so it never reads as packed.
    assert pack_paper_id("2511.00001v2") == b"2511.00001v2"
    assert pack_paper_id("\u00e9\u00e9") == "\u00e9\u00e9".encode()


def test_a_feedback_link_of_an_arxiv_paper_is_as_short_as_the_other_links() -> None:
    token = make_feedback_token(42, "2511.00001", link_key=LINK_KEY, secret_key=KEY, now=NOW)
    unsubscribe = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, 42, link_key=LINK_KEY, secret_key=KEY, now=NOW
    )
    assert len(token) == 31 and len(unsubscribe) == 24
    assert token.replace("-", "").replace("_", "").isalnum()


def test_the_feedback_tokens_of_a_digest_are_those_made_one_by_one() -> None:
    ids = ["2511.00001", "2511.00002", "p3"]
    batch = make_feedback_tokens(42, ids, link_key=LINK_KEY, secret_key=KEY, now=NOW)
    one_by_one = [
        make_feedback_token(42, paper_id, link_key=LINK_KEY, secret_key=KEY, now=NOW)
        for paper_id in ids
    ]
    assert batch == one_by_one and len(set(batch)) == 3


@pytest.mark.parametrize(
    ("purpose", "link_key"),
    [
        (TokenPurpose.FEEDBACK, "another-subscriber-key"),
        (TokenPurpose.FEEDBACK, None),
        (TokenPurpose.UNSUBSCRIBE, LINK_KEY),
    ],
)
def test_a_feedback_token_reads_only_as_feedback_for_its_subscriber(
    purpose: TokenPurpose, link_key: str | None
) -> None:
    feedback = make_feedback_token(42, "2511.00001", link_key=LINK_KEY, secret_key=KEY, now=NOW)
    other = make_subscriber_token(purpose, 42, link_key=link_key, secret_key=KEY, now=NOW)
    with pytest.raises(InvalidToken):
        read_token(purpose, feedback, secret_keys=[KEY], binding=link_key)
    with pytest.raises(InvalidToken):
        read_feedback_token(other, link_key=link_key, secret_keys=[KEY])
    with pytest.raises(InvalidToken):
        read_feedback_token(_tampered(feedback, 12), link_key=LINK_KEY, secret_keys=[KEY])


@pytest.mark.parametrize(
    "payload", [b"42", b"42:", b"x:2511.00001", b"42:\x80\x00\x00", b"42:\xff"]
)
def test_a_genuine_token_that_names_no_paper_is_refused(payload: bytes) -> None:
    token = _make(TokenPurpose.FEEDBACK, payload, secret_key=KEY, now=NOW, binding=LINK_KEY)
    with pytest.raises(InvalidToken):
        read_feedback_token(token, link_key=LINK_KEY, secret_keys=[KEY])


def test_a_packed_id_out_of_range_is_refused() -> None:
    beyond = (0x80 << 24) | (2400 * 100_000)  # year 100
    four_digits_too_many = (0x80 << 24) | 10_000  # "0001.10000" marked as 4 digits
    for value in (beyond, four_digits_too_many):
        payload = b"42:" + value.to_bytes(4, "big")
        token = _make(TokenPurpose.FEEDBACK, payload, secret_key=KEY, now=NOW, binding=LINK_KEY)
        with pytest.raises(InvalidToken):
            read_feedback_token(token, link_key=LINK_KEY, secret_keys=[KEY])
