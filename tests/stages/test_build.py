"""Building stages from the spec: misfits are spec errors before any work, naming stage and modality."""
from __future__ import annotations

import pytest

from pipeline.spec import DynamicSpec, PruneSpec, SpansSpec, SpecError, TemporalSpec, parse_spec
from pipeline.stages import StageContext, build_stages, stage_token_dtype


def job(modality: str, stages: list[dict]) -> dict:
    return {"name": "j", "source": {"uri": "/tmp/none", "modality": modality},
            "tokenizer": {"kind": "bytes"}, "stages": stages, "sink": {"uri": "/tmp/out"}}


@pytest.mark.parametrize(("modality", "stage"), [("image", "spans"), ("text", "temporal"),
                                                 ("code", "prune"), ("audio", "temporal")])
def test_job_spec_refuses_a_stage_that_does_not_fit_the_modality(modality, stage):
    with pytest.raises(SpecError, match=rf"stages\[0\] \({stage}\) does not apply to modality '{modality}'"):
        parse_spec(job(modality, [{"kind": stage}]))


def test_build_stages_repeats_the_modality_check():
    with pytest.raises(SpecError, match=r"spans.*modality 'image'"):
        build_stages([SpansSpec(kind="spans")], StageContext("image", 512))


def test_dynamic_must_be_last_and_single():
    ctx = StageContext("code", 100, token_bytes=[b"x"] * 100)
    with pytest.raises(SpecError, match=r"stages \(spans\): must come before the dynamic stage"):
        build_stages([DynamicSpec(kind="dynamic"), SpansSpec(kind="spans")], ctx)
    with pytest.raises(SpecError, match="at most one dynamic"):
        build_stages([DynamicSpec(kind="dynamic"), DynamicSpec(kind="dynamic")], ctx)


def test_within_words_needs_text():
    with pytest.raises(SpecError, match=r"dynamic.*modality 'binary'"):
        build_stages([DynamicSpec(kind="dynamic", within_words=True)], StageContext("binary", 257))
    assert build_stages([DynamicSpec(kind="dynamic")], StageContext("binary", 257))[0].name == "dynamic"


def test_names_and_stats_start_empty():
    ctx = StageContext("video", 64, codebook=None)
    stages = build_stages([TemporalSpec(kind="temporal"), DynamicSpec(kind="dynamic")], ctx)
    assert [s.name for s in stages] == ["temporal", "dynamic"] and all(s.stats == {} for s in stages)


def test_token_dtype_is_decided_by_the_spec():
    assert stage_token_dtype(8192, []) == "uint16"
    assert stage_token_dtype(65536, []) == "uint16"
    assert stage_token_dtype(65537, []) == "uint32"
    assert stage_token_dtype(8192, [DynamicSpec(kind="dynamic", max_merges=57344)]) == "uint16"
    assert stage_token_dtype(8192, [DynamicSpec(kind="dynamic", max_merges=57345)]) == "uint32"
    assert stage_token_dtype(8192, [PruneSpec(kind="prune"), SpansSpec(kind="spans")]) == "uint16"


def test_every_stage_takes_an_empty_shard():
    import numpy as np
    from tests.stages.helpers import make_table
    codebook = np.eye(4, dtype=np.float32)
    cases = [(DynamicSpec(kind="dynamic", within_words=True), "code"), (SpansSpec(kind="spans"), "code"),
             (PruneSpec(kind="prune"), "image"), (TemporalSpec(kind="temporal"), "video")]
    for spec, modality in cases:
        ctx = StageContext(modality, 4, eos_id=None, token_bytes=[b"a", b"b", b"c", b"d"], codebook=codebook)
        (stage,) = build_stages([spec], ctx)
        table = make_table([], [] if modality == "code" else None, modality=modality)
        out = stage(table)
        assert out.num_rows == 0 and stage.stats, spec.kind
