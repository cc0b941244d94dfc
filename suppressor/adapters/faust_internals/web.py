"""Faust's web server with none of Faust's own pages. See README.md in this folder."""

from __future__ import annotations

from typing import Any, ClassVar

from faust.web.drivers.aiohttp import Web as AiohttpWeb


class ClosedWeb(AiohttpWeb):
    """The worker's HTTP server: only the pages ``_pages`` adds (``/metrics``, ``/health``,
    ``/health/live``). Faust mounts its own blueprints by default: ``/table`` (every table's
    keys and values: people's state, to anyone who can reach the port), ``/router``
    (the cluster's topology), ``/graph``, its statistics and an index at ``/``. Some have
    no setting to turn them off, so none is mounted here (SPEC section 8, "Access")."""

    default_blueprints: ClassVar[list[Any]] = []
    production_blueprints: ClassVar[list[Any]] = []
    debug_blueprints: ClassVar[list[Any]] = []
    optional_blueprints: ClassVar[list[Any]] = []
