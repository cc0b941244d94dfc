"""SASL/TLS settings: secrets known to the logs, unusable TLS files refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from suppressor.adapters.settings import settings_from_values
from suppressor.core.errors import ConfigError

SASL = {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "hunter2"}


def test_the_password_is_the_one_secret() -> None:
    settings = settings_from_values(SASL, {})
    assert settings.secrets() == ("hunter2",)
    assert "hunter2" not in repr(settings) and "hunter2" not in settings.model_dump_json()
    assert settings_from_values({}, {}).secrets() == ()


def test_a_ca_file_that_is_not_pem_is_refused_with_its_name(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="SUPPRESSOR_SSL_CAFILE must be a PEM file") as error:
        settings_from_values({**SASL, "ssl_cafile": str(bogus)}, {})
    assert str(bogus) in str(error.value) and "hunter2" not in str(error.value)


def test_a_client_key_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "client.pem"
    bogus.write_text("not a key\n")
    values = {**SASL, "ssl_certfile": str(bogus), "ssl_keyfile": str(bogus)}
    with pytest.raises(ConfigError, match="SUPPRESSOR_SSL_CERTFILE and SUPPRESSOR_SSL_KEYFILE"):
        settings_from_values(values, {})


def test_sasl_plain_is_refused_without_tls() -> None:
    values = {**SASL, "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}
    with pytest.raises(ConfigError, match="PLAIN sends the password as it is") as error:
        settings_from_values(values, {})
    assert "SUPPRESSOR_SECURITY_PROTOCOL=SASL_SSL" in str(error.value)
    assert "hunter2" not in str(error.value)
    scram = {**values, "sasl_mechanism": "SCRAM-SHA-512"}
    assert settings_from_values(scram, {}).sasl_mechanism == "SCRAM-SHA-512"
    assert settings_from_values({**SASL, "sasl_mechanism": "PLAIN"}, {}).uses_ssl


def test_retention_and_compaction_lag_reach_the_topics() -> None:
    from suppressor.adapters.topology import Topology

    settings = settings_from_values(
        {"dlq_retention": "3d", "decisions_retention": "10d", "changelog_compaction_lag": "2d"},
        {},
    )
    topology = Topology.from_settings(settings)
    configs = {spec.name: spec.topic_config() for spec in topology.user_topic_specs()}
    day = 86_400_000
    assert configs["events.dlq"]["retention.ms"] == str(3 * day)
    assert configs["decisions"]["retention.ms"] == str(10 * day)
    assert "retention.ms" not in configs["actions"]
    for spec in topology.internal_topic_specs():
        if spec.name.endswith("-changelog"):
            assert spec.topic_config()["max.compaction.lag.ms"] == str(2 * day)
            assert spec.topic_config()["cleanup.policy"] == "compact"
    with pytest.raises(ConfigError, match="SUPPRESSOR_DLQ_RETENTION must be a duration"):
        settings_from_values(
            {"dlq_retention": "weekly"}, {"dlq_retention": "SUPPRESSOR_DLQ_RETENTION"}
        )


def test_the_worker_refuses_untested_faust_versions_unless_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from suppressor.adapters import faust_internals

    assert faust_internals.untested_versions() == {}  # the pinned versions are installed
    faust_internals.check_versions(allow_untested=False)
    monkeypatch.setitem(faust_internals.TESTED, "aiokafka", "0.99.0")
    with pytest.raises(ConfigError, match="SUPPRESSOR_ALLOW_UNTESTED_VERSIONS") as error:
        faust_internals.check_versions(allow_untested=False)
    assert "aiokafka 0.14.0 (tested: 0.99.0)" in str(error.value)
    faust_internals.check_versions(allow_untested=True)  # a warning only
    assert settings_from_values({"allow_untested_versions": "true"}, {}).allow_untested_versions
