"""The worker's stream clock and settings, without a broker (pure; they would fit tests/unit).

Wall-clock readings are passed in, in seconds; event times are ms.
"""

from __future__ import annotations

import argparse

import pytest

from suppressor.adapters.settings import add_settings_arguments, settings_from_args
from suppressor.core.clock import NO_TIME, PartitionClock
from suppressor.core.errors import ConfigError

IDLE_MS = 30_000
TOPICS = ("browse", "cart")


def clock(hybrid: bool = False, now: float = 0.0) -> PartitionClock:
    return PartitionClock(TOPICS, IDLE_MS, hybrid, now)


def test_stream_time_is_the_slowest_topic() -> None:
    c = clock()
    c.observe("browse", 5_000, now=1)
    c.observe("cart", 2_000, now=1)
    assert c.advance(now=1) == 2_000
    c.observe("browse", 9_000, now=2)
    assert c.advance(now=2) == 2_000, "cart has not caught up: its events must not be late"


def test_a_topic_not_read_yet_holds_time_until_idle() -> None:
    c = clock()
    c.observe("browse", 5_000, now=1)
    assert c.advance(now=1) == NO_TIME
    assert c.advance(now=31) == 5_000, "cart left out once idle for idle_timeout"


def test_an_idle_topic_is_left_out_and_all_idle_means_the_latest() -> None:
    c = clock()
    c.observe("browse", 5_000, now=0)
    c.observe("cart", 2_000, now=0)
    c.observe("browse", 8_000, now=20)
    assert c.advance(now=20) == 2_000
    assert c.advance(now=35) == 8_000, "cart idle since 0: left out"
    assert c.advance(now=60) == 8_000, "everything idle: nothing older can be waiting"


def test_after_a_pause_the_first_topic_back_does_not_race_ahead() -> None:
    c = clock()
    c.observe("browse", 1_000, now=0)
    c.observe("cart", 1_000, now=0)
    assert c.advance(now=100) == 1_000
    c.observe("browse", 600_000, now=100)  # a burst resumes on browse first
    assert c.advance(now=100.5) == 1_000, "cart gets idle_timeout to deliver its share"
    c.observe("cart", 590_000, now=100.6)
    assert c.advance(now=100.6) == 590_000


def test_stream_time_never_goes_back() -> None:
    c = clock()
    c.observe("browse", 5_000, now=0)
    c.observe("cart", 5_000, now=0)
    assert c.advance(now=0) == 5_000
    c.observe("cart", 1_000, now=1)
    assert c.advance(now=1) == 5_000


def test_hybrid_clock_moves_with_the_wall_clock_since_each_topic_last_rose() -> None:
    c = clock(hybrid=True)
    c.observe("browse", 10_000, now=0)
    c.observe("cart", 10_000, now=0)
    assert c.advance(now=0) == 10_000
    assert c.advance(now=60) == 70_000, "a quiet partition still reaches its deadlines"
    event_only = clock(hybrid=False)
    event_only.observe("browse", 10_000, now=0)
    event_only.observe("cart", 10_000, now=0)
    assert event_only.advance(now=60) == 10_000


def test_hybrid_a_quiet_topic_moves_on_by_the_wall_clock_and_does_not_hold_back() -> None:
    c = clock(hybrid=True)
    c.observe("browse", 10_000, now=0)
    c.observe("cart", 10_000, now=0)
    c.observe("browse", 12_000, now=2)
    assert c.advance(now=2) == 12_000, "cart said nothing for 2 s: taken to be 2 s on"
    c.observe("browse", 13_000, now=2.5)
    assert c.advance(now=2.5) == 12_500, "but no further than the wall clock takes it"


def test_hybrid_catch_up_stays_on_event_time() -> None:
    c = clock(hybrid=True)
    c.observe("cart", 1_000, now=0)  # read to its end at once
    c.observe("browse", 1_000, now=0)
    c.observe("browse", 3_600_000, now=1)  # an hour of backlog read in a second
    assert c.advance(now=1) == 2_000, "cart's next event may be 1 s on, not an hour"
    c.observe("browse", 3_700_000, now=30.5)
    assert c.advance(now=30.5) == 3_700_000, "until cart is idle"


