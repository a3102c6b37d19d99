"""Settings: the only reader of the environment."""

import ipaddress
import os
import re
from datetime import date, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from service.mail.dkim import load_signing_key
from service.models import SHORTEST_LEDGER_RETENTION_DAYS, BouncePolicy
from service.setting_files import SettingFilesSource, url_with_password

PLACEHOLDER_SECRET = "change-me"
# Names the file of settings read besides the environment; empty: none. Not a setting itself:
# a .env file cannot say which file to read.
ENV_FILE_VARIABLE = "PAPERWIRE_ENV_FILE"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAPERWIRE_", env_file=".env", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Looked up whenever settings are read, not once at import: the tests turn the
        # checkout's .env off this way, whatever module they import first.
        env_file = os.environ.get(ENV_FILE_VARIABLE)
        if env_file is not None:
            dotenv_settings = DotEnvSettingsSource(settings_cls, env_file=env_file or None)
        dotenv = (
            dotenv_settings.env_vars if isinstance(dotenv_settings, DotEnvSettingsSource) else {}
        )
        # PAPERWIRE_<NAME>_FILE for every setting (service.setting_files).
        files = SettingFilesSource(settings_cls, dotenv=dotenv)
        return init_settings, env_settings, dotenv_settings, files, file_secret_settings

    environment: str = Field(
        "development",
        description="development or production; production refuses the placeholder secret key.",
    )
    database_url: str = Field(
        "sqlite:///var/paperwire.db",
        description="SQLAlchemy URL of the store: SQLite file (default) or postgresql+psycopg://.",
    )
    database_password: SecretStr = Field(
        SecretStr(""),
        description="Password put into database_url, which then names its user only: given "
        "from the same secret file as the database's own (PAPERWIRE_DATABASE_PASSWORD_FILE).",
    )
    mail_url: str = Field(
        "file://var/outbox",
        description="Where mail goes: file://DIR (outbox folder), smtp://[user:pass@]host:port "
        "(add ?starttls=1 for STARTTLS) or smtps://… (implicit TLS); cafile=/path.pem trusts "
        "a private CA.",
    )
    mail_timeout_seconds: float = Field(30.0, description="SMTP connect and command timeout.")
    mail_max_messages_per_connection: int = Field(
        100,
        ge=0,
        description="Messages sent on one SMTP connection before reconnecting (0: no cap).",
    )
    mail_rate_per_second: float = Field(
        0.0,
        ge=0,
        description="Most messages per second across all workers (a token bucket in Redis); "
        "0: no limit.",
    )
    mail_rate_burst: int = Field(
        10, ge=1, description="Messages that may go out at once before the rate applies."
    )
    mail_from_name: str = Field("Paperwire", description="Display name on outgoing mail.")
    mail_from_address: str = Field(
        "digest@paperwire.localhost", description="Sender address of outgoing mail."
    )
    dkim_selector: str = Field("", description="DKIM selector; empty: outgoing mail is not signed.")
    dkim_private_key_file: Path | None = Field(
        None, description="PEM file of the DKIM private key (RSA or Ed25519)."
    )
    dkim_domain: str = Field(
        "", description="Domain (d=) of DKIM signatures; empty: the sender address's domain."
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Public URL of the web app, used for manage/unsubscribe/archive links.",
    )
    secret_key: SecretStr = Field(
        SecretStr(PLACEHOLDER_SECRET),
        description="Key that signs links in emails; must be changed in production.",
    )
    previous_secret_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys used before secret_key (a JSON list): links they signed, such as "
        "unsubscribe links in old digests, keep working.",
    )
    manage_link_max_age_days: float = Field(
        30.0,
        gt=0,
        description="Days a manage link works (it can read, export and erase a subscription); "
        "an expired one offers to mail a fresh one. Unsubscribe links never expire.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (a JSON list) of reverse proxies whose "
        "X-Forwarded-For header is believed; others' is ignored.",
    )
    metrics_token: SecretStr = Field(
        SecretStr(""),
        description="Bearer token /metrics of the web app asks for; empty: /metrics answers "
        "only requests made on this machine straight to the app (loopback, through no proxy).",
    )
    signups_per_ip_per_hour: int = Field(
        20, ge=1, description="Signup requests accepted from one client address per hour."
    )
    confirm_email_interval_seconds: float = Field(
        900.0,
        ge=0,
        description="At most one confirmation email per mailbox within this time.",
    )
    confirm_emails_per_day: int = Field(
        3, ge=1, description="Most confirmation emails one mailbox gets in 24 hours."
    )
    signup_answer_seconds: float = Field(
        0.25,
        ge=0,
        le=5,
        description="Signup answers take at least this long, so their timing does not tell "
        "whether an address was already known.",
    )
    max_request_body_bytes: int = Field(
        65536,
        ge=1024,
        description="Largest request body the web app reads (forms, JSON, one-click); a larger "
        "one is answered 413 before it is parsed.",
    )
    notice_sweep_seconds: float = Field(
        30.0,
        gt=0,
        description="How often each web process sends confirmation and manage-link emails left "
        "unsent (a process died mid-send, or the relay was down).",
    )
    check_email_deliverability: bool = Field(
        False,
        description="Ask DNS whether a signup address's domain takes mail (needs network).",
    )
    papers_file: Path | None = Field(
        None,
        description="A JSONL file of papers (the import format) that the daily `fetch-papers` "
        "job imports, e.g. one another job rewrites each day; unset: none.",
    )
    fetch_papers_at: time = Field(
        time(5, 30),
        description="UTC time of day (HH:MM) at which beat runs `fetch-papers`, before the "
        "first delivery hours.",
    )
    digest_size: int = Field(
        30,
        ge=1,
        le=30,
        description="Most papers in one section of a digest, whatever its profile asks for "
        "(each profile chooses 1 to 30, 10 unless it says).",
    )
    max_profiles: int = Field(
        5, ge=1, le=20, description="Most interest profiles (digest sections) per subscriber."
    )
    digest_max_bytes: int = Field(
        100_000,
        ge=20_000,
        description="Largest digest email, in bytes as sent: the lowest-ranked papers are left "
        "out until it fits (Gmail clips messages past about 102 KB).",
    )
    default_delivery_hour: int = Field(
        8, ge=0, le=23, description="Local hour at which new subscribers get their digest."
    )
    default_time_zone: str = Field("UTC", description="Time zone given to new subscribers.")
    batch_size: int = Field(
        100, ge=1, le=1000, description="Subscribers per delivery task (one SMTP connection each)."
    )
    max_attempts: int = Field(
        5, ge=1, le=50, description="Tries of one issue before it is marked failed."
    )
    retry_base_seconds: float = Field(
        60.0, gt=0, description="First retry delay after a transient failure; doubles each time."
    )
    retry_max_seconds: float = Field(3600.0, gt=0, description="Longest delay between retries.")
    worker_concurrency: int = Field(
        0,
        ge=0,
        description="Delivery processes per worker; 0: twice the CPUs, since a delivery waits "
        "on the relay and the database about half of its time.",
    )
    worker_metrics_port: int = Field(
        9808,
        ge=0,
        le=65535,
        description="Port on which each worker's main process serves the metrics of its pool "
        "processes for Prometheus; 0: none.",
    )
    worker_metrics_host: str = Field(
        "127.0.0.1",
        description="Address the worker's metrics port listens on (0.0.0.0 for a Prometheus "
        "in another container or on another machine).",
    )
    task_time_limit_seconds: float = Field(
        1800.0, gt=0, description="Longest a delivery task may run before its worker kills it."
    )
    claim_lease_seconds: float = Field(
        600.0,
        gt=0,
        description="How long a claimed issue is protected while being sent; a sender that "
        "died is noticed after this.",
    )
    requeue_after_seconds: float = Field(
        120.0,
        gt=0,
        description="A planned issue still unclaimed this long after it was enqueued, whose "
        "batch is no longer in the broker, is enqueued again (the broker lost it).",
    )
    sweep_interval_seconds: float = Field(
        300.0, gt=0, description="How often beat runs the sweep of lost and due issues."
    )
    give_up_hours: float = Field(
        20.0, gt=0, description="An issue not sent this long after its hour expires unsent."
    )
    in_doubt_resends: int = Field(
        1,
        ge=0,
        le=5,
        description="Times an issue is sent again, later and with the same Message-ID, after "
        "an attempt whose outcome is unknown (the connection ended after the message went out, "
        "before the relay answered); 0: never risk a duplicate, such issues end in_doubt.",
    )
    in_doubt_resend_after_seconds: float = Field(
        900.0,
        ge=0,
        description="How long after an attempt of unknown outcome the issue is sent again.",
    )
    ledger_retention_days: int = Field(
        400,
        ge=0,
        description="Days of issues the delivery ledger keeps (the archive, the feed and "
        "`stats` show no older ones); beat deletes older ledger rows each night. 0: keep "
        f"every issue; otherwise at least {SHORTEST_LEDGER_RETENTION_DAYS}.",
    )
    bounce_domain: str = Field(
        "",
        description="Domain of the envelope sender of each digest (bounces+TOKEN@…) and of "
        "the List-Unsubscribe mailto address (unsubscribe+TOKEN@…), whose MX is `paperwire "
        "inbound`; empty: the sender address's domain.",
    )
    bounce_score_limit: float = Field(
        5.0,
        ge=1,
        description="Bounce score at which a subscriber is suppressed (hard bounce 1, soft "
        "0.5, one bounce day counted once).",
    )
    bounce_stale_days: float = Field(
        7.0,
        gt=0,
        description="A bounce this many days after the previous one starts the score afresh.",
    )
    inbound_host: str = Field("127.0.0.1", description="Address `paperwire inbound` listens on.")
    inbound_port: int = Field(
        2525, ge=1, le=65535, description="Port `paperwire inbound` listens on (25 as an MX)."
    )
    inbound_max_bytes: int = Field(
        1_048_576,
        ge=10_000,
        description="Largest message `paperwire inbound` takes; a larger one is refused (552) "
        "before it is read.",
    )
    sns_topic_arns: list[str] = Field(
        default_factory=list,
        description="Amazon SNS topics (a JSON list of ARNs) whose SES notifications "
        "/webhooks/ses accepts; empty: that webhook is off.",
    )
    sns_certificate_url_pattern: str = Field(
        r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/",
        description="Regular expression a SNS SigningCertURL or SubscribeURL must match "
        "(Amazon's own hosts); only tests change it.",
    )
    postmark_webhook_user: str = Field(
        "", description="User name of /webhooks/postmark's HTTP basic authentication."
    )
    postmark_webhook_password: SecretStr = Field(
        SecretStr(""),
        description="Password of /webhooks/postmark's HTTP basic authentication; empty: "
        "that webhook is off.",
    )
    mailgun_webhook_signing_key: SecretStr = Field(
        SecretStr(""),
        description="Mailgun's HTTP webhook signing key; empty: /webhooks/mailgun is off.",
    )
    webhook_max_age_seconds: float = Field(
        900.0,
        gt=0,
        description="Oldest a signed webhook call's timestamp may be; older ones are refused "
        "as replays.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or as JSON lines (one object per line)."
    )
    log_personal_data: bool = Field(
        False,
        description="Keep email addresses and link tokens in log lines (debugging only); "
        "otherwise they are replaced by [address] and {token}.",
    )
    beat_heartbeat_file: Path = Field(
        Path("var/beat-heartbeat"),
        description="File beat touches each time it hands a task to the broker; beat's "
        "health check reads its age.",
    )
    beat_heartbeat_seconds: float = Field(
        60.0, gt=0, description="How often beat schedules its heartbeat task."
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis for the Celery broker and rate limits; empty: the web app counts "
        "its limits in-process.",
    )

    paper_sources: str = Field(
        "hf",
        description="Live sources the daily `fetch-papers` job calls, comma-separated: hf, "
        "arxiv, or none.",
    )
    hf_base_url: str = Field(
        "https://huggingface.co", description="Base URL of the Hugging Face Daily Papers API."
    )
    hf_page_size: int = Field(
        50, ge=1, le=100, description="Papers asked for per Hugging Face Daily Papers page."
    )
    arxiv_base_url: str = Field(
        "http://export.arxiv.org", description="Base URL of the arXiv API (Atom)."
    )
    arxiv_categories: str = Field(
        "cs.LG,cs.CL,cs.CV", description="arXiv categories fetched, comma-separated."
    )
    arxiv_page_size: int = Field(
        200, ge=1, le=2000, description="Entries asked for per arXiv API page."
    )
    arxiv_request_interval_seconds: float = Field(
        3.0, ge=0, description="Pause between two arXiv API calls, as arXiv asks of its users."
    )
    arxiv_holidays: str = Field(
        "",
        description="Extra dates (YYYY-MM-DD, comma-separated) without an arXiv announcement, "
        "besides weekends.",
    )
    source_timeout_seconds: float = Field(
        30.0, gt=0, description="Connect and read timeout of one request to a paper source."
    )
    source_max_attempts: int = Field(
        5, ge=1, le=20, description="Tries of one page (429, 5xx, timeouts) before giving up."
    )
    source_backoff_seconds: float = Field(
        2.0, ge=0, description="First wait after a 5xx or timeout; doubles with each try."
    )
    source_backoff_max_seconds: float = Field(
        60.0, ge=0, description="Longest wait between two tries of a page after a 5xx or timeout."
    )
    source_max_retry_after_seconds: float = Field(
        300.0,
        ge=0,
        description="Longest wait a 429's Retry-After or RateLimit header may ask for; a "
        "longer one fails the page instead of holding the worker.",
    )
    source_max_response_bytes: int = Field(
        20_000_000,
        ge=1,
        description="Largest answer read from a paper source; a larger one fails the page.",
    )
    source_max_pages: int = Field(
        50, ge=1, description="Most pages read from one source for one day (a runaway guard)."
    )

    @field_validator("default_time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("ledger_retention_days")
    @classmethod
    def _keeps_the_reading_history(cls, value: int) -> int:
        if 0 < value < SHORTEST_LEDGER_RETENTION_DAYS:
            raise ValueError(
                f"keep at least {SHORTEST_LEDGER_RETENTION_DAYS} days of issues (0: keep all)"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: {entry!r} is not an address") from exc
        return value

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("mail_from_address")
    @classmethod
    def _sendable_sender(cls, value: str) -> str:
        """An address whose domain can stand in Message-IDs and headers as it is: an
        internationalised domain becomes its IDNA (xn--) form, which every server reads."""
        local, at, domain = value.strip().rpartition("@")
        if not at or not local or not domain or any(ch.isspace() for ch in value.strip()):
            raise ValueError(f"not an email address such as digest@example.org: {value!r}")
        if not domain.isascii():
            try:
                domain = domain.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise ValueError(f"cannot use the domain of {value!r}: {exc}") from exc
        return f"{local}@{domain}"

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Self:
        placeholder = self.secret_key.get_secret_value() == PLACEHOLDER_SECRET
        if placeholder and self.environment != "development":
            raise ValueError("PAPERWIRE_SECRET_KEY must be set outside development")
        return self

    @model_validator(mode="after")
    def _password_into_database_url(self) -> Self:
        password = self.database_password.get_secret_value()
        if password:
            self.database_url = url_with_password(self.database_url, password)
        return self

    @model_validator(mode="after")
    def _dkim_key_with_selector(self) -> Self:
        selector, key_file = self.dkim_selector, self.dkim_private_key_file
        if selector and key_file is None:
            raise ValueError(
                "PAPERWIRE_DKIM_SELECTOR is set without PAPERWIRE_DKIM_PRIVATE_KEY_FILE"
            )
        if key_file is not None and not selector:
            raise ValueError(
                "PAPERWIRE_DKIM_PRIVATE_KEY_FILE is set without PAPERWIRE_DKIM_SELECTOR"
            )
        if key_file is not None:
            load_signing_key(key_file)  # a missing, unreadable or bad key: ValueError
        return self

    @field_validator("dkim_selector", "dkim_domain")
    @classmethod
    def _dkim_name(cls, value: str) -> str:
        # Both go into the DNS name <selector>._domainkey.<domain> and into the signature.
        value = value.strip()
        if value and not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", value):
            raise ValueError(f"not a DNS label or name: {value!r}")
        return value

    @field_validator("paper_sources")
    @classmethod
    def _known_sources(cls, value: str) -> str:
        for name in filter(None, (n.strip().lower() for n in value.split(","))):
            if name not in ("hf", "arxiv", "none"):
                raise ValueError(f"unknown paper source {name!r}: use hf, arxiv or none")
        return value

    @field_validator("arxiv_holidays")
    @classmethod
    def _iso_dates(cls, value: str) -> str:
        for day in filter(None, (d.strip() for d in value.split(","))):
            try:
                date.fromisoformat(day)
            except ValueError as exc:
                raise ValueError(f"invalid arXiv holiday {day!r}: use YYYY-MM-DD") from exc
        return value

    @field_validator("hf_base_url", "arxiv_base_url")
    @classmethod
    def _strip_source_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def paper_source_names(self) -> tuple[str, ...]:
        """The configured live sources, validated when used (`fetch_papers`)."""
        names = (name.strip().lower() for name in self.paper_sources.split(","))
        return tuple(name for name in names if name and name != "none")

    @property
    def arxiv_category_list(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.arxiv_categories.split(",") if c.strip())

    @property
    def arxiv_holiday_dates(self) -> frozenset[date]:
        return frozenset(
            date.fromisoformat(d.strip()) for d in self.arxiv_holidays.split(",") if d.strip()
        )

    @property
    def broker_visibility_timeout_seconds(self) -> float:
        """Redis hands an unacknowledged task to another worker after this: it must stay above
        the longest a task can run, or a slow task runs twice at once."""
        return 2 * self.task_time_limit_seconds

    @property
    def secret_keys(self) -> list[str]:
        """The keys that tokens are read with: the current one first."""
        return [
            self.secret_key.get_secret_value(),
            *(key.get_secret_value() for key in self.previous_secret_keys),
        ]

    @property
    def dkim_signing_domain(self) -> str:
        return self.dkim_domain or self.mail_domain

    @property
    def bounce_address_domain(self) -> str:
        return self.bounce_domain or self.mail_domain

    @property
    def bounce_policy(self) -> BouncePolicy:
        return BouncePolicy(
            limit=self.bounce_score_limit, stale_after=timedelta(days=self.bounce_stale_days)
        )

    @property
    def mail_domain(self) -> str:
        """Domain used for Message-IDs and List-Id."""
        return self.mail_from_address.rpartition("@")[2]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
