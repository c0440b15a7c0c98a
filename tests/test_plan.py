import json
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings, strategies as st

from pipeline.plan import GROUP_PIECES, InputFile, cut_units, group_bytes, group_small_files, list_inputs
from pipeline.sources.lines import iter_lines
from pipeline.spec import parse_spec


def spec_for(uri, fmt="files", unit_bytes=10_000):
    return parse_spec({"name": "t", "source": {"uri": str(uri), "format": fmt, "unit_bytes": unit_bytes},
                       "tokenizer": {"kind": "bytes"}, "sink": {"uri": "/tmp/x"}})


def fake_files(n, size=1000, prefix="f"):
    return [InputFile(f"/c/{prefix}{i:05d}.py", size, "1") for i in range(n)]


def test_units_are_deterministic_and_cover_every_file():
    files = fake_files(500)
    a = cut_units(spec_for("/c"), files)
    b = cut_units(spec_for("/c"), list(reversed(files))[::-1])
    assert [u.id for u in a] == [u.id for u in b]
    covered = [r.uri for u in a for r in u.inputs]
    assert sorted(covered) == [f.uri for f in files]
    assert 10 < len(a) < 200


def test_inserting_files_changes_only_nearby_units():
    files = fake_files(2000)
    before = {u.id for u in cut_units(spec_for("/c"), files)}
    grown = sorted(files + [InputFile("/c/f00500x.py", 1000, "1"), InputFile("/c/f01500x.py", 1000, "1"),
                            InputFile("/c/zzz.py", 1000, "1")], key=lambda f: f.uri)
    after = {u.id for u in cut_units(spec_for("/c"), grown)}
    assert len(after - before) <= 6, "an insertion must not reshuffle the whole plan"
    assert len(before - after) <= 4


def test_unit_size_is_bounded():
    files = fake_files(3000, size=50)
    for u in group_small_files(files, 10_000):
        assert sum(r.size for r in u) <= 4 * 10_000


def test_listing_names_hidden_entries_once_and_reads_other_names(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x").write_text("x")
    (tmp_path / "b.txt.tmp-123").write_text("not tokenmill's: an ordinary name")
    (tmp_path / "_errors").mkdir()
    (tmp_path / "_errors" / "c.txt").write_text("an ordinary folder name too")
    listed = {f.uri: f.problem for f in list_inputs([str(tmp_path)])}
    assert listed == {str(tmp_path / "a.txt"): "", str(tmp_path / "b.txt.tmp-123"): "",
                      str(tmp_path / "_errors" / "c.txt"): "",
                      str(tmp_path / ".git"): "hidden (its name starts with '.'); not read"}


@settings(max_examples=40, deadline=None)
@given(lines=st.lists(st.text(alphabet="ab\u00e9 ", min_size=0, max_size=30), min_size=1, max_size=60),
       unit_bytes=st.integers(min_value=1, max_value=200))
def test_byte_ranges_give_every_line_to_exactly_one_unit(tmp_path_factory, lines, unit_bytes):
    path = tmp_path_factory.mktemp("lines") / "data.txt"
    path.write_bytes("\n".join(lines).encode() + b"\n")
    spec = spec_for(path, "lines", unit_bytes)
    units = cut_units(spec, list_inputs([str(path)]))
    got = [line for u in units for r in u.inputs for _, line, _ in iter_lines(r, spec.source)]
    assert got == [line.encode() for line in lines]


def test_parquet_units_are_row_group_ranges(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": [f"row {i} " * 50 for i in range(1000)]}), path, row_group_size=100)
    units = cut_units(spec_for(path, "parquet", 20_000), list_inputs([str(path)]))
    ranges = [(u.inputs[0].start, u.inputs[0].end) for u in units]
    assert ranges[0][0] == 0 and ranges[-1][1] == 10
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert len(units) > 1
    # a unit's n_bytes is what it reads (its column chunks), not its count of row groups
    meta = pq.ParquetFile(path).metadata
    chunks = [meta.row_group(g).column(0).total_compressed_size for g in range(meta.num_row_groups)]
    assert [u.n_bytes for u in units] == [sum(chunks[a:b]) for a, b in ranges]
    assert sum(chunks) < path.stat().st_size and min(u.n_bytes for u in units) > 1000
    again = [type(u).from_json(json.loads(json.dumps(u.to_json()))) for u in units]
    assert again == units and [u.n_bytes for u in again] == [u.n_bytes for u in units]


def test_a_big_file_is_cut_for_every_worker_and_by_the_file_alone(tmp_path):
    """A 40 MB (and a 20 MB) jsonl file with the default unit_bytes (64 MiB) gives 4 units (2 workers x 2), the same
    whatever the cluster; a small file stays whole (units never under 4 MiB); a unit_bytes set lower is kept."""
    line = json.dumps({"text": "def f(x):\n    return x + 1\n" * 40}) + "\n"
    big = tmp_path / "big" / "data.jsonl"
    big.parent.mkdir()
    big.write_text(line * (40_000_000 // len(line)))
    units = cut_units(spec_for(big.parent, "jsonl", unit_bytes="64MiB"), list_inputs([str(big.parent)]))
    assert len(units) == 4 and max(u.n_bytes for u in units) <= -(-big.stat().st_size // 4)
    assert sum(u.n_bytes for u in units) == big.stat().st_size
    small = tmp_path / "small" / "data.jsonl"
    small.parent.mkdir()
    small.write_text(line * (3_000_000 // len(line)))
    assert len(cut_units(spec_for(small.parent, "jsonl", unit_bytes="64MiB"), list_inputs([str(small.parent)]))) == 1
    small.write_text(line * (20_000_000 // len(line)))
    assert len(cut_units(spec_for(small.parent, "jsonl", unit_bytes="64MiB"), list_inputs([str(small.parent)]))) == 4
    fine = cut_units(spec_for(big.parent, "jsonl", unit_bytes="4MiB"), list_inputs([str(big.parent)]))
    assert len(fine) == -(-big.stat().st_size // (4 << 20))


def test_a_small_corpus_of_small_files_gives_enough_units_for_the_workers():
    """200 MB of ~14 KB code files at the default unit_bytes (64 MiB): grouped by 16 MiB (group_bytes), so about a
    dozen units instead of ~3; the groups stay content-defined (an insertion moves a few units only), and a corpus
    of GROUP_PIECES x unit_bytes or more is grouped by unit_bytes itself."""
    mib = 1 << 20
    assert [group_bytes(t * mib, 64 * mib) // mib for t in (10, 63, 64, 200, 511, 512, 5000)] == [4, 4, 8, 16, 32, 64, 64]
    assert group_bytes(10 * mib, 1000) == 1000  # a unit_bytes set below the floor is kept
    files = fake_files(14_000, size=14_300)
    units = cut_units(spec_for("/c", unit_bytes="64MiB"), files)
    assert 8 <= len(units) <= 30, len(units)
    assert max(u.n_bytes for u in units) <= 4 * 16 * mib
    grown = sorted(files + [InputFile("/c/f07000x.py", 14_300, "1")], key=lambda f: f.uri)
    after = cut_units(spec_for("/c", unit_bytes="64MiB"), grown)
    assert len({u.id for u in after} - {u.id for u in units}) <= 2
    big = fake_files(GROUP_PIECES * 64 * 20, size=mib // 2 + 1)  # > 8 x 64 MiB: unit_bytes as given
    assert group_bytes(sum(f.size for f in big), 64 * mib) == 64 * mib
