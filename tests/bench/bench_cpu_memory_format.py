"""`python tests/bench/bench_cpu_memory_format.py`: a conv encoder on one CPU thread, batch 1 against batch 8,
contiguous against channels_last memory format (the small VQGAN of gpu_check's CPU line, eager, random weights,
16 random 256x256 inputs). Prints images/s, what batch 8 costs per image, and whether batch 8 gave batch 1's
codes. Results: docs/benchmarks.md (neural encoders, CPU batching cost).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    import torch

    from pipeline.tokenizers import encoder_reference as ref
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ref.vqgan(ch=32, mult=(1, 1, 2, 2, 4), blocks=1, codes=1024).eval()
    images = torch.rand(16, 3, 256, 256)

    def rate(net, inputs, batch: int) -> tuple[float, torch.Tensor]:
        with torch.inference_mode():
            net(inputs[:batch])  # warm-up
            start = time.perf_counter()
            codes = torch.cat([net(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])
        return len(inputs) / (time.perf_counter() - start), codes
    for name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        net, inputs = model.to(memory_format=fmt), images.contiguous(memory_format=fmt)
        (r1, c1), (r8, c8) = rate(net, inputs, 1), rate(net, inputs, 8)
        print(f"{name:14s} batch 1 {r1:6.2f} images/s, batch 8 {r8:6.2f} images/s: batch 8 costs {r1 / r8 - 1:+.0%} "
              f"per image; codes equal to batch 1: {(c1 == c8).float().mean().item():.2%}")


if __name__ == "__main__":
    main()
