"""`python tests/bench/bench_cpu_batching.py [--images 96] [--pairs 3]`: what `tokenizer.batch_size: 8` costs
against `batch_size: 1` on CPU (issue 16's CPU goal: no more than 20%), for the small VQGAN of gpu_check's CPU line
(channels 32, multipliers 1,1,2,2,4, random weights, exported with torch.export) on real photos (scikit-image's,
256x256 JPEGs), one torch thread.

Two measurements, each in alternating pairs (batch 1, then batch 8) so that the machine's drift hits both alike:
- **encode alone**, in a fresh process per pass: the tokenizer's encode_batch over the decoded photos, once with
  glibc's defaults and once with the allocator setting every tokenmill worker makes (`keep_freed_memory`: large
  buffers stay in the heap when freed). A batch's activations (8 x 8 MiB per layer here) are over glibc's largest
  dynamic mmap threshold (32 MiB), so by default each one is mapped and faulted in afresh at every model call;
  one image's are reused from the heap.
- **`tokenmill run`** through the CLI, its own embedded Ray, 1 worker of 1 CPU: steady images/s from the ledger
  (first unit start to last commit) and the command's wall time.
Results: docs/benchmarks.md (neural encoders, CPU batching cost).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

MODEL = {"ch": 32, "mult": (1, 1, 2, 2, 4), "blocks": 1, "codes": 1024}
SIZE = 256


def build_inputs(work: Path, n_images: int) -> Path:
    """The exported encoder with its contract, and n_images real photos as JPEG under work/photos."""
    from PIL import Image

    from pipeline.tokenizers import encoder_reference as ref
    from tests import media_fixtures as mf
    model = ref.vqgan(**MODEL)
    path = Path(ref.export(model, str(work / "vqgan.pt2"), SIZE))
    (work / "vqgan.json").write_text(json.dumps(ref.contract(model, SIZE)))
    photos = work / "photos"
    photos.mkdir()
    for i in range(n_images):
        name = mf.PHOTOS[i % len(mf.PHOTOS)]
        image = Image.fromarray(mf.photo(name)).resize((SIZE, SIZE)).rotate(7 * (i // len(mf.PHOTOS)))
        image.save(photos / f"{i:04d}-{name}.jpg", quality=90)
    return path


def encode_alone(model: Path, photos: Path, batch: int, worker_allocator: bool) -> float:
    """images/s of encode_batch over the decoded photos in a fresh process (one torch thread)."""
    code = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
if {worker_allocator!r}:
    from pipeline.runner import keep_freed_memory
    assert keep_freed_memory()
import numpy as np, torch
from PIL import Image
from pipeline.spec import TokenizerSpec
from pipeline.tokenizers import build_tokenizer
torch.set_num_threads(1)
from pathlib import Path
images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(Path({str(photos)!r}).iterdir())]
tok = build_tokenizer(TokenizerSpec(kind="torch-export", path={str(model)!r}, batch_size={batch},
                                    options={{"device": "cpu"}}))
tok.encode_batch(images[:{batch}])  # warm-up: one full call
start = time.perf_counter()
tok.encode_batch(images)
print(len(images) / (time.perf_counter() - start))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(done.stdout.split()[-1])


def pipeline_run(work: Path, model: Path, batch: int) -> tuple[float, float]:
    """(steady images/s from the ledger, wall s) of `tokenmill run` with batch_size `batch`."""
    from pipeline.dataset.read import DatasetFolder
    from pipeline.rates import busy_span
    out = work / f"out-b{batch}"
    shutil.rmtree(out, ignore_errors=True)
    job = work / f"b{batch}.json"
    job.write_text(json.dumps({
        "name": f"cpu-batch-{batch}", "source": {"uri": str(work / "photos"), "modality": "image"},
        "tokenizer": {"kind": "torch-export", "path": str(model), "batch_size": batch, "options": {"device": "cpu"}},
        "sink": {"uri": str(out), "formats": ["arrow"]}, "resources": {"workers": 1, "cpus_per_worker": 1},
        "report": False}))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(job), "--num-cpus", "2", "--quiet"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    entries = DatasetFolder(str(out)).ledger().sorted()
    return sum(e.n_samples for e in entries) / busy_span(entries), wall


def same_codes(work: Path) -> float:
    """The share of token ids equal between the batch-1 and batch-8 outputs (>= 99.9% is the float rule)."""
    import numpy as np
    import pyarrow as pa

    def tokens(out: Path) -> dict[str, np.ndarray]:
        rows = {}
        for shard in sorted((out / "shards").rglob("*.arrow")):
            for r in pa.ipc.open_file(str(shard)).read_all().select(["id", "tokens"]).to_pylist():
                rows[r["id"]] = np.asarray(r["tokens"])
        return rows
    one, eight = tokens(work / "out-b1"), tokens(work / "out-b8")
    assert one.keys() == eight.keys() and one, "the two runs did not tokenize the same images"
    equal = sum(int((one[k] == eight[k]).sum()) for k in one)
    return equal / sum(len(v) for v in one.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tm-cpu-batching-"))
    try:
        model = build_inputs(work, args.images)
        print(f"{args.images} photos {SIZE}x{SIZE}, VQGAN {MODEL}, torch.export, one torch thread\n")
        print("| pass | allocator | batch 1 images/s | batch 8 images/s | batch 8 costs per image |")
        print("|---|---|---|---|---|")
        for pair in range(1, args.pairs + 1):
            for worker_allocator in (False, True):
                r1 = encode_alone(model, work / "photos", 1, worker_allocator)
                r8 = encode_alone(model, work / "photos", 8, worker_allocator)
                label = "worker's (keep_freed_memory)" if worker_allocator else "glibc default"
                print(f"| encode alone {pair} | {label} | {r1:.2f} | {r8:.2f} | {r1 / r8 - 1:+.0%} |", flush=True)
        print("\n| pass | batch 1 steady images/s | batch 8 steady images/s | batch 8 costs per image "
              "| wall s (1 / 8) |")
        print("|---|---|---|---|---|")
        costs = []
        for pair in range(1, args.pairs + 1):
            (r1, w1), (r8, w8) = pipeline_run(work, model, 1), pipeline_run(work, model, 8)
            costs.append(r1 / r8 - 1)
            print(f"| tokenmill run {pair} | {r1:.2f} | {r8:.2f} | {r1 / r8 - 1:+.0%} | {w1:.1f} / {w8:.1f} |",
                  flush=True)
        costs.sort()
        print(f"\ntokenmill run: batch 8 costs {costs[len(costs) // 2]:+.0%} per image (median of {len(costs)}; "
              f"goal <= +20%); token ids equal between batch 1 and 8: {same_codes(work):.3%}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
