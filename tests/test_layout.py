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


# data -> models -> sweep spaces -> training runtime (platform) -> meta-learning -> command line
LAYERS = (("rtml.datasets",), ("rtml.models",), ("rtml.tune_spaces",), ("rtml.platform",), ("rtml.meta",),
          ("rtml.platform.commands", "rtml.platform.cli"))


def _layer(module: str) -> int | None:
    """The layer of the longest matching package prefix (``rtml.platform.commands`` beats ``rtml.platform``)."""
    hits = [(len(p), i) for i, prefixes in enumerate(LAYERS) for p in prefixes
            if module == p or module.startswith(p + ".")]
    return max(hits)[1] if hits else None


def test_no_layer_imports_a_higher_one():
    """Static imports (module level or inside functions) go one way; a dynamic import of a sweep space by name
    (``importlib``) is the tuner reading a file, not a dependency."""
    import ast

    mapped = CONF["tool"]["setuptools"]["package-dir"]
    bad = []
    for pkg, folder in mapped.items():
        for f in (ROOT / folder).rglob("*.py"):
            mod = ".".join([pkg, *f.relative_to(ROOT / folder).with_suffix("").parts])
            here = _layer(mod)
            for node in ast.walk(ast.parse(f.read_text())):
                names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                    [a.name for a in node.names] if isinstance(node, ast.Import) else []
                for n in names:
                    there = _layer(n) if n.startswith("rtml.") else None
                    if there is not None and here is not None and there > here:
                        bad.append(f"{f.relative_to(ROOT)} imports {n} (layer {LAYERS[there][0]} above "
                                   f"{LAYERS[here][0]})")
    assert not bad, "\n".join(bad)
    assert _layer("rtml.platform.commands.train") == 5 and _layer("rtml.platform.train.worker") == 3
    assert _layer("rtml.meta.worker") == 4 and _layer("rtml.datasets.store.zarr_store") == 0
