"""Tokenizer training: `tokenmill train` learns a tokenizer from the corpus itself (offline).

Bad inputs are skipped as a run quarantines them (any exception decoding one input skips
that input), counted, and said: every trainer's result carries `skipped`, and the first
reasons are logged.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from pipeline.spec import SourceSpec

log = logging.getLogger(__name__)

_REASONS_LOGGED = 5


class DecodedCorpus:
    """Decoded samples of the corpus in listing order until max_bytes of input; bad ones skipped and counted."""

    def __init__(self, source: "SourceSpec", max_bytes: int, hints: dict[str, Any] | None = None,
                 transform: Callable[[Any], Any] | None = None) -> None:
        self.source, self.max_bytes, self.hints = source, max_bytes, hints or {}
        self.transform = transform or (lambda sample: sample)
        self.skipped = 0

    def _skip(self, uri: str, member: str, reason: str) -> None:
        self.skipped += 1
        if self.skipped <= _REASONS_LOGGED:
            log.warning("skipped %s%s: %s", uri, f" {member}" if member else "", reason)

    def __iter__(self) -> Iterator[Any]:
        from pipeline.decoders import decoder_for
        from pipeline.errors import DecodeError, Quarantined
        from pipeline.plan import cut_units, list_inputs
        from pipeline.sources import reader_for
        from pipeline.spec import JobSpec
        source = self.source
        spec = JobSpec(name="train", source=source, tokenizer={"kind": "bytes"}, sink={"uri": "unused"})
        read, decode = reader_for(source.format), decoder_for(source.modality)
        total = 0
        try:
            for unit in cut_units(spec, list_inputs(source.uris, source.storage_options, source.follow_symlinks)):
                for item in read(unit, source):
                    if isinstance(item, Quarantined):
                        self._skip(item.uri, item.member, item.reason)
                        continue
                    try:
                        sample = decode(item, source, **self.hints)
                    except DecodeError as err:
                        self._skip(err.uri, err.member, err.reason)
                        continue
                    except Exception as exc:  # noqa: BLE001 - any decoder failure skips this input only
                        self._skip(item.source, item.member, f"{type(exc).__name__}: {exc}")
                        continue
                    yield self.transform(sample)
                    total += item.n_bytes
                    if total >= self.max_bytes:
                        return
        finally:
            if self.skipped:
                more = f" (the first {_REASONS_LOGGED} named above)" if self.skipped > _REASONS_LOGGED else ""
                log.warning("skipped %d bad input(s) while sampling the corpus%s", self.skipped, more)


def iter_decoded(source: "SourceSpec", max_bytes: int, hints: dict[str, Any] | None = None) -> DecodedCorpus:
    """Decoded samples of the corpus in listing order until max_bytes of input (bad ones skipped, counted)."""
    return DecodedCorpus(source, max_bytes, hints)
