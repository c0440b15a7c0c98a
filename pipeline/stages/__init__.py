"""Post-tokenization stages: build them from the spec, run them on one shard table at a time.

Every stage is a plain callable on a pyarrow Table (no Ray), so the unit code runs
`for stage in build_stages(spec.stages, ctx): table = stage(table)` in any process.
"""
from __future__ import annotations

from typing import Sequence

from pipeline.spec import check_stages
from pipeline.shard import token_dtype
from pipeline.stages.base import Stage, StageContext
from pipeline.stages.dynamic import DynamicMerge, DynamicVocab, dynamic_token_dtype, expand_dynamic, expand_table
from pipeline.stages.prune import PruneTokens
from pipeline.stages.spans import MergeSpans
from pipeline.stages.temporal import TemporalMerge
from pipeline.tokenizer_spec import TokenizerTraits

STAGES: dict[str, type[Stage]] = {"dynamic": DynamicMerge, "spans": MergeSpans,
                                  "prune": PruneTokens, "temporal": TemporalMerge}

__all__ = ["STAGES", "Stage", "StageContext", "build_stages", "stage_token_dtype", "expand_dynamic",
           "expand_table", "DynamicVocab"]


def build_stages(specs: Sequence, ctx: StageContext) -> list[Stage]:
    """Build each stage once; the rules were checked on the driver, and are checked again here."""
    traits = TokenizerTraits(has_codebook=ctx.codebook is not None, has_token_bytes=ctx.token_bytes is not None,
                             vocab_size=ctx.base_vocab_size)
    check_stages(specs, ctx.modality, traits)  # the same function as at spec time: a stale spec stops here
    stages, seen = [], {}
    for spec in specs:
        seen[spec.kind] = seen.get(spec.kind, 0) + 1
        name = spec.kind if seen[spec.kind] == 1 else f"{spec.kind}.{seen[spec.kind]}"
        stages.append(STAGES[spec.kind](spec, ctx, name))
    return stages


def stage_token_dtype(base_vocab_size: int, specs: Sequence) -> str:
    """Token dtype of the shards, from the spec alone so that every shard agrees."""
    merges = sum(s.max_merges for s in specs if s.kind == "dynamic")
    return dynamic_token_dtype(base_vocab_size, merges) if merges else token_dtype(base_vocab_size)
