"""Radius graphs with plain torch, for the geometry encoder (PyG's ``radius_graph`` needs the compiled torch-cluster
or pyg-lib extensions; see docs/training_platform.md on torch-geometric)."""

from __future__ import annotations

import torch


def radius_graph(pos: torch.Tensor, cutoff: float, batch: torch.Tensor | None = None,
                 loop: bool = False) -> torch.Tensor:
    """Directed edges (source, target) between atoms closer than ``cutoff`` (same unit as pos) in the same molecule.

    pos [n, 3]; batch [n] int64 molecule index (default: one molecule). Returns edge_index [2, E] int64, sorted by
    target then source (deterministic). Memory is O(n^2): fine for molecules, not for crystals."""
    n = pos.shape[0]
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=pos.device)
    dist = torch.cdist(pos, pos)  # [n, n]
    adj = (dist < cutoff) & (batch[:, None] == batch[None, :])
    if not loop:
        adj.fill_diagonal_(False)
    tgt, src = adj.nonzero(as_tuple=True)
    return torch.stack([src, tgt])  # [2, E]
