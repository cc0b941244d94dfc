"""``fetch_wait`` reaches the aiokafka consumer Faust builds (its own settings pass neither
fetch_min_bytes nor a fetch_max_wait_ms of ours). The worker's log line for it is checked
against a real broker in tests/integration/test_worker.py (live traffic)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from suppressor.adapters.app import FETCH_BYTES_PER_PARTITION, build_app, fetch_hold
from suppressor.adapters.faust_internals.consumer import Consumer
from suppressor.adapters.settings import Settings, settings_from_values
from suppressor.core.errors import ConfigError


def test_zero_keeps_fausts_fetches_and_a_wait_holds_them() -> None:
    assert fetch_hold(0.0) is None
    assert fetch_hold(0.02) == (FETCH_BYTES_PER_PARTITION, 20)
    assert fetch_hold(0.0001) == (FETCH_BYTES_PER_PARTITION, 1)


@pytest.mark.parametrize(("wait", "expected"), [(0.0, (1, 1500)), (0.05, (65536, 50))])
def test_the_consumer_faust_builds_gets_the_wait(
    tmp_path: Path, wait: float, expected: tuple[int, int]
) -> None:
    async def built() -> tuple[int, int]:
        app = build_app(Settings(data_dir=tmp_path, fetch_wait=wait))
        consumer = app.consumer
        assert isinstance(consumer, Consumer)
        aiokafka_consumer = consumer._thread._create_worker_consumer(app.transport)
        return aiokafka_consumer._fetch_min_bytes, aiokafka_consumer._fetch_max_wait_ms

    assert asyncio.run(built()) == expected


def test_a_wait_over_a_second_is_refused_with_its_name() -> None:
    with pytest.raises(ConfigError, match=r"--fetch-wait .*less than or equal to 1"):
        settings_from_values({"fetch_wait": "5"}, {})
