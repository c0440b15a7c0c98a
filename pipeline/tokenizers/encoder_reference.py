"""Reference neural encoders with random weights, for tests and benchmarks (nothing is downloaded).

Each is shaped like a real tokenizer's encoder and can be saved as TorchScript and as a
torch.export program: `vqgan` (LlamaGen/VQGAN: 16x downsampling, residual blocks, attention
at the lowest level, a 16384 x 8 codebook: 26.0 M parameters and 136.5 GFLOP per 256x256
image at full size, by torch FlopCounterMode),
`audio_rvq` (EnCodec-like 1-D conv with residual VQ at 24 kHz, 320 samples a frame) and
`causal_video` (causal 3-D conv, 4x in time, 8x in space). Weights come from an explicit
seed, so two builds give the same model. `contract(...)` gives each one's JSON sidecar.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, ch // 4) or 1, ch)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class Attention(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm, self.qkv, self.out = _norm(ch), nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        att = torch.softmax(q.transpose(1, 2) @ k / (c ** 0.5), dim=-1)    # [b, hw, hw]
        return x + self.out((v @ att.transpose(1, 2)).reshape(b, c, h, w))


def nearest(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code for each row of z [N, D] (squared Euclidean)."""
    dist = (z * z).sum(1, keepdim=True) - 2 * z @ codebook.T + (codebook * codebook).sum(1)[None]
    return dist.argmin(dim=1)


class VQGANEncoder(nn.Module):
    """[B, 3, H, W] in [-1, 1] -> codes [B, H/2^(L-1), W/2^(L-1)]."""

    def __init__(self, ch: int = 128, mult: tuple[int, ...] = (1, 1, 2, 2, 4), blocks: int = 2,
                 codes: int = 16384, dim: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ch, 3, padding=1)]
        cin = ch
        for level, m in enumerate(mult):
            for _ in range(blocks):
                layers.append(ResBlock(cin, ch * m))
                cin = ch * m
            if level < len(mult) - 1:
                layers.append(nn.Conv2d(cin, cin, 3, stride=2, padding=1))
        layers += [ResBlock(cin, cin), Attention(cin), ResBlock(cin, cin), _norm(cin), nn.SiLU(),
                   nn.Conv2d(cin, dim, 1)]
        self.body = nn.Sequential(*layers)
        self.register_buffer("codebook", F.normalize(torch.randn(codes, dim), dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body(x)
        b, d, h, w = z.shape
        flat = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, d), dim=1)
        return nearest(flat, self.codebook).reshape(b, h, w)


