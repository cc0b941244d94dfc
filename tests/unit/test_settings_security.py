"""SASL/TLS settings: secrets known to the logs, unusable TLS files refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from suppressor.errors import ConfigError
from suppressor.settings import settings_from_values

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
