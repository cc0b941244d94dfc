"""The admin path's settings and checks (issue 22): the token (from the variable or a file,
refused when weak, never shown), the URL the other workers reach this one at, the bearer
check, and a route that exists only with a token. Requests against real workers are in
tests/integration/test_admin_path.py."""

from __future__ import annotations

import argparse
import re
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suppressor.adapters.admin_path import bearer_matches
from suppressor.adapters.metrics import ADMIN_OUTCOMES, Metrics
from suppressor.adapters.settings import settings_from_args, settings_from_values
from suppressor.core.errors import ConfigError

TOKEN = "s3cret-admin-token-0123456789abcdef"


def test_no_token_no_admin_path() -> None:
    settings = settings_from_values({}, {})
    assert settings.admin_secret is None and settings.secrets() == ()


def test_the_token_from_the_environment_is_stripped_and_kept_secret() -> None:
    settings = settings_from_env({"SUPPRESSOR_ADMIN_TOKEN": f"  {TOKEN}\n"})
    assert settings.admin_secret == TOKEN
    assert settings.secrets() == (TOKEN,)
    assert TOKEN not in repr(settings) and TOKEN not in settings.model_dump_json()


@pytest.mark.parametrize("value", ["", "   ", "short-token"])
def test_an_empty_or_short_token_stops_start_up_naming_the_variable_and_the_fix(
    value: str,
) -> None:
    with pytest.raises(ConfigError) as error:
        settings_from_env({"SUPPRESSOR_ADMIN_TOKEN": value})
    message = str(error.value)
    assert message.startswith("SUPPRESSOR_ADMIN_TOKEN must be an admin token of at least 16")
    assert "openssl rand -hex 32" in message and "unset it to keep the admin path off" in message
    assert "got ***" in message
    if value.strip():
        assert value not in message


def test_the_token_file_is_read_at_start_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"\n{TOKEN}  \n")
    settings = settings_from_env({"SUPPRESSOR_ADMIN_TOKEN_FILE": str(path)})
    path.write_text("changed later: not read again")
    assert settings.admin_secret == TOKEN
    assert settings.secrets() == (TOKEN,)  # redacted from the logs like the variable


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "SUPPRESSOR_ADMIN_TOKEN_FILE must be a readable file holding the admin token"),
        ("", "must have at least 16 characters (it has 0)"),
        ("tiny\n", "must have at least 16 characters (it has 4)"),
    ],
)
def test_an_unusable_token_file_stops_start_up(
    tmp_path: Path, content: str | None, words: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(words)) as error:
        settings_from_env({"SUPPRESSOR_ADMIN_TOKEN_FILE": str(path)})
    assert str(path) in str(error.value)
    assert "tiny" not in str(error.value)


def test_an_empty_token_file_variable_is_refused_rather_than_ignored() -> None:
    with pytest.raises(ConfigError, match="SUPPRESSOR_ADMIN_TOKEN_FILE"):
        settings_from_env({"SUPPRESSOR_ADMIN_TOKEN_FILE": ""})


def test_the_token_and_a_token_file_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN)
    with pytest.raises(ConfigError, match="are both set: keep one of them") as error:
        settings_from_env(
            {"SUPPRESSOR_ADMIN_TOKEN": TOKEN, "SUPPRESSOR_ADMIN_TOKEN_FILE": str(path)}
        )
    assert TOKEN not in str(error.value)


def settings_from_env(environ: dict[str, str]):  # type: ignore[no-untyped-def]
    return settings_from_args(argparse.Namespace(), environ)


# --- the URL the other workers forward to -----------------------------------------------------


@pytest.mark.parametrize(
    ("values", "url"),
    [
        ({"web_host": "127.0.0.1", "web_port": "7001"}, "http://127.0.0.1:7001"),
        ({}, f"http://{socket.gethostname()}:6066"),
        ({"web_advertised_host": "10.1.2.3"}, "http://10.1.2.3:6066"),
        ({"web_host": "::", "web_advertised_host": "fd00::7"}, "http://[fd00::7]:6066"),
        ({"web_advertised_host": "worker-0.suppressor-worker.ns.svc"},
         "http://worker-0.suppressor-worker.ns.svc:6066"),
    ],
)  # fmt: skip
def test_each_worker_advertises_where_it_is_reached(values: dict[str, str], url: str) -> None:
    assert settings_from_values(values, {}).canonical_url == url


@pytest.mark.parametrize("host", ["0.0.0.0", "http://x", "x:6066", "a b"])
def test_an_advertised_host_nobody_can_reach_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="SUPPRESSOR_WEB_ADVERTISED_HOST must be the host"):
        settings_from_env({"SUPPRESSOR_WEB_ADVERTISED_HOST": host})


def test_the_app_tells_faust_its_canonical_url(tmp_path: Path) -> None:
    from suppressor.adapters.app import build_app

    values = {"data_dir": str(tmp_path), "web_host": "127.0.0.1", "web_port": "7001"}
    app = build_app(settings_from_values(values, {}))
    assert str(app.conf.canonical_url) == "http://127.0.0.1:7001"


# --- the checks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"  Bearer   {TOKEN} ", True),
        (None, False),
        ("", False),
        ("Bearer", False),
        ("Bearer ", False),
        (f"Basic {TOKEN}", False),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        ("Bearer ünïcödé", False),
    ],
)
def test_only_the_token_passes(header: str | None, ok: bool) -> None:
    assert bearer_matches(header, TOKEN) is ok


@given(
    presented=st.one_of(st.text(max_size=60), st.just(TOKEN), st.just(f" {TOKEN}\t")),
    scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token"]),
)
def test_nothing_but_the_token_itself_passes(presented: str, scheme: str) -> None:
    ok = scheme.lower() == "bearer" and presented.strip() == TOKEN
    assert bearer_matches(f"{scheme} {presented}", TOKEN) is ok


def admin_routes(tmp_path: Path, **values: str) -> list[str]:
    from suppressor.adapters.app import build_app

    app = build_app(settings_from_values({"data_dir": str(tmp_path), **values}, {}))
    app.web.init_server()
    return [
        info.get("formatter", info.get("path", ""))
        for resource in app.web.web_app.router.resources()
        if (info := resource.get_info())
    ]


def test_the_route_exists_only_with_a_token(tmp_path: Path) -> None:
    assert not [r for r in admin_routes(tmp_path / "a") if r.startswith("/admin")]
    assert "/admin/users/{user_id}" in admin_routes(tmp_path / "b", admin_token=TOKEN)


def test_admin_accesses_are_counted_by_outcome_only() -> None:
    metrics = Metrics(process_metrics=False)
    metrics.observe_admin_request("ok")
    metrics.observe_admin_request("anna")  # never a label: counted as "other"
    text = metrics.render().decode()
    for outcome in ADMIN_OUTCOMES:
        assert f'suppressor_admin_requests_total{{outcome="{outcome}"}}' in text
    assert 'suppressor_admin_requests_total{outcome="ok"} 1.0' in text
    assert "anna" not in text
