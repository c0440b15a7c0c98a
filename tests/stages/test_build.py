"""Stage rules are spec errors on the driver (parse and validate time), naming stage and modality."""
from __future__ import annotations

import pytest

from pipeline.spec import DynamicSpec, PruneSpec, SpansSpec, SpecError, TemporalSpec, check_stages, parse_spec
from pipeline.stages import StageContext, build_stages, stage_token_dtype
from pipeline.tokenizer_spec import TokenizerTraits


def job(modality: str, stages: list[dict], tokenizer: dict | None = None) -> dict:
    return {"name": "j", "source": {"uri": "/tmp/none", "modality": modality},
            "tokenizer": tokenizer or {"kind": "bytes"}, "stages": stages, "sink": {"uri": "/tmp/out"}}


@pytest.fixture
def model_file(tmp_path) -> str:
    """A path that exists: parse_spec checks only that the tokenizer file is there."""
    path = tmp_path / "model.pt"
    path.write_bytes(b"not read at parse time")
    return str(path)


@pytest.mark.parametrize(("modality", "stage"), [("image", "spans"), ("text", "temporal"),
                                                 ("code", "prune"), ("audio", "temporal")])
def test_job_spec_refuses_a_stage_that_does_not_fit_the_modality(modality, stage):
    with pytest.raises(SpecError, match=rf"stages\[0\] \({stage}\) does not apply to modality '{modality}'"):
        parse_spec(job(modality, [{"kind": stage}]))


def test_dynamic_must_be_last_and_single_at_parse_time():
    with pytest.raises(SpecError, match=r"stages\[1\] \(spans\): must come before the dynamic stage"):
        parse_spec(job("code", [{"kind": "dynamic"}, {"kind": "spans"}]))
    with pytest.raises(SpecError, match=r"stages\[1\] \(dynamic\): give at most one dynamic"):
        parse_spec(job("code", [{"kind": "dynamic"}, {"kind": "dynamic"}]))
    assert [s.kind for s in parse_spec(job("code", [{"kind": "spans"}, {"kind": "dynamic"}])).stages] == \
        ["spans", "dynamic"]


def test_within_words_needs_text_at_parse_time():
    with pytest.raises(SpecError, match=r"stages\[0\] \(dynamic\): needs text.*modality 'binary'"):
        parse_spec(job("binary", [{"kind": "dynamic", "within_words": True}]))
    assert parse_spec(job("binary", [{"kind": "dynamic"}])).stages[0].kind == "dynamic"


def test_codebook_stages_need_a_codebook_tokenizer_at_parse_time(model_file):
    no_codebook = {"kind": "torchscript", "path": model_file}
    with pytest.raises(SpecError, match=r"stages\[0\] \(prune\): needs a tokenizer with a codebook"):
        parse_spec(job("image", [{"kind": "prune"}], no_codebook))
    with pytest.raises(SpecError, match=r"stages\[0\] \(temporal\): threshold > 0 .*no codebook"):
        parse_spec(job("video", [{"kind": "temporal", "threshold": 0.5}], no_codebook))
    assert parse_spec(job("video", [{"kind": "temporal"}], no_codebook)).stages[0].threshold == 0
    assert parse_spec(job("image", [{"kind": "prune"}], {"kind": "image-vq", "path": model_file})).stages


def test_prune_count_must_be_whole_at_parse_time():
    with pytest.raises(SpecError, match=r"stages\.0\.keep: keep 2.5 is above 1.*whole number"):
        parse_spec(job("image", [{"kind": "prune", "keep": 2.5}]))


def test_the_int32_id_limit_is_a_rule_once_the_vocabulary_is_known():
    stages = [DynamicSpec(kind="dynamic", max_merges=100)]
    check_stages(stages, "code", TokenizerTraits(False, True))  # parse time: the vocabulary is not known yet
    check_stages(stages, "code", TokenizerTraits(False, True, vocab_size=2**31 - 101))
    with pytest.raises(SpecError, match=r"stages\[0\] \(dynamic\): base vocabulary 2147483548 \+ max_merges 100"):
        check_stages(stages, "code", TokenizerTraits(False, True, vocab_size=2**31 - 100))


def test_build_stages_repeats_the_driver_checks():
    """A worker given a spec that skipped validation stops with the same SpecError, before any shard."""
    with pytest.raises(SpecError, match=r"spans.*modality 'image'"):
        build_stages([SpansSpec(kind="spans")], StageContext("image", 512))
    with pytest.raises(SpecError, match="must come before the dynamic stage"):
        build_stages([DynamicSpec(kind="dynamic"), SpansSpec(kind="spans")],
                     StageContext("code", 100, token_bytes=[b"x"] * 100))
    with pytest.raises(SpecError, match="prune.*codebook"):
        build_stages([PruneSpec(kind="prune")], StageContext("image", 64))
    with pytest.raises(SpecError, match="max_merges"):
        build_stages([DynamicSpec(kind="dynamic", max_merges=100)], StageContext("code", 2**31 - 10))


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
