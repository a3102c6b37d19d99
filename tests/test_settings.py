"""Settings: environment names, validation, the placeholder secret, settings read from files."""

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy.engine import make_url

from service.setting_files import MAX_SETTING_FILE_BYTES, SettingFileError
from service.settings import ENV_FILE_VARIABLE, PROJECT_ROOT, Settings
from tests.support.cli_runner import PAPERWIRE


def test_it_reads_prefixed_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERWIRE_DIGEST_SIZE", "7")
    monkeypatch.setenv("PAPERWIRE_PUBLIC_BASE_URL", "https://papers.example.org/")
    settings = Settings()
    assert settings.digest_size == 7
    assert settings.public_base_url == "https://papers.example.org"


def test_production_refuses_the_placeholder_secret() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(environment="production")


def test_production_accepts_a_real_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERWIRE_SECRET_KEY", "a-real-secret")
    assert Settings(environment="production").secret_key.get_secret_value() == "a-real-secret"


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        Settings(default_time_zone="Mars/Olympus_Mons")


def test_mail_domain_comes_from_the_sender_address() -> None:
    assert Settings(mail_from_address="news@lab.example.org").mail_domain == "lab.example.org"


def test_lists_come_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERWIRE_SECRET_KEY", "new")
    monkeypatch.setenv("PAPERWIRE_PREVIOUS_SECRET_KEYS", '["older", "oldest"]')
    monkeypatch.setenv("PAPERWIRE_TRUSTED_PROXIES", '["10.0.0.0/8", "127.0.0.1"]')
    settings = Settings()
    assert settings.secret_keys == ["new", "older", "oldest"]
    assert settings.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]


def test_a_trusted_proxy_must_be_an_address() -> None:
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(trusted_proxies=["proxy.example.org"])


def test_the_env_file_is_dot_env_or_the_one_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PAPERWIRE_DIGEST_SIZE=7\n")
    (tmp_path / "paperwire.env").write_text("PAPERWIRE_DIGEST_SIZE=4\n")

    monkeypatch.setenv(ENV_FILE_VARIABLE, str(tmp_path / "paperwire.env"))
    assert Settings().digest_size == 4
    monkeypatch.setenv(ENV_FILE_VARIABLE, "")
    assert Settings().digest_size == 30
    monkeypatch.delenv(ENV_FILE_VARIABLE)
    assert Settings().digest_size == 7


def test_the_readme_lists_every_setting() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    missing = [
        name for name in Settings.model_fields if f"`PAPERWIRE_{name.upper()}`" not in readme
    ]
    assert missing == []


def test_the_sender_domain_is_kept_in_a_form_every_header_takes() -> None:
    settings = Settings(mail_from_address="digest@bücher.example")
    assert settings.mail_from_address == "digest@xn--bcher-kva.example"
    assert settings.mail_domain == "xn--bcher-kva.example"
    with pytest.raises(ValidationError, match="not an email address"):
        Settings(mail_from_address="digest.example.org")


# -- PAPERWIRE_<NAME>_FILE ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", "a-key-from-a-file"),
        ("DATABASE_URL", "postgresql+psycopg://app:s3cret@db:5432/paperwire"),
        ("MAIL_URL", "smtp://user:pass@relay.example.org:587?starttls=1"),
        ("POSTMARK_WEBHOOK_PASSWORD", "postmark-secret"),
        ("MAILGUN_WEBHOOK_SIGNING_KEY", "mailgun-key"),
    ],
)
def test_a_setting_is_read_from_the_file_its_file_variable_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    secret = tmp_path / "secret"
    # As `echo` and `openssl rand` write it: the final line end is not part of the value.
    secret.write_text(value + "\n")
    monkeypatch.setenv(f"PAPERWIRE_{name}_FILE", str(secret))
    read = getattr(Settings(), name.lower())
    assert (read.get_secret_value() if isinstance(read, SecretStr) else read) == value


def test_a_file_variable_may_be_in_the_env_file_and_a_list_setting_holds_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "previous_keys"
    keys.write_text('["older", "oldest"]\r\n')
    env_file = tmp_path / "paperwire.env"
    env_file.write_text(f"PAPERWIRE_PREVIOUS_SECRET_KEYS_FILE={keys}\n")
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(env_file))
    assert [key.get_secret_value() for key in Settings().previous_secret_keys] == [
        "older",
        "oldest",
    ]


def test_a_setting_given_both_ways_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret_key"
    secret.write_text("from-the-file\n")
    monkeypatch.setenv("PAPERWIRE_SECRET_KEY_FILE", str(secret))
    monkeypatch.setenv("PAPERWIRE_SECRET_KEY", "from-the-environment")
    with pytest.raises(SettingFileError, match=r"PAPERWIRE_SECRET_KEY and .*_FILE are both set"):
        Settings()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read .*: No such file or directory"),
        (b"x" * (MAX_SETTING_FILE_BYTES + 1), "is larger than 65536 bytes"),
        (b"\xff\xfe key", "is not UTF-8 text"),
    ],
)
def test_a_file_that_cannot_be_used_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | None, problem: str
) -> None:
    secret = tmp_path / "secret_key"
    if content is not None:
        secret.write_bytes(content)
    monkeypatch.setenv("PAPERWIRE_SECRET_KEY_FILE", str(secret))
    with pytest.raises(SettingFileError, match=f"^PAPERWIRE_SECRET_KEY_FILE: .*{problem}") as exc:
        Settings()
    assert "\n" not in str(exc.value)


def test_no_setting_is_named_as_another_ones_file_variable() -> None:
    # PAPERWIRE_PAPERS_FILE is a setting of its own, not setting PAPERS from a file: no
    # setting may be called `papers`, or PAPERWIRE_PAPERS_FILE would mean two things.
    names = set(Settings.model_fields)
    assert {name for name in names if f"{name}_file" in names} == set()


def test_the_database_password_is_put_into_a_url_that_names_its_user_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = tmp_path / "postgres_password"
    password.write_text("p@ss:w/rd%\n")
    monkeypatch.setenv("PAPERWIRE_DATABASE_PASSWORD_FILE", str(password))
    monkeypatch.setenv("PAPERWIRE_DATABASE_URL", "postgresql+psycopg://paperwire@db:5432/pw")
    url = Settings().database_url
    assert url == "postgresql+psycopg://paperwire:p%40ss%3Aw%2Frd%25@db:5432/pw"
    assert make_url(url).password == "p@ss:w/rd%"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqlite:///var/paperwire.db", "SQLite"),
        ("postgresql+psycopg://db:5432/pw", "names no user"),
        ("postgresql+psycopg://paperwire:other@db:5432/pw", "give it once"),
    ],
)
def test_a_database_password_with_nowhere_to_go_is_refused(url: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(database_url=url, database_password="secret")


def test_the_commands_say_in_one_line_which_file_cannot_be_read(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "PAPERWIRE_SECRET_KEY_FILE": str(tmp_path / "missing"),
        "PAPERWIRE_DATABASE_URL": f"sqlite:///{tmp_path / 'paperwire.db'}",
    }
    for command in (["subscribers", "list"], ["serve"], ["worker"]):
        result = subprocess.run(
            [PAPERWIRE, *command],
            env=environment,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.startswith("error: PAPERWIRE_SECRET_KEY_FILE: cannot read "), (
            command,
            result.stderr,
        )
        assert result.stderr.count("\n") == 1, result.stderr
