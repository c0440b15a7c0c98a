"""Post-tokenization stages: build them from the spec, run them on one shard table at a time.

Every stage is a plain callable on a pyarrow Table (no Ray), so the unit code runs
`for stage in build_stages(spec.stages, ctx): table = stage(table)` in any process.
"""
from __future__ import annotations

from typing import Sequence

from pipeline.spec import STAGE_MODALITIES, TEXT_MODALITIES
from pipeline.stages.base import Stage, StageContext, stage_error, token_dtype
from pipeline.stages.dynamic import DynamicMerge, DynamicVocab, dynamic_token_dtype, expand_dynamic, expand_table
from pipeline.stages.prune import PruneTokens
from pipeline.stages.spans import MergeSpans
from pipeline.stages.temporal import TemporalMerge

STAGES: dict[str, type[Stage]] = {"dynamic": DynamicMerge, "spans": MergeSpans,
                                  "prune": PruneTokens, "temporal": TemporalMerge}

__all__ = ["STAGES", "Stage", "StageContext", "build_stages", "stage_token_dtype", "expand_dynamic",
           "expand_table", "DynamicVocab"]


def build_stages(specs: Sequence, ctx: StageContext) -> list[Stage]:
    """Check the stage list against the modality and tokenizer, then build each stage once."""
    _check_order(specs)
    stages, seen = [], {}
    for i, spec in enumerate(specs):
        _check_fit(i, spec, ctx)
        seen[spec.kind] = seen.get(spec.kind, 0) + 1
        name = spec.kind if seen[spec.kind] == 1 else f"{spec.kind}.{seen[spec.kind]}"
        stages.append(STAGES[spec.kind](spec, ctx, name))
    return stages


def stage_token_dtype(base_vocab_size: int, specs: Sequence) -> str:
    """Token dtype of the shards, from the spec alone so that every shard agrees."""
    merges = sum(s.max_merges for s in specs if s.kind == "dynamic")
    return dynamic_token_dtype(base_vocab_size, merges) if merges else token_dtype(base_vocab_size - 1)


def _check_order(specs: Sequence) -> None:
    kinds = [s.kind for s in specs]
    if kinds.count("dynamic") > 1:
        raise stage_error("dynamic", "give at most one dynamic stage; raise max_merges instead")
    if "dynamic" in kinds and kinds.index("dynamic") != len(kinds) - 1:
        after = kinds[kinds.index("dynamic") + 1]
        raise stage_error(after, "must come before the dynamic stage: it needs base token ids; "
                                 "move dynamic to the end of stages")


def _check_fit(i: int, spec, ctx: StageContext) -> None:
    """Spec errors before any work: wrong modality, or a tokenizer that lacks what the stage needs."""
    where = f"stages[{i}] ({spec.kind})"
    if ctx.modality not in STAGE_MODALITIES[spec.kind]:
        raise stage_error(spec.kind, f"{where} does not apply to modality '{ctx.modality}'; "
                                     f"it works on: {', '.join(STAGE_MODALITIES[spec.kind])}")
    if spec.needs_text and (ctx.modality not in TEXT_MODALITIES or ctx.token_bytes is None):
        raise stage_error(spec.kind, f"{where} needs text with token byte strings (modality text or code "
                                     f"with a text tokenizer), got modality '{ctx.modality}'")
    if spec.kind == "prune" and ctx.codebook is None:
        raise stage_error(spec.kind, f"{where} needs a tokenizer with a codebook (image-vq or video)")
    if spec.kind == "prune" and spec.keep > 1 and spec.keep != int(spec.keep):
        raise stage_error(spec.kind, f"{where}: keep {spec.keep} is above 1, so it is a count and must "
                                     "be a whole number (or use a fraction in (0, 1])")
    if spec.kind == "temporal" and spec.threshold > 0 and ctx.codebook is None:
        raise stage_error(spec.kind, f"{where}: threshold > 0 compares codebook embeddings, but the "
                                     "tokenizer has no codebook; use threshold: 0 (exact match)")
