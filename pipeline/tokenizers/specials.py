"""The ids tokenmill puts around each document (EOS after, BOS before), shared by the text kinds.

Special-token text inside a document is ordinary text unless the spec says `allow_special`,
so a document that spells `<|endoftext|>` decodes back to itself and the loader's document
boundaries are exactly the EOS ids put here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from pipeline.errors import SpecError
from pipeline.tokenizer_spec import TextOptions
from pipeline.tokenizers.base import TokenBatch, insert_each


@dataclass(frozen=True)
class DocumentMarks:
    """The EOS and BOS (token, id) of a text tokenizer; either may be absent."""

    eos: tuple[str, int] | None
    bos: tuple[str, int] | None

    @property
    def eos_id(self) -> int | None:
        return self.eos[1] if self.eos else None

    @property
    def bos_id(self) -> int | None:
        return self.bos[1] if self.bos else None

    def options(self) -> dict[str, Any]:
        """The marks as fingerprint options: eos_token as before; bos_token only when there is one."""
        return {"eos_token": self.eos[0] if self.eos else None, **({"bos_token": self.bos[0]} if self.bos else {})}

    def add_bos(self, batch: TokenBatch) -> TokenBatch:
        """The batch with the BOS id before every sample (unchanged without a BOS)."""
        if self.bos is None:
            return batch
        values = insert_each(batch.values, batch.offsets, self.bos[1], after=False)
        return TokenBatch(values, batch.offsets + np.arange(len(batch.offsets), dtype=np.int64))

    def strip(self, ids: Iterable[int], eos_id: int | None) -> list[int]:
        """A sample's ids without the BOS and EOS tokenmill put around it (ids inside are kept)."""
        out = [int(i) for i in np.asarray(ids)]
        if self.bos is not None and out[:1] == [self.bos[1]]:
            out = out[1:]
        if eos_id is not None and out[-1:] == [eos_id]:
            out = out[:-1]
        return out


def resolve_marks(options: TextOptions, to_id: Callable[[str], int | None], to_name: Callable[[int], str | None],
                  default_eos: str | tuple[str, ...], add_eos: bool, where: str) -> DocumentMarks:
    """EOS and BOS from the options (checked against the vocabulary), else the first default EOS it holds."""
    eos = _named("eos", options.eos_token, options.eos_id, to_id, to_name, where)
    if eos is None and options.eos_token is None and options.eos_id is None:
        defaults = (default_eos,) if isinstance(default_eos, str) else default_eos
        eos = next(((t, to_id(t)) for t in defaults if to_id(t) is not None), None)
        if eos is None and add_eos:
            raise SpecError(f"tokenizer.add_eos: no EOS token ({', '.join(defaults)}) in {where}; "
                            "set tokenizer.options.eos_token or add_eos: false")
    return DocumentMarks(eos, _named("bos", options.bos_token, None, to_id, to_name, where))


def _named(mark: str, name: str | None, token_id: int | None, to_id: Callable[[str], int | None],
           to_name: Callable[[int], str | None], where: str) -> tuple[str, int] | None:
    """(token, id) for a mark given by name and/or id, or a SpecError saying which is not in the vocabulary."""
    if name is not None:
        found = to_id(name)
        if found is None:
            raise SpecError(f"tokenizer.options.{mark}_token: {name!r} is not in {where}")
        if token_id is not None and token_id != found:
            raise SpecError(f"tokenizer.options.{mark}_id: {token_id} is not {name!r}, whose id is {found}; "
                            f"give {mark}_token or {mark}_id")
        return name, found
    if token_id is None:
        return None
    found_name = to_name(token_id)
    if found_name is None:
        raise SpecError(f"tokenizer.options.{mark}_id: {token_id} is not an id of {where}")
    return found_name, token_id
