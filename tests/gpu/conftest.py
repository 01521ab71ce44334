"""The GPU suite (``infra/gpu_smoke.sh`` runs it on a machine with one GPU; every test skips without CUDA)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
