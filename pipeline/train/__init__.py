"""Tokenizer training: `tokenmill train` learns a tokenizer from the corpus itself (offline)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from pipeline.spec import SourceSpec

log = logging.getLogger(__name__)


def iter_decoded(source: "SourceSpec", max_bytes: int, hints: dict[str, Any] | None = None) -> Iterator[Any]:
    """Decoded samples of the corpus in listing order until max_bytes of input (bad ones skipped)."""
    from pipeline.decoders import decoder_for
    from pipeline.errors import DecodeError, Quarantined
    from pipeline.plan import cut_units, list_inputs
    from pipeline.sources import reader_for
    from pipeline.spec import JobSpec
    spec = JobSpec(name="train", source=source, tokenizer={"kind": "bytes"}, sink={"uri": "unused"})
    read, decode = reader_for(source.format), decoder_for(source.modality)
    total = 0
    for unit in cut_units(spec, list_inputs(source.uris, source.storage_options)):
        for item in read(unit, source):
            if isinstance(item, Quarantined):
                continue
            try:
                yield decode(item, source, **(hints or {}))
            except DecodeError as err:
                log.info("skipped %s: %s", err.uri, err.reason)
                continue
            total += item.n_bytes
            if total >= max_bytes:
                return
