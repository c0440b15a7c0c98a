import json
from pathlib import Path

import pytest

from pipeline.schemas import SCHEMA_DIR, SCHEMAS, render
from pipeline.spec import SpecError, load_spec, parse_size, parse_spec

BASE = {"name": "t", "source": {"uri": "/tmp", "format": "files", "modality": "code"},
        "tokenizer": {"kind": "bytes"}, "sink": {"uri": "/tmp/out"}}


def with_(**changes):
    spec = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        node = spec
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return spec


def test_valid_spec_parses_with_defaults():
    spec = parse_spec(BASE)
    assert spec.source.unit_bytes == 64 << 20
    assert spec.sink.formats == ["arrow"]
    assert spec.on_error == "quarantine"


def test_sizes_accept_units():
    assert parse_size("128MiB") == 128 << 20
    assert parse_size("1.5GB") == 1_500_000_000
    assert parse_spec(with_(source__unit_bytes="2KiB")).source.unit_bytes == 2048
    with pytest.raises(ValueError):
        parse_size("12 parsecs")


def test_typo_key_names_the_field():
    with pytest.raises(SpecError, match=r"source\.formt: unknown key"):
        parse_spec(with_(source__formt="files"))


def test_unknown_tokenizer_kind_lists_the_known_ones():
    with pytest.raises(SpecError, match=r"tokenizer\.kind: unknown kind 'sentencepiece'.*bytes.*hf"):
        parse_spec(with_(tokenizer__kind="sentencepiece"))


def test_hf_without_path_says_how_to_get_one():
    with pytest.raises(SpecError, match="tokenmill train"):
        parse_spec(with_(tokenizer__kind="hf"))


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(SpecError, match="file not found"):
        parse_spec(with_(tokenizer__kind="hf", tokenizer__path=str(tmp_path / "nope.json")))


def test_bad_format_value():
    with pytest.raises(SpecError, match=r"source\.format"):
        parse_spec(with_(source__format="csv"))


def test_spec_is_frozen():
    spec = parse_spec(BASE)
    with pytest.raises(Exception):
        spec.name = "other"


def test_relative_paths_resolve_against_the_spec_file(tmp_path):
    (tmp_path / "job.yaml").write_text("name: t\nsource: {uri: corpus}\ntokenizer: {kind: bytes}\nsink: {uri: out}\n")
    spec = load_spec(tmp_path / "job.yaml")
    assert spec.source.uri == str(tmp_path / "corpus")
    assert spec.sink.uri == str(tmp_path / "out")


def test_spec_hash_ignores_sink_location_and_resources():
    a = parse_spec(BASE)
    b = parse_spec(with_(sink__uri="/elsewhere", resources={"workers": 7}))
    c = parse_spec(with_(tokenizer__add_eos=False))
    assert a.spec_hash() == b.spec_hash() != c.spec_hash()


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_files_match_the_code(name):
    path = SCHEMA_DIR / name
    assert path.exists(), f"run python -m pipeline.schemas to create {path}"
    assert path.read_text() == render(name), f"{name} drifted: run python -m pipeline.schemas"