def test_hybrid_restore_goes_on_from_the_saved_stream_time() -> None:
    c = clock(hybrid=True)
    c.observe("browse", 10_000, now=0)
    c.observe("cart", 10_000, now=0)
    assert c.advance(now=20) == 30_000  # quiet, not idle yet
    restored = clock(hybrid=True, now=500)
    restored.restore(c.snapshot(), now=500)
    assert restored.advance(now=501) == 31_000, "not back to 10 s plus the wall clock"


def test_a_promising_source_goes_idle_like_a_quiet_topic_and_stays_out() -> None:
    """Another partition's watermarks while it forwards nothing (it is live): they say
    how far it got, but they do not keep it in the minimum past ``idle_timeout``."""
    c = PartitionClock(("browse", "from-1"), IDLE_MS, True, 0.0)
    c.observe("browse", 10_000, now=0)
    c.promise("from-1", 9_000, now=0)
    assert c.advance(now=0) == 9_000, "within idle_timeout it holds back as any source"
    for second in range(1, 31):
        c.observe("browse", 10_000 + second * 1_000, now=second)
        c.promise("from-1", 9_000 + second * 1_000, now=second)
    assert c.advance(now=30) == 40_000, "idle: only the inputs read count"
    c.observe("browse", 50_000, now=40)  # browse was quiet, comes back
    c.promise("from-1", 45_000, now=40)
    assert c.advance(now=40) == 50_000, "browse's return does not wake the promising source"


def test_a_promising_source_that_forwards_again_holds_back_again() -> None:
    c = PartitionClock(("browse", "from-1"), IDLE_MS, True, 0.0)
    c.observe("browse", 10_000, now=0)
    c.promise("from-1", 10_000, now=0)
    c.observe("browse", 40_000, now=30)
    assert c.advance(now=30) == 40_000
    c.touch("from-1", now=30.5)  # it forwards an event here
    c.observe("browse", 41_000, now=31)
    assert c.advance(now=31) == 41_000, "never back"
    c.promise("from-1", 40_500, now=31)
    c.observe("browse", 45_000, now=35)
    assert c.advance(now=35) == 44_500, "its watermark holds back again, moved on by 4 s"


def test_snapshot_and_restore_resume_where_it_was() -> None:
    c = clock()
    c.observe("browse", 5_000, now=0)
    c.observe("cart", 7_000, now=0)
    c.advance(now=0)
    restored = clock(now=500)
    restored.restore(c.snapshot(), now=500)
    assert restored.time == 5_000
    restored.observe("browse", 9_000, now=501)
    assert restored.advance(now=501) == 7_000, "cart's progress survived the restart"


# --- settings -----------------------------------------------------------------------------


def settings(argv: list[str], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return settings_from_args(parser.parse_args(argv), env or {})


def test_flags_win_over_environment_over_defaults() -> None:
    assert settings([]).web_port == 6066
    assert settings([], {"SUPPRESSOR_WEB_PORT": "7000"}).web_port == 7000
    assert settings(["--web-port", "7001"], {"SUPPRESSOR_WEB_PORT": "7000"}).web_port == 7001
    assert settings([]).processing_guarantee == "exactly_once"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {"SUPPRESSOR_WEB_PORT": "abc"}, "SUPPRESSOR_WEB_PORT must be a port number 1-65535"),
        (["--web-port", "0"], {}, "--web-port must be a port number 1-65535, got '0'"),
        (["--processing-guarantee", "maybe"], {}, "--processing-guarantee must be one of"),
        (["--security-protocol", "SASL_SSL"], {}, "set SUPPRESSOR_SASL_USERNAME"),
        (["--input-topics", "a,a"], {}, "--input-topics names a topic twice"),
    ],
)
def test_bad_settings_name_the_flag_or_variable(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        settings(argv, env)


def test_secrets_are_never_shown() -> None:
    s = settings(
        [
            "--security-protocol",
            "SASL_PLAINTEXT",
            "--sasl-mechanism",
            "SCRAM-SHA-256",
            "--sasl-username",
            "u",
        ],
        {"SUPPRESSOR_SASL_PASSWORD": "hunter2"},
    )
    assert "hunter2" not in repr(s)
    assert s.kafka_client_config()["sasl_plain_password"] == "hunter2"
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    assert "hunter2" not in parser.format_help()
