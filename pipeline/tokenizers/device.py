"""Where tokenizers compute (cuda when the actor has a GPU, else CPU) and exact nearest-code search.

Codes must not depend on the device. Float32 distances differ between cuBLAS and CPU BLAS
in the last bits, which flips near-ties; so vectors and codes are integers and distances
are computed in a float type whose mantissa holds every partial sum exactly: float32 when
D * range^2 < 2^24 (audio: 64 x 150^2), else float64 (image patches: 768 x 255^2). Exact
sums do not depend on summation order, and argmin takes the first index on ties, so CPU
and GPU give identical codes. Torch is imported here, never at `import pipeline`.
"""
from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)

_CHUNK_ROWS = 16384  # distance matrix chunk: 16k x K floats bounds memory


# where a GPU that torch can use shows itself without torch: NVIDIA's control device, ROCm's, WSL's
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def device_kind(preference: str = "auto") -> str:
    """The device kind an encoder's fingerprint records: the one asked for (`cpu`, `cuda`: where it is run,
    the check refuses it if torch sees no such device), or for `auto`, what pick_device says. On a machine
    without a GPU device file that is `cpu` without importing torch (its import is ~2 s here: a run's driver
    that only fingerprints an encoder does not pay it)."""
    if preference in ("cpu", "cuda"):
        return preference
    if not any(os.path.exists(p) for p in GPU_DEVICE_FILES):
        return "cpu"
    return pick_device(preference).type


def pick_device(preference: str = "auto"):
    """torch.device: `cuda` when asked for or available (auto), else `cpu`."""
    import torch
    if preference == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if preference == "cuda":
        log.warning("tokenizer asked for cuda but no GPU is visible: running on CPU")
    return torch.device("cpu")


def exact_dtype(codes: np.ndarray, value_range: int):
    """The float dtype in which every distance partial sum over these codes is an exact integer."""
    import torch
    dim = codes.shape[1]
    bound = dim * (2 * value_range) ** 2
    return torch.float32 if bound < 2**24 else torch.float64


class NearestCode:
    """Index of the nearest code (squared Euclidean, first index on ties) for integer vectors."""

    def __init__(self, codes: np.ndarray, value_range: int, device: str = "auto") -> None:
        import torch
        self.device = pick_device(device)
        # float64 on GPUs: exact even where TF32 matmul precision has been switched on globally
        self.dtype = torch.float64 if self.device.type == "cuda" else exact_dtype(codes, value_range)
        self.codes = torch.as_tensor(codes.astype(np.int64)).to(self.device, self.dtype)
        self.norms = (self.codes * self.codes).sum(dim=1)

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        """int64 code index per row of `vectors` [N, D]."""
        import torch
        out = np.empty(len(vectors), np.int64)
        with torch.inference_mode():
            for start in range(0, len(vectors), _CHUNK_ROWS):
                chunk = torch.as_tensor(vectors[start:start + _CHUNK_ROWS]).to(self.device).to(self.dtype)
                dist = self.norms[None, :] - 2.0 * (chunk @ self.codes.T)
                out[start:start + len(chunk)] = torch.argmin(dist, dim=1).cpu().numpy()
        return out
