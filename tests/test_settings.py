"""Settings: environment names, validation, the placeholder secret."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import ENV_FILE_VARIABLE, PROJECT_ROOT, Settings


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
