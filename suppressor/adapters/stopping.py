"""Stopping the worker on an error it cannot go on after, and bounding every stop.

Two kinds of error can come out of a record's processing (``Pipeline.handle``):

- an error of the record's own processing (a bug, a state the changelog cannot take):
  that record goes to the dead-letter topic and the worker goes on;
- a Kafka error (a send the client gave up on, a fenced producer, refused credentials or
  ACLs): some of the record's outputs may be out already, so going on, or processing the
  record again in this process, could send them twice. ``stop_fatally`` logs the cause
  once and stops the worker as SIGTERM would, and the process exits with status 1 so that
  its supervisor (Kubernetes, systemd) starts it again: it resumes from the committed
  offsets, its open transaction aborted (exactly-once) or what the restored states already
  hold skipped (at-least-once). The client retries transient trouble (a broker
  restarting, a leader moving) itself before it gives up, so a short outage stops nothing.

Every stop, by a signal or by ``stop_fatally``, finishes within ``shutdown_timeout``
(``arm_shutdown_deadline``): Faust's own shutdown waits for the broker (a final commit,
leaving the group), and with the broker gone it retried for minutes.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from aiokafka import errors

log = logging.getLogger(__name__)

FATAL: tuple[type[BaseException], ...] = (
    errors.ProducerFenced,
    errors.TransactionCoordinatorFenced,
    errors.AuthenticationFailedError,
    errors.AuthenticationMethodNotSupported,
    errors.SaslAuthenticationFailed,
    errors.UnsupportedSaslMechanismError,
    errors.IllegalSaslStateError,
    errors.TopicAuthorizationFailedError,
    errors.GroupAuthorizationFailedError,
    errors.ClusterAuthorizationFailedError,
    errors.TransactionalIdAuthorizationFailed,
)
"""Errors after which the process stops (see the module docstring)."""

EXIT_FATAL = 1


def is_fatal(error: BaseException) -> bool:
    return isinstance(error, FATAL)


def is_kafka_error(error: BaseException) -> bool:
    return isinstance(error, errors.KafkaError)


class _Stopper:
    def __init__(self) -> None:
        self.cause: BaseException | None = None
        self._deadline: threading.Timer | None = None

    def stop_fatally(self, cause: BaseException) -> None:
        """Log why, once, and stop the worker as SIGTERM does (exit status 1)."""
        if self.cause is not None:
            return
        self.cause = cause
        log.critical("stopping the worker: %s: %s (%s)", type(cause).__name__, cause, _why(cause))
        os.kill(os.getpid(), signal.SIGTERM)

    def arm_shutdown_deadline(self, seconds: float) -> None:
        """From the first stop request on, the process ends within ``seconds`` whatever
        Faust and the broker do: past it, it exits at once (status 1)."""
        if self._deadline is not None:
            return
        timer = threading.Timer(seconds, _exit_now, args=(seconds,))
        timer.daemon = True
        timer.start()
        self._deadline = timer


def _exit_now(seconds: float) -> None:
    log.critical("the worker did not stop within %s s (shutdown_timeout): exiting now", seconds)
    logging.shutdown()
    os._exit(EXIT_FATAL)


def _why(cause: BaseException) -> str:
    if isinstance(cause, errors.ProducerFenced | errors.TransactionCoordinatorFenced):
        return "another worker took this worker's partitions over; it will rejoin as new"
    if isinstance(cause, errors.BrokerResponseError) and "Authoriz" in type(cause).__name__:
        return "the broker's ACLs do not allow this; grant them, then start the worker again"
    if is_fatal(cause):
        return "the broker refused the credentials; fix the SASL/TLS settings and start again"
    return "Kafka gave up on a send; a restart resumes from the committed offsets"


STOPPER = _Stopper()
"""The process's one stopper (there is one worker per process)."""
