"""The fault suite (issue 6): real broker, real workers, hostile conditions, figures.

Run it with ``make faults`` (``python -m faults [--only NAME ...] [--scale small|full]``).
It starts one Kafka broker of its own (``deploy/local/kafka`` on port 19792, controller
19793, data under ``var/faults/``; ``--kafka-port`` or ``FAULTS_KAFKA_PORT`` moves both, for
a second suite on the same machine), runs the scenarios one after another on it, stops the
broker even when something fails, and rewrites ``RELIABILITY.md`` at the repo root. The
exit status is non-zero when any scenario failed.

Adding a scenario
-----------------

1. Write ``faults/<name>.py`` with one function ``run(ctx: Context) -> Outcome``
   (both in ``faults.harness``). ``ctx`` gives you:

   - ``ctx.bootstrap`` (``localhost:19792``) and ``ctx.broker`` (``stop()``, ``start()``,
     ``restart()`` — for a broker-restart scenario; ``None`` when a pytest runs the
     scenario on the session's broker, see tests/integration/test_hostile_input.py);
   - ``ctx.scale`` (``"small"`` or ``"full"``) and ``ctx.pick(small=..., full=...)``;
   - ``ctx.workdir``: a fresh directory for this scenario's files;
   - ``ctx.deployment(**kwargs)``: a ``tests.integration.worker_helpers.Deployment`` with
     topics of a unique prefix (its own consumer group, data dirs, policy file). Start
     workers with ``WorkerProcess(deployment, name)`` from the same module;
   - ``ctx.log(message)``: a progress line on stderr.

   Return ``Outcome(name, passed, figures, method, notes)``: ``figures`` is an ordered
   dict of label -> number/text that goes into the report's table as it is; ``method``
   says, in a few sentences of Markdown, how the figures were obtained and what was
   checked. Raise nothing on purpose: a check that fails is ``passed=False`` with a
   note saying what was seen. (An exception is caught by the runner and reported as a
   failure with its traceback, so a broken scenario cannot take the others down.)
2. Add it to ``SCENARIOS`` in ``faults/__main__.py`` (the order there is the run order).

Scenarios must not use the ports 9092/19092/19392 (other brokers run there) and must
stop every worker they start (``try/finally``). Reuse ``tests/integration/worker_helpers``
rather than copying from it.
"""
