"""Hybrid RT-TDDFT: a surrogate ensemble propagates, the reference engine re-anchors it (``rtml propagate``)."""
