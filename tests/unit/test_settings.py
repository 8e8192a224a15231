from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ecgstream.errors import ConfigurationError
from ecgstream.settings import Settings, read_secret_file, write_secret_file


def test_defaults_point_at_the_local_stack(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    assert settings.kafka_bootstrap == "127.0.0.1:29092"
    assert settings.prometheus_url == "http://127.0.0.1:29090"
    assert settings.ray_address == "127.0.0.1:6390"
    assert settings.topics.all() == (
        "ecg.samples",
        "ecg.beats",
        "ecg.alerts",
        "ecg.deadletter",
        "ecg.beats.shadow",
        "ecg.samples.staging",
        "ecg.beats.staging",
    )


def test_environment_with_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECGSTREAM_KAFKA__BOOTSTRAP_SERVERS", "broker-1:9092,broker-2:9092")
    monkeypatch.setenv("ECGSTREAM_POSTGRES__DSN", "postgresql://u:secret@db:5432/ecg")
    monkeypatch.setenv("ECGSTREAM_LOCAL__KAFKA_PORT", "39092")
    monkeypatch.setenv("ECGSTREAM_STATE_DIR", "/tmp/somewhere")
    settings = Settings()
    assert settings.kafka_bootstrap == "broker-1:9092,broker-2:9092"
    assert settings.postgres_dsn() == "postgresql://u:secret@db:5432/ecg"
    assert "secret" not in repr(settings)
    assert settings.local.kafka_port == 39092
    assert settings.state_dir == Path("/tmp/somewhere")


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECGSTREAM_LOCAL__POSTGRES_PORT", "70000")
    with pytest.raises(ValidationError, match="postgres_port"):
        Settings()


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    with pytest.raises(ValidationError):
        settings.state_dir = Path("/elsewhere")  # type: ignore[misc]


def test_relative_state_dir_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings(state_dir=Path("state")).state_dir == tmp_path.resolve() / "state"


def test_secret_files_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_secret_file(path, "s3cret")
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_secret_file(path, hint="") == "s3cret"
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        read_secret_file(path, hint="")
    with pytest.raises(ConfigurationError, match="run up first"):
        read_secret_file(tmp_path / "missing", hint="run up first")


def test_missing_local_dsn_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="ecgstream cluster up"):
        Settings(state_dir=tmp_path).postgres_dsn()


def test_settings_for_another_process_carry_no_secret_and_take_it_from_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import SecretStr

    from ecgstream.settings import PostgresSettings

    settings = Settings(postgres=PostgresSettings(dsn=SecretStr("postgresql://u:s3cret@db/x")))
    text = settings.to_json()
    assert "s3cret" not in text and "*****" not in text
    monkeypatch.delenv("ECGSTREAM_POSTGRES__DSN", raising=False)
    assert Settings.from_json(text).postgres.dsn is None  # then: the local stack's secret file
    monkeypatch.setenv("ECGSTREAM_POSTGRES__DSN", "postgresql://u:other@db/x")
    assert Settings.from_json(text).postgres_dsn() == "postgresql://u:other@db/x"
