"""Sharded Zarr v3 trajectory stores: many molecules (different nbf) in one store, with an index."""
