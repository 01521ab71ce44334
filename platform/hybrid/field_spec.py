"""Field specifications on the command line and in notebooks: ``kick:AMPLITUDE[:x|y|z]`` or a JSON FieldSpec."""

from __future__ import annotations

import json

from rtml.datasets.errors import DataError
from rtml.datasets.fields import FieldSpec, kick

AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def parse_field(spec: str) -> FieldSpec:
    """``kick:AMPLITUDE[:x|y|z]`` (delta kick, a.u.) or a JSON FieldSpec (``{"kind": "gaussian", ...}``)."""
    if spec.startswith("{"):
        try:
            return FieldSpec.from_dict(json.loads(spec))
        except (ValueError, TypeError) as exc:
            raise DataError("<command line>", "--field", "a JSON FieldSpec (kind, amplitude, omega, sigma, t0, "
                            "phase, polarization)", f"{spec!r} ({exc})") from None
    parts = spec.split(":")
    if parts[0] != "kick" or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in AXES):
        raise DataError("<command line>", "--field", "kick:AMPLITUDE[:x|y|z] or a JSON FieldSpec", repr(spec))
    try:
        amp = float(parts[1])
    except ValueError:
        raise DataError("<command line>", "--field", "a number for the kick amplitude (a.u.)", repr(parts[1])) from None
    return kick(amp, AXES[parts[2] if len(parts) == 3 else "z"])
