from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ecgstream.errors import ConfigurationError
from ecgstream.settings import IdentitySettings, Settings, read_secret_file, write_secret_file


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
        "ecg.alarms.escalated",
    )


def test_environment_with_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECGSTREAM_KAFKA__BOOTSTRAP_SERVERS", "broker-1:9092,broker-2:9092")
    monkeypatch.setenv("ECGSTREAM_POSTGRES__DSN", "postgresql://u:secret@db:5432/ecg")
    monkeypatch.setenv("ECGSTREAM_LOCAL__KAFKA_PORT", "39092")
    monkeypatch.setenv("ECGSTREAM_STATE_DIR", "/tmp/somewhere")
    settings = Settings()
    assert settings.kafka_bootstrap == "broker-1:9092,broker-2:9092"
    assert settings.postgres_dsn() == "postgresql://u:secret@db:5432/ecg"
    assert "u:secret" not in repr(settings)
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


def test_no_secret_crosses_a_process_boundary_or_shows_in_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import SecretStr

    from ecgstream.settings import KafkaSettings, PostgresSettings

    settings = Settings(
        postgres=PostgresSettings(
            dsn=SecretStr("postgresql://o:owner-pw@db/x"),
            sink_dsn=SecretStr("postgresql://s:sink-pw@db/x"),
        ),
        kafka=KafkaSettings(security_protocol="SASL_SSL", username="p", password="kafka-pw"),
    )
    for text in (settings.to_json(), repr(settings), str(settings)):
        assert not {"owner-pw", "sink-pw", "kafka-pw"} & set(text.replace('"', " ").split(":"))
        assert "owner-pw" not in text and "sink-pw" not in text and "kafka-pw" not in text
    for name in ("POSTGRES__DSN", "POSTGRES__SINK_DSN", "KAFKA__PASSWORD"):
        monkeypatch.delenv(f"ECGSTREAM_{name}", raising=False)
    bare = Settings.from_json(settings.to_json())
    assert bare.kafka_password() is None and bare.postgres.sink_dsn is None
    monkeypatch.setenv("ECGSTREAM_KAFKA__PASSWORD", "from-env")
    monkeypatch.setenv("ECGSTREAM_POSTGRES__SINK_DSN", "postgresql://s:env@db/x")
    rebuilt = Settings.from_json(settings.to_json())
    assert rebuilt.kafka_password() == "from-env"
    assert rebuilt.postgres_dsn("sink") == "postgresql://s:env@db/x"


def test_the_sink_dsn_falls_back_to_the_owner_only_where_no_sink_role_is_known(
    tmp_path: Path,
) -> None:
    from pydantic import SecretStr

    from ecgstream.settings import PostgresSettings

    configured = Settings(postgres=PostgresSettings(dsn=SecretStr("postgresql://o:p@db/x")))
    assert configured.postgres_dsn("sink") == "postgresql://o:p@db/x"
    local = Settings(state_dir=tmp_path)
    write_secret_file(local.postgres_dsn_file, "postgresql://owner@127.0.0.1/x")
    assert local.postgres_dsn("sink") == "postgresql://owner@127.0.0.1/x"  # an older stack
    write_secret_file(local.postgres_sink_dsn_file, "postgresql://sink@127.0.0.1/x")
    assert local.postgres_dsn("sink") == "postgresql://sink@127.0.0.1/x"
    assert local.postgres_dsn() == "postgresql://owner@127.0.0.1/x"


def test_a_kafka_password_file_must_be_private(tmp_path: Path) -> None:
    from ecgstream.settings import KafkaSettings

    path = tmp_path / "kafka.password"
    path.write_text("pw\n")
    path.chmod(0o644)
    settings = Settings(kafka=KafkaSettings(password_file=path))
    with pytest.raises(ConfigurationError, match="chmod 600"):
        settings.kafka_password()
    path.chmod(0o600)
    assert settings.kafka_password() == "pw"


def test_the_fleet_secret_comes_from_the_environment_or_the_stacks_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cluster.stack import ensure_fleet_secret
    from ecgstream.io.device_keys import device_verifier

    settings = Settings(state_dir=tmp_path)
    assert settings.fleet_secret() is None
    with pytest.raises(ConfigurationError, match="FLEET_SECRET"):
        device_verifier(settings)  # required, and none: the consumer refuses to start
    assert (
        device_verifier(
            settings.model_copy(update={"identity": IdentitySettings(require_signatures=False)})
        )
        is None
    )
    ensure_fleet_secret(settings)
    made = settings.fleet_secret()
    assert made is not None and len(made) == 32
    assert (settings.fleet_secret_file.stat().st_mode & 0o777) == 0o600
    ensure_fleet_secret(settings)
    assert settings.fleet_secret() == made  # made once
    assert device_verifier(settings) is not None
    monkeypatch.setenv("ECGSTREAM_IDENTITY__FLEET_SECRET", "ab" * 16)
    from_env = Settings(state_dir=tmp_path)
    assert from_env.fleet_secret() == bytes.fromhex("ab" * 16)
    assert "abab" not in from_env.to_json()  # never handed to actors in settings
    assert Settings.from_json(from_env.to_json()).fleet_secret() == bytes.fromhex("ab" * 16)
    monkeypatch.setenv("ECGSTREAM_IDENTITY__FLEET_SECRET", "abcd")
    with pytest.raises(ConfigurationError, match="16 bytes"):
        Settings(state_dir=tmp_path).fleet_secret()


def test_devices_key_writes_one_devices_key_to_a_private_file_and_never_prints_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ecgstream.cli.app import app
    from ecgstream.identity import DeviceVerifier, device_key, sign

    monkeypatch.setenv("ECGSTREAM_IDENTITY__FLEET_SECRET", "cd" * 32)
    out = tmp_path / "bed-07.key"
    result = CliRunner().invoke(app, ["devices", "key", "bed-07", "--out", str(out)])
    assert result.exit_code == 0, result.output
    key = bytes.fromhex(out.read_text().strip())
    assert key == device_key(bytes.fromhex("cd" * 32), "bed-07")
    assert key.hex() not in result.output and (out.stat().st_mode & 0o777) == 0o600
    DeviceVerifier(bytes.fromhex("cd" * 32)).verify("bed-07", b"chunk", sign(key, b"chunk"))
    refused = CliRunner().invoke(app, ["devices", "key", "bad id!", "--out", str(out)])
    assert refused.exit_code == 1 and "device id" in refused.output
