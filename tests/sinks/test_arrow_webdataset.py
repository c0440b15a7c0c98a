import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

from pipeline.shard import build_table
from pipeline.sinks.arrow import ipc_bytes, parquet_bytes
from pipeline.sinks.webdataset import tar_bytes

SHARD = "part-0123456789abcdef"
from pipeline.tokenizers.base import TokenBatch


def sample_table(dtype="uint16"):
    docs = [[5, 6, 7], [], [65535 if dtype == "uint16" else 70000, 1]]
    batch = TokenBatch.from_lists(docs, eos_id=0)
    rows = {"id": ["a.py", "dir/b.py", "c.py@12"], "source": ["a.py", "dir/b.py", "c.py"],
            "modality": ["code"] * 3, "n_bytes": [10, 0, 4], "meta": [{}, {"lang": "py"}, {}]}
    return build_table(rows, batch, dtype, {"tokenizer_fingerprint": "abc"}), docs


def test_ipc_round_trip_through_pyarrow():
    table, docs = sample_table()
    back = pa.ipc.open_file(pa.BufferReader(ipc_bytes(table))).read_all()
    assert back.column("tokens").to_pylist() == [d + [0] for d in docs]
    assert back.schema.field("tokens").type == pa.list_(pa.uint16())
    assert back.schema.metadata[b"tokenmill.tokenizer_fingerprint"] == b"abc"
    assert back.column("shape").to_pylist() == [[4], [1], [3]]


def test_uint32_when_ids_do_not_fit():
    table, _ = sample_table("uint32")
    back = pq.read_table(io.BytesIO(parquet_bytes(table)))
    assert back.schema.field("tokens").type == pa.list_(pa.uint32())
    assert back.column("tokens").to_pylist()[2] == [70000, 1, 0]


def test_webdataset_tar_read_by_webdataset_package(tmp_path):
    table, docs = sample_table()
    path = tmp_path / "s.tar"
    path.write_bytes(tar_bytes(table, SHARD)[0])
    samples = list(wds.WebDataset(str(path), shardshuffle=False).decode())
    assert [s["__key__"] for s in samples] == [f"0123456789abcdef-s{i:08d}" for i in range(3)]
    assert [s["tokens.npy"].tolist() for s in samples] == [d + [0] for d in docs]
    assert samples[1]["json"]["id"] == "dir/b.py" and samples[1]["json"]["meta"] == {"lang": "py"}
    assert samples[0]["tokens.npy"].dtype == np.uint16


def test_shard_bytes_are_deterministic_and_headers_fixed():
    import tarfile
    a, _ = sample_table()
    b, _ = sample_table()
    assert ipc_bytes(a) == ipc_bytes(b) and parquet_bytes(a) == parquet_bytes(b)
    assert tar_bytes(a, SHARD) == tar_bytes(b, SHARD)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(a, SHARD)[0])) as tar:
        members = tar.getmembers()
    assert members and all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    assert [m.name for m in members[:1]] == ["__meta__"]  # the shard's metadata: not a sample (no extension)
    assert all("/" not in m.name and m.name.count(".") >= 1 for m in members[1:])
    json.dumps([m.name for m in members])