class AudioRVQEncoder(nn.Module):
    """[B, 1, T] in [-1, 1] at 24 kHz -> codes [B, n_q, T/320] (residual VQ, EnCodec-like)."""

    def __init__(self, ch: int = 32, strides: tuple[int, ...] = (2, 4, 5, 8), dim: int = 128,
                 n_q: int = 8, codes: int = 1024) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(1, ch, 7, padding=3)]
        cin = ch
        for s in strides:
            layers += [nn.ELU(), nn.Conv1d(cin, cin * 2, 2 * s, stride=s, padding=s // 2 + s % 2)]
            cin *= 2
        layers += [nn.ELU(), nn.Conv1d(cin, dim, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.n_q = n_q
        self.register_buffer("codebooks", torch.randn(n_q, codes, dim) * 0.5 ** torch.arange(n_q)[:, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body(x)[..., : x.shape[2] // 320]
        b, d, t = z.shape
        residual = z.permute(0, 2, 1).reshape(-1, d)
        out = []
        for q in range(self.n_q):
            idx = nearest(residual, self.codebooks[q])
            residual = residual - self.codebooks[q][idx]
            out.append(idx.reshape(b, t))
        return torch.stack(out, dim=1)


class CausalConv3d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (1, 1, 1, 1, 2, 0)))  # past frames only: no frame sees its future


class CausalVideoEncoder(nn.Module):
    """[B, 3, T, H, W] in [-1, 1] -> codes [B, T/4, H/8, W/8] (causal 3-D conv)."""

    def __init__(self, ch: int = 32, codes: int = 4096, dim: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            CausalConv3d(3, ch), nn.SiLU(), CausalConv3d(ch, ch * 2, (2, 2, 2)), nn.SiLU(),
            CausalConv3d(ch * 2, ch * 4, (2, 2, 2)), nn.SiLU(), CausalConv3d(ch * 4, ch * 4, (1, 2, 2)), nn.SiLU(),
            nn.Conv3d(ch * 4, dim, 1))
        self.register_buffer("codebook", torch.randn(codes, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body(x)
        b, d, t, h, w = z.shape
        return nearest(z.permute(0, 2, 3, 4, 1).reshape(-1, d), self.codebook).reshape(b, t, h, w)


FULL_VQGAN = {"ch": 128, "mult": (1, 1, 2, 2, 4), "blocks": 2, "codes": 16384, "dim": 8}
SMALL_VQGAN = {"ch": 8, "mult": (1, 1, 2, 2, 4), "blocks": 1, "codes": 1024, "dim": 8}


def vqgan(seed: int = 0, **config: Any) -> VQGANEncoder:
    """A VQGAN-style encoder with seeded random weights (full size unless config says otherwise)."""
    torch.manual_seed(seed)
    return VQGANEncoder(**{**FULL_VQGAN, **config}).eval()


def audio_rvq(seed: int = 0, **config: Any) -> AudioRVQEncoder:
    torch.manual_seed(seed)
    return AudioRVQEncoder(**config).eval()


def causal_video(seed: int = 0, **config: Any) -> CausalVideoEncoder:
    torch.manual_seed(seed)
    return CausalVideoEncoder(**config).eval()


def small_vqgan() -> VQGANEncoder:
    """The test-sized VQGAN (8 channels): a factory for `torch-factory` examples."""
    return vqgan(**SMALL_VQGAN)


def contract(model: nn.Module, size: int = 256) -> dict[str, Any]:
    """The sidecar (pipeline.tokenizers.encoder.Contract) that describes a reference model."""
    if isinstance(model, VQGANEncoder):
        return {"input": {"kind": "image", "size_policy": "center-crop", "size": size, "multiple": 16,
                          "value_range": [0.0, 1.0], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
                "output": {"dims": ["h", "w"], "vocab_per_codebook": int(model.codebook.shape[0])}}
    if isinstance(model, AudioRVQEncoder):
        return {"input": {"kind": "audio", "sample_rate": 24000, "clip_seconds": 1.0, "multiple": 320},
                "output": {"dims": ["q", "t"], "codebooks": model.n_q,
                           "vocab_per_codebook": int(model.codebooks.shape[1]), "flatten": "time-major",
                           "offsets": True}}
    return {"input": {"kind": "video", "size_policy": "center-crop", "size": size, "multiple": 8, "fps": 8,
                      "frames_per_clip": 8, "value_range": [-1.0, 1.0]},
            "output": {"dims": ["t", "h", "w"], "vocab_per_codebook": int(model.codebook.shape[0])}}


def example_input(model: nn.Module, batch: int = 2, size: int = 64) -> torch.Tensor:
    """An input of the shape the model takes (for torch.export's example)."""
    if isinstance(model, VQGANEncoder):
        return torch.rand(batch, 3, size, size) * 2 - 1
    if isinstance(model, AudioRVQEncoder):
        return torch.rand(batch, 1, 24000) * 2 - 1
    return torch.rand(batch, 3, 8, size, size) * 2 - 1


def export(model: nn.Module, path: str, size: int = 64) -> str:
    """Save as a torch.export program with a dynamic batch dimension."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (example_input(model, 2, size),), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
    return path


def script(model: nn.Module, path: str) -> str:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), path)
    return path
