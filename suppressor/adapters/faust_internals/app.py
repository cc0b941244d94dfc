"""The Faust app with the patched consumer, producer, flow control and web server.

Faust has no setting for these classes short of a transport of one's own: ``App``'s
private factories (``_new_consumer``, ``_new_producer``, ``_new_web``) are overridden here
to build them with the arguments Faust passes. See README.md in this folder.
"""

from __future__ import annotations

from typing import Any

import faust
from mode.utils.objects import cached_property

from suppressor.adapters.faust_internals.consumer import Consumer, new_consumer
from suppressor.adapters.faust_internals.flow_control import FlowControl
from suppressor.adapters.faust_internals.producer import Producer, new_producer
from suppressor.adapters.faust_internals.web import ClosedWeb


class FencedApp(faust.App):
    """``faust.App`` building the fenced classes; ``configure_consumer`` for subclasses."""

    @cached_property
    def flow_control(self) -> FlowControl:
        return FlowControl(loop=self.loop)

    def _new_web(self) -> Any:
        return ClosedWeb(self)

    def _new_producer(self) -> Producer:
        return new_producer(self)

    def _new_consumer(self) -> Consumer:
        consumer = new_consumer(self)
        self.configure_consumer(consumer)
        return consumer

    def configure_consumer(self, consumer: Consumer) -> None:
        """Set what the app needs on its consumer (``before_commit``, ``fetch_hold``)."""
