"""Loader states: versioned, checked field by field, and read back from torchdata's StatefulDataLoader.

A state is the global position (windows consumed by all ranks together, at the end of a global
batch), the same on every rank, plus what is needed to reopen it quickly (the epoch's anchor,
the followed generation) and the layout that saved it. A StatefulDataLoader state holds one
such state per DataLoader worker, each as of the last global batch that worker made; the
loader's position is the furthest of them, plus the batches taken since its last snapshot.
"""
from __future__ import annotations

from typing import Any

STATE_FORMAT = "tokenmill.loader"
MIXTURE_FORMAT = "tokenmill.mixture"
STATE_VERSION = 2
LAYOUT_KEYS = ("world_size", "batch_size", "num_workers")


class StateError(ValueError):
    """A loader state that cannot be resumed here; the message names the field and the fix."""


def unwrap(state: Any, fmt: str) -> tuple[dict[str, Any], int]:
    """The furthest dataset state inside `state` (ours, or a StatefulDataLoader's with or without
    workers), and the global batches consumed after it (a snapshot every n steps lags behind)."""
    if isinstance(state, dict) and "_snapshot" in state:
        snaps = state["_snapshot"].get("_worker_snapshots", {})
        inner = [s.get("dataset_state") for s in snaps.values() if isinstance(s, dict)]
        inner = [s for s in inner if s is not None]
        if not inner:
            raise StateError("StatefulDataLoader state holds no dataset state (was the dataset a TokenDataset?)")
        for s in inner:
            check_format(s, fmt)
        latest = max(inner, key=lambda s: (s["epoch"], s["position"]) if fmt == STATE_FORMAT else s["position"])
        return latest, int(state.get("_steps_since_snapshot", 0))
    if isinstance(state, dict) and "dataset_state" in state and "format" not in state:
        state = state["dataset_state"]
    check_format(state, fmt)
    return state, 0


def check_format(state: Any, fmt: str) -> None:
    """Refuse what is not a state of this kind and version, saying why."""
    kind = "mixture" if fmt == MIXTURE_FORMAT else "loader"
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise StateError(f"not a tokenmill {kind} state (missing format {fmt!r})")
    version = state.get("version")
    if version == 1:
        raise StateError(f"{kind} state version 1 is not supported: it holds one DataLoader worker's cursor in the "
                         "old per-rank split, which says nothing about what the other ranks read, so no global "
                         f"position can be derived from it; start epoch {int(state.get('epoch', 0)) + 1} instead "
                         "(set_epoch) without loading it")
    if version != STATE_VERSION:
        raise StateError(f"{kind} state format version {version!r} is not supported: this loader reads version "
                         f"{STATE_VERSION}")


def check_fields(saved: dict[str, Any], now: dict[str, Any], what: str) -> None:
    """Refuse a state whose `what` differs from this loader's, naming every differing field."""
    diffs = [f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in sorted(set(saved) | set(now))
             if saved.get(k) != now.get(k)]
    if diffs:
        raise StateError(f"loader state was saved with another {what}: " + "; ".join(diffs))


def check_worker_restore(state: dict[str, Any], layout: dict[str, Any], worker: int) -> None:
    """A StatefulDataLoader that restores each worker's own state needs the layout that saved it."""
    saved = {k: state["layout"].get(k) for k in LAYOUT_KEYS}
    now = {k: layout[k] for k in LAYOUT_KEYS}
    if saved != now or state["layout"].get("worker") != worker:
        raise StateError(f"StatefulDataLoader.load_state_dict restores each DataLoader worker's own position, which "
                         f"needs the layout that saved it ({saved}, worker {state['layout'].get('worker')}); this is "
                         f"{now}, worker {worker}. To resume on another world size, batch size or num_workers, give "
                         f"the saved state to the dataset instead: ds.load_state_dict(state) and a fresh DataLoader")
