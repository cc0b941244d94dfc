"""Worker settings: one frozen model, validated once at start.

Every setting has a command-line flag and a ``SUPPRESSOR_*`` environment variable;
a flag wins over the variable, the variable over the default. The variable names
live here and nowhere else (``OPTIONS`` below), and ``--help`` shows each one.

Errors name where the bad value came from and what would be accepted::

    SUPPRESSOR_WEB_PORT must be a port number 1-65535, got 'abc'

Secrets (``sasl_password``, ``admin_token``) are ``SecretStr``: never printed, in help or
in errors.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from suppressor.core.errors import ConfigError
from suppressor.core.policy import DurationMs, format_duration, parse_duration

ENV_PREFIX = "SUPPRESSOR_"
DEFAULT_INPUT_TOPICS = (
    "events.browse",
    "events.cart",
    "events.purchase",
    "events.review",
    "events.preferences",
)
_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
_BROKER = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://)?[^\s:/;,]+:\d{1,5}/?$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.?)+$|^[0-9a-fA-F:.]+$")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
MIN_ADMIN_TOKEN = 16
"""Characters an admin token must have at least: a guessable token opens people's data."""
TOKEN_FIX = (
    "use a random one of 32 characters or more (openssl rand -hex 32), or unset it to keep "
    "the admin path off"
)

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
ProcessingGuarantee = Literal["exactly_once", "at_least_once"]
LogLevel = Literal["debug", "info", "warning", "error"]


