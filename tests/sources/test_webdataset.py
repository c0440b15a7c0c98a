"""`format: webdataset`: samples grouped by key, unsafe member names quarantined, cut tars survive."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import webdataset as wds

from pipeline.errors import Quarantined
from pipeline.plan import InputRef, WorkUnit
from pipeline.sources import RawRecord, reader_for
from pipeline.sources.inputs import local_version
from pipeline.sources.webdataset import split_name
from pipeline.spec import DecodeLimits, SourceSpec
from tests import media_fixtures as mf


def read(path: Path, modality: str = "image", **limits) -> list[RawRecord | Quarantined]:
    source = SourceSpec(uri=str(path), format="webdataset", modality=modality, limits=DecodeLimits(**limits))
    st = path.stat()
    unit = WorkUnit("u", (InputRef(str(path), st.st_size, local_version(st)),), "f", st.st_size)
    return list(reader_for("webdataset")(unit, source))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    return mf.write_photos(tmp_path_factory.mktemp("photos"))[:3]


def test_split_name_matches_webdataset():
    assert split_name("a/b/key.seg.jpg") == ("a/b/key", "seg.jpg")
    assert split_name("key.json") == ("key", "json")
    for name in ("dir/x.y.png", "k.txt"):  # webdataset's own splitter agrees
        assert split_name(name) == wds.tariterators.base_plus_ext(name)


def test_members_grouped_by_key_with_meta(photos, tmp_path):
    shard = mf.write_image_shard(tmp_path / "shard.tar", photos, evil=False)
    items = read(shard)
    assert [type(i) for i in items] == [RawRecord] * 3
    first = items[0]
    assert first.id == f"{shard}/sample000" and first.member == "sample000.jpg"
    assert first.data == photos[0].read_bytes()
    assert first.meta == {"member": "sample000.jpg", "caption": photos[0].stem}


def test_unsafe_member_paths_quarantine_their_sample_and_are_never_written(photos, tmp_path):
    shard = mf.write_image_shard(tmp_path / "evil.tar", photos, evil=True)
    before = set(Path("/tmp").iterdir())
    items = read(shard)
    good = [i for i in items if isinstance(i, RawRecord)]
    bad = [i for i in items if isinstance(i, Quarantined)]
    assert len(good) == 3
    assert {q.member for q in bad} == {"../../x.jpg", "/tmp/abs.jpg"}
    assert any("'..'" in q.reason for q in bad) and any("absolute" in q.reason for q in bad)
    assert not (tmp_path.parent.parent / "x.jpg").exists() and set(Path("/tmp").iterdir()) - before == set()


def test_links_and_oversized_members_are_quarantined(photos, tmp_path):
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as tar:
        link = tarfile.TarInfo("k1.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        data = photos[0].read_bytes()
        info = tarfile.TarInfo("k2.jpg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    items = read(path, max_bytes=1000)
    assert [type(i) for i in items] == [Quarantined, Quarantined]
    assert "link" in items[0].reason and "max_bytes" in items[1].reason


def test_truncated_tar_keeps_complete_samples(photos, tmp_path):
    shard = mf.write_image_shard(tmp_path / "whole.tar", photos, evil=False)
    cut = tmp_path / "cut.tar"
    data = shard.read_bytes()
    cut.write_bytes(data[: len(data) - photos[2].stat().st_size // 2 - 2048])
    items = read(cut)
    assert [type(i) for i in items[:2]] == [RawRecord, RawRecord]
    assert isinstance(items[-1], Quarantined) and "truncated" in items[-1].reason


def test_sample_without_a_payload_member(tmp_path):
    path = mf.write_tar(tmp_path / "t.tar", [("k.json", b"{}"), ("k.txt", b"caption")])
    items = read(path)
    assert len(items) == 1 and "no image member" in items[0].reason


def test_not_a_tar(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(b"definitely not a tar archive" * 40)
    items = read(path)
    assert len(items) == 1 and isinstance(items[0], Quarantined) and "tar" in items[0].reason
