"""Errors raised by the data layer.

Every message names where the data came from (a file, a store path or ``<memory>``), the field that is wrong and what
was expected, so a user can fix the input without reading a traceback from inside numpy or zarr.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad trajectory data: ``DataError(source, field, expected, got)``."""

    def __init__(self, source: str, field: str, expected: str, got: str | None = None):
        self.source, self.field, self.expected, self.got = str(source), field, expected, got
        msg = f"{source}: field '{field}': expected {expected}"
        if got is not None:
            msg += f", got {got}"
        super().__init__(msg)

    def __reduce__(self):  # picklable, so it crosses Ray process boundaries intact
        return (DataError, (self.source, self.field, self.expected, self.got))


class PropagationError(RuntimeError):
    """The reference propagator detected a blow-up (energy or trace drift) and stopped instead of writing garbage."""


class SCFConvergenceError(PropagationError):
    """The ground-state SCF of a geometry did not converge (names the molecule, geometry, basis and functional)."""
