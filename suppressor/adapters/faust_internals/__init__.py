"""Everything that reaches into the private internals of faust-streaming, mode or aiokafka.

Kafka Streams keeps what is fragile under ``internals`` packages; this is ours. Each module
works around one concern, and README.md in this folder says, for every patch, what the
library does wrong, the invariant the patch keeps, the upstream issue and the test that
proves it. The patches are written against the versions in ``TESTED``: the worker refuses
to start on others (``check_versions``) unless ``SUPPRESSOR_ALLOW_UNTESTED_VERSIONS`` is
set, because a private name that moved fails silently or, worse, half-works.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from suppressor.core.errors import ConfigError

log = logging.getLogger(__name__)

TESTED = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}
"""The distributions whose internals these modules patch, at the versions they were tested
with (pinned in pyproject.toml and constraints.txt)."""


def untested_versions() -> dict[str, str]:
    """Installed versions that differ from ``TESTED`` (distribution -> installed version)."""
    found: dict[str, str] = {}
    for name, tested in TESTED.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "not installed"
        if installed != tested:
            found[name] = installed
    return found


def check_versions(allow_untested: bool) -> None:
    """ConfigError when an installed version differs from ``TESTED`` (a warning when allowed)."""
    differing = untested_versions()
    if not differing:
        return
    listed = ", ".join(f"{name} {got} (tested: {TESTED[name]})" for name, got in differing.items())
    if allow_untested:
        log.warning("running on untested versions, as allowed: %s", listed)
        return
    raise ConfigError(
        f"the worker patches private parts of {', '.join(TESTED)} and was tested with "
        f"{', '.join(f'{n} {v}' for n, v in TESTED.items())}; installed: {listed}. Install the "
        "pinned versions (pip install -c constraints.txt .), or set "
        "SUPPRESSOR_ALLOW_UNTESTED_VERSIONS=true to run anyway (read "
        "suppressor/adapters/faust_internals/README.md first)"
    )
