"""Faust's flow control, keeping the agents' queues when the flow resumes.

Queued records dropped when the flow resumes. The agent's queue is one that
``app.flow_control.resume()`` empties, and Faust resumes it just *after* the seek
that ends recovery, while the fetch loop (running since recovery began) has
already handed on records read from the committed offsets: those records were
dropped, and the fetch loop's "read up to here" lay past them, so they were never
read again; the first processed record after the hole then left a gap that no
ack fills, so the partition's offset never moved and, under exactly_once, its
transaction never committed (a worker restarted while traffic arrived emitted
nothing). Here resuming the flow keeps the queue: what came before the seek is
marked stale (above) and skipped, what came after it is processed, in order.
The explicit clear at the start of a rebalance is kept. And a skipped record of
another generation (stale ones included) is not counted as acked, as Faust's
stream does: it is read again from the committed offset, and its ack could
otherwise let a commit pass it before its new copy is processed.

See README.md in this folder.
"""

from __future__ import annotations

from mode.utils.queues import FlowControlEvent


class FlowControl(FlowControlEvent):
    """``app.flow_control``, keeping the agents' queues when the flow resumes (see above);
    ``clear()`` at the start of a rebalance still empties them."""

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()
