"""Faust's worker: no terminal spinner, and a stop bounded in time. See README.md here."""

from __future__ import annotations

from typing import Any

import faust

from suppressor.adapters.logs import logging_config
from suppressor.adapters.settings import Settings
from suppressor.adapters.stopping import STOPPER


def faust_worker(app: faust.App, settings: Settings) -> faust.Worker:
    """Faust's worker for ``app``, logging as ``settings`` say and no more.

    At a log level of warning or above Faust's worker adds its terminal spinner to the
    root logger and sets the root logger to DEBUG for it, for good: every debug record
    of Faust and aiokafka (one per record sent, with its key and value) would be built
    and handed to the spinner, a few per cent of the worker's CPU. No spinner here."""
    worker = BoundedWorker(
        app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.app_id, settings.log_level, settings.secrets()),
    )
    worker.spinner = None
    worker.shutdown_timeout = settings.shutdown_timeout
    return worker


class BoundedWorker(faust.Worker):
    """Faust's worker, whose stop (SIGTERM, SIGINT, or a fatal error) ends the process
    within ``shutdown_timeout`` seconds whatever the broker does (suppressor.adapters.stopping)."""

    shutdown_timeout: float = 30.0

    def _schedule_shutdown(self, signal: Any) -> None:
        STOPPER.arm_shutdown_deadline(self.shutdown_timeout)
        super()._schedule_shutdown(signal)
