"""Guards of the package layout: mapped top-level folders are namespace-only; sub-packages are all listed."""

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_mapped_folders_have_no_init():
    mapped = CONF["tool"]["setuptools"]["package-dir"]
    assert {"rtml.platform", "rtml.datasets", "rtml.models", "rtml.meta", "rtml.tune_spaces"} <= set(mapped)
    for folder in mapped.values():
        assert (ROOT / folder).is_dir(), folder
        assert not (ROOT / folder / "__init__.py").exists(), f"{folder}/__init__.py would shadow a top-level module"


def test_every_subpackage_is_listed_and_exists():
    listed = set(CONF["tool"]["setuptools"]["packages"])
    mapped = CONF["tool"]["setuptools"]["package-dir"]
    found = set(mapped)
    for pkg, folder in mapped.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([pkg, *rel.parts]))
    assert found == listed, f"not listed: {found - listed}; listed but missing: {listed - found}"


def test_stdlib_and_rtml_modules_resolve():
    import platform

    assert hasattr(platform, "system"), "the stdlib platform module is shadowed"
    for mod in ("rtml.platform.cli", "rtml.datasets.trajectory", "rtml.datasets.store.zarr_store"):
        importlib.import_module(mod)


def test_torch_is_the_pinned_cpu_build():
    import torch

    assert torch.__version__.startswith("2.13.0")
    assert '"torch==2.13.0"' in (ROOT / "pyproject.toml").read_text()
