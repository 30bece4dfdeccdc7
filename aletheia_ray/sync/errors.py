"""Weight-sync errors that name the party at fault (which engine, or the learner)."""
from __future__ import annotations


class SyncError(RuntimeError):
    """A weight sync failed; ``parties`` names who failed (e.g. ``["rollout engine 1"]``)."""

    def __init__(self, message: str, parties: list[str]):
        super().__init__(message)
        self.parties = list(parties)


class SyncTimeoutError(SyncError, TimeoutError):
    """A weight sync did not finish in time; ``parties`` are those that did not answer."""
