"""The holdout split: a deterministic slice of users, the same in every process and replay."""

from __future__ import annotations

import hashlib

_BUCKETS = 10_000


class HoldoutSplit:
    """A user is held out when hash(salt, user_id) falls in the first `percent` of buckets.

    Stable across restarts, workers and replays (no randomness, no state); changing the
    salt redraws the split. Resolution: 0.01 percent.
    """

    def __init__(self, percent: float, salt: str) -> None:
        self._cut = round(percent * _BUCKETS / 100)
        self._salt = salt.encode()

    def holds_out(self, user_id: str) -> bool:
        if self._cut <= 0:
            return False
        digest = hashlib.blake2b(user_id.encode(), digest_size=8, key=self._salt[:64]).digest()
        return int.from_bytes(digest, "big") % _BUCKETS < self._cut
