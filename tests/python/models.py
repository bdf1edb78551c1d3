"""Small models for the block-swap tests."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 2 * d)
        self.fc2 = nn.Linear(2 * d, d)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(self.norm(x)))) * self.scale


class Embedder(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class TinyModel(nn.Module):
    """Blocks in `blocks`, a text embedder, optional VACE blocks."""

    def __init__(self, d: int = 64, n: int = 6, dtype: torch.dtype = torch.float32,
                 vace: int = 0, attr: str = "blocks") -> None:
        super().__init__()
        self.attr = attr
        self.inp = nn.Linear(d, d)
        self.text_embedding = Embedder(d)
        setattr(self, attr, nn.ModuleList(Block(d) for _ in range(n)))
        if vace:
            self.vace_blocks = nn.ModuleList(Block(d) for _ in range(vace))
        self.out = nn.Linear(d, d)
        self.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x) + self.text_embedding(x)
        for b in getattr(self, "vace_blocks", []):
            x = b(x)
        for b in getattr(self, self.attr):
            x = b(x)
        return self.out(x)


def tiny(seed: int = 0, **kw: object) -> TinyModel:
    torch.manual_seed(seed)
    return TinyModel(**kw).eval()  # type: ignore[arg-type]