class Settings(BaseModel):
    """What a worker (and `suppressor topics`) needs to know; see OPTIONS for the flags."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    broker: str = "kafka://localhost:9092"
    web_port: int = Field(default=6066, ge=1, le=65535)
    web_host: str = "0.0.0.0"
    web_advertised_host: str | None = None
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = None
    policy: Path | None = None
    data_dir: Path = Path("var/worker")
    app_id: str = "retarget-suppressor"
    input_topics: tuple[str, ...] = DEFAULT_INPUT_TOPICS
    catalog_topic: str = "catalog"
    actions_topic: str = "actions"
    decisions_topic: str = "decisions"
    conversions_topic: str = "conversions"
    dlq_topic: str = "events.dlq"
    partitions: int = Field(default=8, ge=1, le=10_000)
    processing_guarantee: ProcessingGuarantee = "exactly_once"
    standby_replicas: int = Field(default=0, ge=0, le=10)
    commit_interval: float = Field(default=1.0, gt=0, le=60)
    tick_interval: float = Field(default=1.0, gt=0, le=60)
    producer_linger: float = Field(default=0.02, ge=0, le=1)
    fetch_wait: float = Field(default=0.0, ge=0, le=1)
    state_memory: int = Field(default=16, ge=4, le=65536)
    session_timeout: float = Field(default=10.0, ge=3, le=300)
    stall_timeout: float = Field(default=120.0, ge=5, le=86_400)
    shutdown_timeout: float = Field(default=30.0, ge=1, le=3600)
    changelog_compaction_lag: DurationMs = Field(default=parse_duration("7d"), gt=0)
    dlq_retention: DurationMs = Field(default=parse_duration("7d"), gt=0)
    decisions_retention: DurationMs = Field(default=parse_duration("30d"), gt=0)
    allow_untested_versions: bool = False
    log_level: LogLevel = "info"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    _token_from_file: SecretStr | None = PrivateAttr(default=None)

    @field_validator("broker")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        parts = [part.strip() for part in re.split(r"[;,]", value) if part.strip()]
        if not parts or not all(_BROKER.match(part) for part in parts):
            raise ValueError("must be host:port or kafka://host:port (several: comma-separated)")
        return value

    @field_validator(
        "app_id", "catalog_topic", "actions_topic", "decisions_topic", "conversions_topic",
        "dlq_topic",
    )  # fmt: skip
    @classmethod
    def _legal_name(cls, value: str) -> str:
        return _check_topic_name(value)

    @field_validator("input_topics", mode="before")
    @classmethod
    def _split_topics(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("input_topics")
    @classmethod
    def _legal_inputs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one topic")
        if len(set(value)) != len(value):
            raise ValueError("names a topic twice")
        return tuple(_check_topic_name(name) for name in value)

    @field_validator("web_advertised_host")
    @classmethod
    def _reachable_host(cls, value: str | None) -> str | None:
        if value is not None and (value in WILDCARD_HOSTS or not _HOST.match(value)):
            raise ValueError(
                "must be the host name or address the other workers reach this one at "
                "(no scheme, no port; not 0.0.0.0)"
            )
        return value

    @field_validator("admin_token_file", mode="before")
    @classmethod
    def _named_file(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"must name the file holding the admin token: {TOKEN_FIX}")
        return value

    @field_validator("admin_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if len(token) < MIN_ADMIN_TOKEN:
            raise ValueError(
                f"must be an admin token of at least {MIN_ADMIN_TOKEN} characters "
                f"(it has {len(token)}): {TOKEN_FIX}"
            )
        return SecretStr(token)

    @field_validator("policy", "ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"must be a readable file, got '{value}' (no such file)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        outputs = {
            self.actions_topic, self.decisions_topic, self.conversions_topic, self.dlq_topic
        }  # fmt: skip
        if len(outputs) != 4:
            raise ValueError(
                "actions, decisions, conversions and dlq topics must be four different topics"
            )
        clash = sorted((outputs | {self.catalog_topic}) & set(self.input_topics))
        if clash:
            raise ValueError(f"input topics must not also be catalog or output topics: {clash}")
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security protocol {self.security_protocol} needs a user name and a password: "
                f"set {_env('sasl_username')} and {_env('sasl_password')}"
            )
        if self.security_protocol == "SASL_PLAINTEXT" and self.sasl_mechanism == "PLAIN":
            raise ValueError(
                f"SASL mechanism PLAIN sends the password as it is: use it only over TLS "
                f"({_env('security_protocol')}=SASL_SSL), or a SCRAM mechanism "
                f"({_env('sasl_mechanism')}=SCRAM-SHA-512)"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                f"a client certificate needs both {_env('ssl_certfile')} and {_env('ssl_keyfile')}"
            )
        if self.uses_ssl:
            self.ssl_context()  # unreadable TLS files stop start-up here, with their names
        if self.admin_token_file is not None:
            self._token_from_file = self._read_token_file(self.admin_token_file)
        return self

    def _read_token_file(self, path: Path) -> SecretStr:
        """The token in ``path``, read once at start (surrounding whitespace stripped)."""
        variable = _env("admin_token_file")
        if self.admin_token is not None:
            raise ValueError(f"{_env('admin_token')} and {variable} are both set: keep one of them")
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            why = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise ValueError(
                f"{variable} must be a readable file holding the admin token, got '{path}' ({why})"
            ) from None
        if len(token) < MIN_ADMIN_TOKEN:
            raise ValueError(
                f"{variable}: the admin token in '{path}' must have at least "
                f"{MIN_ADMIN_TOKEN} characters (it has {len(token)}): "
                f"{TOKEN_FIX.replace('unset it', f'unset {variable}')}"
            )
        return SecretStr(token)

    # --- derived values -----------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``host:port[,host:port]`` without the ``kafka://`` scheme, for plain Kafka clients."""
        parts = [part.strip() for part in re.split(r"[;,]", self.broker) if part.strip()]
        return ",".join(re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", p).rstrip("/") for p in parts)

    @property
    def broker_url(self) -> str:
        """The broker list as faust wants it: ``kafka://host:port;kafka://host2:port``."""
        return ";".join(f"kafka://{server}" for server in self.bootstrap_servers.split(","))

    @property
    def admin_secret(self) -> str | None:
        """The admin token (from the variable or the file), None when the admin path is off."""
        token = self.admin_token or self._token_from_file
        return None if token is None else token.get_secret_value()

    @property
    def advertised_host(self) -> str:
        """Where the other workers reach this one's web port: ``web_advertised_host``, else
        ``web_host`` when it names one interface, else this machine's host name (Faust's
        own default)."""
        if self.web_advertised_host is not None:
            return self.web_advertised_host
        return socket.gethostname() if self.web_host in WILDCARD_HOSTS else self.web_host

    @property
    def canonical_url(self) -> str:
        """This worker's web server as the others reach it (Faust's ``canonical_url``: the
        assignor tells every worker which one owns which partition by it)."""
        host = self.advertised_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.web_port}"

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for SSL / SASL_SSL (system CAs unless ssl_cafile is given);
        ValueError naming the variables when a TLS file is not usable PEM."""
        if not self.uses_ssl:
            return None
        try:
            context = ssl.create_default_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None
            )
        except (ssl.SSLError, OSError) as error:
            raise ValueError(
                f"{_env('ssl_cafile')} must be a PEM file of CA certificates, got "
                f"'{self.ssl_cafile}' ({error})"
            ) from None
        if self.ssl_certfile and self.ssl_keyfile:
            try:  # password "": an encrypted key fails instead of prompting on the terminal
                context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile), "")
            except (ssl.SSLError, OSError) as error:
                raise ValueError(
                    f"{_env('ssl_certfile')} and {_env('ssl_keyfile')} must be a PEM "
                    f"certificate and its unencrypted private key, got '{self.ssl_certfile}' "
                    f"and '{self.ssl_keyfile}' ({error})"
                ) from None
        return context

    def secrets(self) -> tuple[str, ...]:
        """The secret values, for the logs to redact."""
        found = tuple(
            secret.get_secret_value()
            for option in OPTIONS
            if option.secret and isinstance(secret := getattr(self, option.field), SecretStr)
        )
        from_file = self._token_from_file
        return found if from_file is None else (*found, from_file.get_secret_value())

    def kafka_client_config(self) -> dict[str, Any]:
        """Security settings as kafka-python's clients name them (no bootstrap servers)."""
        config = self._sasl_config()
        if self.uses_ssl:
            config.update(
                {
                    key: str(path)
                    for key, path in (
                        ("ssl_cafile", self.ssl_cafile),
                        ("ssl_certfile", self.ssl_certfile),
                        ("ssl_keyfile", self.ssl_keyfile),
                    )
                    if path is not None
                }
            )
        return config

    def aiokafka_client_config(self) -> dict[str, Any]:
        """Security settings as aiokafka's clients name them (TLS as an ``ssl_context``)."""
        config = self._sasl_config()
        if self.uses_ssl:
            config["ssl_context"] = self.ssl_context()
        return config

    def _sasl_config(self) -> dict[str, Any]:
        """The protocol and SASL settings, named alike by kafka-python and aiokafka."""
        config: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = _secret(self.sasl_password)
        return config


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def _check_topic_name(value: str) -> str:
    if not _TOPIC_NAME.match(value) or value in {".", ".."}:
        raise ValueError("must be a legal Kafka topic name: 1-249 of a-z A-Z 0-9 . _ -")
    return value


