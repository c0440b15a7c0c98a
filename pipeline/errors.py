"""Errors with the context a person needs to find the bad input."""
from __future__ import annotations

from dataclasses import dataclass


class SpecError(ValueError):
    """A job spec that cannot run; the message says which field and how to fix it."""


class Interrupted(Exception):
    """The driver was told to stop (SIGTERM from a scheduler or `kill`): what committed stays committed, the
    run state says why, the lease is released, and the same command resumes."""


class TokenizerRefused(SpecError):
    """A worker could not build or check the spec's tokenizer (a neural encoder's model breaks its contract):
    the whole run stops with that SpecError, as if the driver had found it."""


# the stage of an empty input (a zero-byte file, an empty document): a fact, not an error. It is listed in
# _errors/ so it can be found, but counted apart (n_empty), never against on_error or on_error_max_fraction
EMPTY = "empty"


class DecodeError(Exception):
    """One input record could not be read, decoded or tokenized; it gets quarantined."""

    def __init__(self, uri: str, member: str = "", reason: str = "", stage: str = "decode") -> None:
        super().__init__(f"{uri}{'#' + member if member else ''}: {reason}")
        self.uri, self.member, self.reason, self.stage = uri, member, reason, stage

    def __reduce__(self):  # pickled whole (a decode task returns it), not as its message alone
        return DecodeError, (self.uri, self.member, self.reason, self.stage)


@dataclass(frozen=True)
class Quarantined:
    """A record that was set aside with its reason; written to OUT/_errors/."""

    uri: str
    member: str
    reason: str
    stage: str

    @classmethod
    def from_error(cls, err: DecodeError) -> "Quarantined":
        return cls(err.uri, err.member, err.reason, err.stage)


class UnitFailed(RuntimeError):
    """A work unit failed as a whole (not one bad record): retried, then reported."""


class ClusterLost(RuntimeError):
    """The Ray cluster can no longer run the work (its node died, no node can host a worker)."""


class OutputError(RuntimeError):
    """The output location cannot be used (not writable, another run holds it, ...)."""
