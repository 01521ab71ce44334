#!/usr/bin/env bash
# The CUDA paths on a machine with one GPU, in < 10 minutes: NCCL collectives on the group's device, bf16 autocast
# with the complex physics, Ray Train + DeepSpeed on the GPU (bf16, NaN-gradient guard), the mamba-ssm kernel
# against the torch reference, gpu4pyscf against the CPU engine. Prints PASS / FAIL / SKIP (with the reason) per
# item; exit status 0 only if nothing failed.
#   bash infra/gpu_smoke.sh            # from the repository root, in the environment of `make setup` (+ the gpu extra)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
OUT=${OUT:-$(mktemp -d)}
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
"$PY" - <<'PYEOF'
import importlib.util, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPUs: "
      f"{[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or 'none'}")
for m in ("mamba_ssm", "gpu4pyscf", "cupy", "deepspeed"):
    print(f"  {m}: {'installed' if importlib.util.find_spec(m) else 'missing'}")
PYEOF
timeout 570 "$PY" -m pytest -p no:cacheprovider -o addopts="" -q tests/gpu tests/test_engine_gpu.py \
  "tests/test_models_mamba.py::test_cuda_backend_matches_torch_backend" --junitxml="$OUT/gpu.xml" >"$OUT/pytest.log" 2>&1
code=$?
"$PY" - "$OUT/gpu.xml" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
failed = 0
for case in ET.parse(sys.argv[1]).iter("testcase"):
    name = f"{case.get('classname').rsplit('.', 1)[-1]}::{case.get('name')}"
    bad = case.find("failure") if case.find("failure") is not None else case.find("error")
    skip = case.find("skipped")
    if bad is not None:
        failed += 1
        print(f"FAIL  {name}: {(bad.get('message') or '')[:200]}")
    elif skip is not None:
        print(f"SKIP  {name}: {(skip.get('message') or '')[:160]}")
    else:
        print(f"PASS  {name}")
sys.exit(1 if failed else 0)
PYEOF
status=$?
echo "pytest log: $OUT/pytest.log"
[ $code -eq 124 ] && echo "TIMEOUT after 570 s" && exit 1
exit $status