# --- flags and environment variables ------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One setting as the command line and the environment spell it."""

    field: str
    help: str
    metavar: str = "VALUE"
    secret: bool = False
    empty_is_unset: bool = True
    """An empty variable counts as unset (False: as the empty value, which is refused)."""

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.field.upper()


OPTIONS: tuple[Option, ...] = (
    Option("broker", "Kafka bootstrap servers, host:port or kafka://host:port", "URL"),
    Option("web_port", "port of the worker's HTTP server (metrics, health)", "PORT"),
    Option("web_host", "interface the HTTP server binds to", "HOST"),
    Option(
        "web_advertised_host",
        "host name or address the other workers reach this one's web port at (the admin "
        "path forwards a request to the worker that holds the person; unset: web_host, or "
        "this machine's host name when web_host is 0.0.0.0)",
        "HOST",
    ),
    Option(
        "admin_token",
        f"turns the admin path /admin/users/ID on: it answers only 'Authorization: Bearer "
        f"TOKEN' (at least {MIN_ADMIN_TOKEN} characters; prefer the variable or a file)",
        "TOKEN",
        secret=True,
        empty_is_unset=False,
    ),
    Option(
        "admin_token_file",
        "file holding the admin token (read at start, whitespace stripped), instead of admin_token",
        "FILE",
        empty_is_unset=False,
    ),
    Option("policy", "policy TOML file (unset: the built-in defaults)", "FILE"),
    Option("data_dir", "directory for the worker's RocksDB state", "DIR"),
    Option("app_id", "Faust app id: the consumer group and the internal topics' prefix", "ID"),
    Option("input_topics", "comma-separated input topics (co-partitioned)", "TOPICS"),
    Option("catalog_topic", "compacted catalog topic", "TOPIC"),
    Option("actions_topic", "output topic for actions", "TOPIC"),
    Option("decisions_topic", "output topic for decisions", "TOPIC"),
    Option("conversions_topic", "output topic for closed attribution windows", "TOPIC"),
    Option("dlq_topic", "dead-letter topic for input that cannot be used", "TOPIC"),
    Option("partitions", "partitions of every topic (inputs, catalog, outputs, internal)", "N"),
    Option("processing_guarantee", "exactly_once or at_least_once", "MODE"),
    Option("standby_replicas", "warm standby copies of each state partition", "N"),
    Option("commit_interval", "seconds between offset commits (transactions)", "SECONDS"),
    Option("tick_interval", "seconds between clock ticks of each partition", "SECONDS"),
    Option(
        "producer_linger",
        "seconds a send may wait to be batched with others (more: less CPU, more latency)",
        "SECONDS",
    ),
    Option(
        "fetch_wait",
        "seconds the broker may hold a fetch to gather records (0: answer at the first; "
        "more: less CPU per event at moderate load, more latency, more CPU when idle)",
        "SECONDS",
    ),
    Option(
        "state_memory",
        "MiB of RocksDB memory per partition of the users table (write buffers, block cache)",
        "MIB",
    ),
    Option(
        "session_timeout",
        "seconds without heartbeat before a worker counts as dead and loses its partitions",
        "SECONDS",
    ),
    Option(
        "stall_timeout",
        "seconds with input waiting and nothing processed before /health answers 503",
        "SECONDS",
    ),
    Option(
        "shutdown_timeout",
        "seconds a stop (SIGTERM, or a fatal error) may take before the process exits anyway",
        "SECONDS",
    ),
    Option(
        "changelog_compaction_lag",
        "longest time an erased user's old state stays on the changelogs' disks before "
        "compaction (max.compaction.lag.ms; like '7d')",
        "DURATION",
    ),
    Option("dlq_retention", "retention of the dead-letter topic (like '7d')", "DURATION"),
    Option("decisions_retention", "retention of the decisions topic (like '30d')", "DURATION"),
    Option(
        "allow_untested_versions",
        "start on faust-streaming, mode or aiokafka versions the worker was not tested with "
        "(true/false)",
        "BOOL",
    ),
    Option("log_level", "debug, info, warning or error", "LEVEL"),
    Option("security_protocol", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", "PROTOCOL"),
    Option("sasl_mechanism", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", "MECHANISM"),
    Option("sasl_username", "SASL user name", "USER"),
    Option("sasl_password", "SASL password (prefer the environment variable)", "PASSWORD", True),
    Option("ssl_cafile", "CA bundle to verify the brokers (default: system CAs)", "FILE"),
    Option("ssl_certfile", "client certificate (mutual TLS)", "FILE"),
    Option("ssl_keyfile", "client certificate's private key", "FILE"),
)
_BY_FIELD = {option.field: option for option in OPTIONS}


def _env(field: str) -> str:
    return _BY_FIELD[field].env


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; the help names its environment variable and default."""
    group = parser.add_argument_group(
        "settings", f"each flag falls back to its {ENV_PREFIX}* environment variable"
    )
    for option in OPTIONS:
        group.add_argument(
            option.flag,
            dest=option.field,
            default=None,
            metavar=option.metavar,
            help=f"{option.help} (env {option.env}; default {_shown_default(option)})",
        )


def _shown_default(option: Option) -> str:
    default = Settings.model_fields[option.field].default
    if option.secret or default is None:
        return "none"
    if isinstance(default, tuple):
        return ",".join(default)
    if option.metavar == "DURATION":
        return format_duration(default)
    return str(default)


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Settings:
    """Flags over environment over defaults, validated; ConfigError names the culprit."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    for option in OPTIONS:
        flag_value = getattr(args, option.field, None)
        if flag_value is not None:
            values[option.field], origins[option.field] = flag_value, option.flag
        elif option.env in environ and (environ[option.env] != "" or not option.empty_is_unset):
            values[option.field], origins[option.field] = environ[option.env], option.env
    return settings_from_values(values, origins)


def admin_token_from(environ: Mapping[str, str], token_file: str | None = None) -> str | None:
    """The admin token as a worker reads it, for a client (``suppressor explain --worker``):
    ``token_file`` (its ``--token-file``) over the variables; None when none is set;
    ConfigError, naming where it came from, when it is unusable."""
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    if token_file is not None:
        values["admin_token_file"], origins["admin_token_file"] = token_file, "--token-file"
    else:
        for field in ("admin_token", "admin_token_file"):
            option = _BY_FIELD[field]
            if option.env in environ:
                values[field], origins[field] = environ[option.env], option.env
    return settings_from_values(values, origins).admin_secret


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from ``SUPPRESSOR_*`` variables alone (the faust-CLI entry point)."""
    return settings_from_args(argparse.Namespace(), environ)


def settings_from_values(values: Mapping[str, object], origins: Mapping[str, str]) -> Settings:
    try:
        return Settings.model_validate(dict(values))
    except ValidationError as error:
        raise ConfigError(_explain(error, values, origins)) from None


def _explain(
    error: ValidationError, values: Mapping[str, object], origins: Mapping[str, str]
) -> str:
    lines = []
    for problem in error.errors(include_url=False):
        field = str(problem["loc"][0]) if problem["loc"] else ""
        option = _BY_FIELD.get(field)
        message = _friendly(problem, option)
        if option is None:  # a rule across settings: its message names them
            lines.append(message)
            continue
        name = origins.get(field) or option.flag
        if "got" not in message:
            shown = "***" if option.secret else repr(values.get(field, problem.get("input")))
            message = f"{message}, got {shown}"
        lines.append(f"{name} {message}")
    return "\n".join(lines)


def _friendly(problem: Any, option: Option | None) -> str:
    message = str(problem["msg"]).removeprefix("Value error, ")
    if option is None:
        return message
    if option.field == "web_port":
        return "must be a port number 1-65535"
    if problem["type"] == "literal_error":
        expected = problem.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}"
    if problem["type"] in {"int_parsing", "int_type", "int_from_float"}:
        return "must be a whole number"
    if problem["type"] in {"float_parsing", "float_type"}:
        return "must be a number"
    return message
