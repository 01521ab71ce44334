"""Importers and exporters: the design guide's HDF5 schema and NWChem rt_tddft outputs."""
