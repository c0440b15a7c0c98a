"""Large local files written with O_DIRECT (pipeline.direct_write), through Storage.write_atomic as shards are."""
from __future__ import annotations

import errno
import hashlib
import os

import numpy as np
import pyarrow as pa
import pytest

from pipeline import direct_write
from pipeline.direct_write import ALIGN, CHUNK_BYTES, DIRECT_MIN_BYTES, write_direct
from pipeline.storage import Storage


@pytest.mark.parametrize("size", [DIRECT_MIN_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES - ALIGN + 7, 5 * CHUNK_BYTES])
def test_a_direct_write_holds_exactly_the_bytes(tmp_path, size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "part.bin"
    assert write_direct(str(path), data), "this machine's filesystem takes O_DIRECT"
    assert path.stat().st_size == size and path.read_bytes() == data


def test_a_shard_written_atomically_reads_back_and_replaces_the_old_one(tmp_path):
    """A real Arrow IPC shard of ~10 MB, over an older file of the same name: the new bytes, no temporary left."""
    tokens = pa.ListArray.from_arrays(pa.array(np.arange(0, 5_000_001, 5_000, dtype=np.int32)),
                                      pa.array(np.arange(5_000_000, dtype=np.uint16)))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, pa.schema([("tokens", tokens.type)])) as writer:
        writer.write_table(pa.table({"tokens": tokens}))
    data = sink.getvalue().to_pybytes()
    assert len(data) >= DIRECT_MIN_BYTES
    storage = Storage(str(tmp_path))
    storage.write_atomic("shards/part-1.arrow", b"an older, shorter shard")
    storage.write_atomic("shards/part-1.arrow", data)
    assert os.listdir(tmp_path / "shards") == ["part-1.arrow"]
    written = (tmp_path / "shards" / "part-1.arrow").read_bytes()
    assert hashlib.sha256(written).hexdigest() == hashlib.sha256(data).hexdigest()
    with pa.memory_map(str(tmp_path / "shards" / "part-1.arrow")) as source:
        assert pa.ipc.open_file(source).read_all().column("tokens").combine_chunks().equals(tokens)


def test_a_filesystem_without_direct_io_gets_the_file_through_the_page_cache(tmp_path, monkeypatch):
    """Where O_DIRECT is refused (EINVAL: FUSE, older tmpfs), at open or at the first write, nothing is left
    behind by the direct attempt and write_atomic writes the same bytes the ordinary way. The refusal is
    simulated: this machine's filesystems all take O_DIRECT."""
    data = os.urandom(DIRECT_MIN_BYTES + 123)
    real_open, real_pwrite = os.open, os.pwrite

    def refusing_open(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(direct_write.os, "open", refusing_open)
    assert not write_direct(str(tmp_path / "a.bin"), data) and not (tmp_path / "a.bin").exists()
    Storage(str(tmp_path)).write_atomic("a.bin", data)
    assert (tmp_path / "a.bin").read_bytes() == data
    monkeypatch.setattr(direct_write.os, "open", real_open)

    def refusing_pwrite(fd, buffer, offset):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(direct_write.os, "pwrite", refusing_pwrite)
    assert not write_direct(str(tmp_path / "b.bin"), data) and not (tmp_path / "b.bin").exists()
    Storage(str(tmp_path)).write_atomic("b.bin", data)
    assert (tmp_path / "b.bin").read_bytes() == data
    monkeypatch.setattr(direct_write.os, "pwrite", real_pwrite)
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin"]


def test_a_write_that_fails_part_way_leaves_no_file_and_says_why(tmp_path, monkeypatch):
    """A full disk at the second chunk (simulated: ENOSPC from pwrite) raises, and no partial file is left."""
    real_pwrite = os.pwrite

    def full_after_first_chunk(fd, buffer, offset):
        if offset:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, buffer, offset)

    monkeypatch.setattr(direct_write.os, "pwrite", full_after_first_chunk)
    with pytest.raises(OSError, match="No space left"):
        write_direct(str(tmp_path / "c.bin"), os.urandom(2 * CHUNK_BYTES))
    assert os.listdir(tmp_path) == []


def test_a_refusal_at_a_later_chunk_or_a_short_write(tmp_path, monkeypatch):
    """EINVAL at the padded last chunk (a stricter alignment) falls back like a refusal at the first; a write that
    comes back short, with room left on the disk, is an I/O error (simulated), and no partial file is left."""
    real_pwrite = os.pwrite
    data = os.urandom(2 * CHUNK_BYTES + 5)

    def refuse_the_tail(fd, buffer, offset):
        if offset == 2 * CHUNK_BYTES:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, buffer, offset)

    monkeypatch.setattr(direct_write.os, "pwrite", refuse_the_tail)
    assert not write_direct(str(tmp_path / "d.bin"), data) and not (tmp_path / "d.bin").exists()
    Storage(str(tmp_path)).write_atomic("d.bin", data)
    assert (tmp_path / "d.bin").read_bytes() == data

    def short(fd, buffer, offset):
        return real_pwrite(fd, buffer[:ALIGN] if offset else buffer, offset)

    monkeypatch.setattr(direct_write.os, "pwrite", short)
    with pytest.raises(OSError, match="short direct write") as err:
        write_direct(str(tmp_path / "e.bin"), data)
    assert err.value.errno == errno.EIO and sorted(os.listdir(tmp_path)) == ["d.bin"]
