"""Dataset generation: one Ray task per trajectory, written to a Zarr store by the driver, resumable.

Trajectory ids are ``<molecule>-g<geometry>-<family><k>`` and everything about a trajectory (geometry, field) is
drawn from (seed, molecule, geometry index, field family, k), so a restarted run regenerates exactly the missing
ones. The driver is the store's only writer and commits a trajectory's index entry after its arrays: a killed run
leaves no half-written trajectory visible.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from rtml.datasets.engine.propagator import IntegratorConfig
from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.errors import DataError, PropagationError
from rtml.datasets.fields import FIELD_FAMILIES, RESONANT_FAMILIES, sample_field
from rtml.datasets.molecules import GeometrySampling, get_molecule, sample_geometry
from rtml.datasets.resonance import first_bright
from rtml.datasets.store.zarr_store import TrajectoryStore


@dataclass(kw_only=True)
class GenerateConfig:
    """Which trajectories to generate and how (``rtml generate`` derives its flags from these fields)."""

    out: str  # Zarr store path (created or appended to)
    molecules: list[str] = field(default_factory=lambda: ["h2", "lih"])  # catalog names or .xyz paths
    fields: list[str] = field(default_factory=lambda: ["kick", "pulse"])  # field families: kick, pulse, strong (pulse beyond linear response), sine; tiers weak, moderate, resonant; mixed (all tiers, for training)
    n_geometries: int = 2  # geometries per molecule, >= 1 (geometry 0 is the catalog geometry; 1 = only that one)
    first_geometry: int = 0  # index of the first geometry (>= 1 leaves out the catalog geometry: held-out sets)
    n_fields: int = 1  # random fields per family and geometry
    steps: int = 200  # recorded states per trajectory (incl. t = 0)
    dt: float = 0.2  # time step, a.u.
    basis: str = "6-31g"  # Gaussian basis set (PySCF name)
    xc: str = "LDA,VWN"  # PySCF functional string, or HF
    integrator: Literal["magnus2", "mmut"] = "magnus2"  # reference propagator
    seed: int = 0  # every geometry and field is drawn from (seed, molecule, geometry, family, k)
    precision: Literal["float32", "float64"] = "float32"  # density storage
    sampling: GeometrySampling = field(default_factory=GeometrySampling)
    device: Literal["cpu", "cuda"] = "cpu"  # engine device: 'cuda' = Fock builds in gpu4pyscf, one GPU per Ray task
    executor: Literal["ray", "serial"] = "ray"  # one Ray task per trajectory, or in this process
    address: str | None = None  # Ray cluster address (None: start a local Ray with num_cpus)
    num_cpus: int | None = None  # CPUs of a local Ray (None: all)
    progress: bool = True  # progress bar


@dataclass(kw_only=True)
class Task:
    traj_id: str
    molecule: str
    geometry: int
    family: str
    k: int


def plan(cfg: GenerateConfig) -> list[Task]:
    for name, lo, what in (("n_geometries", 1, "geometry 0 is the catalog geometry, 1 = only that one"),
                           ("n_fields", 1, "fields per family and geometry"), ("steps", 2, "recorded states"),
                           ("first_geometry", 0, "0 is the catalog geometry")):
        if getattr(cfg, name) < lo:
            raise DataError("<command line>", f"--{name.replace('_', '-')}", f"an integer >= {lo} ({what})",
                            str(getattr(cfg, name)))
    if not cfg.molecules or not cfg.fields:
        raise DataError("<command line>", "--molecules/--fields", "at least one molecule and one field family",
                        f"molecules={cfg.molecules}, fields={cfg.fields}")
    for fam in cfg.fields:
        if fam not in FIELD_FAMILIES:
            raise DataError("<command line>", "fields", f"families from {FIELD_FAMILIES}", repr(fam))
    tasks = []
    for name in cfg.molecules:
        mol = get_molecule(name)
        for g in range(cfg.first_geometry, cfg.first_geometry + cfg.n_geometries):
            for fam in cfg.fields:
                for k in range(cfg.n_fields):
                    tasks.append(Task(traj_id=f"{mol.name}-g{g:03d}-{fam}{k}", molecule=name, geometry=g,
                                      family=fam, k=k))
    return tasks


def run_task(task: Task, cfg: GenerateConfig):
    mol = sample_geometry(get_molecule(task.molecule), task.geometry, cfg.seed, cfg.sampling)
    rng = np.random.default_rng([cfg.seed, zlib.crc32(mol.name.encode()), task.geometry,
                                 zlib.crc32(task.family.encode()), task.k])
    resonance = first_bright(mol, cfg.basis, cfg.xc) if task.family in RESONANT_FAMILIES else None
    spec = sample_field(task.family, rng, resonance=resonance)
    ecfg = EngineConfig(system=SystemConfig(basis=cfg.basis, xc=cfg.xc, device=cfg.device),
                        integrator=IntegratorConfig(integrator=cfg.integrator, dt=cfg.dt), n_steps=cfg.steps)
    return propagate(mol, spec, ecfg, meta={"geometry_index": task.geometry, "seed": cfg.seed,
                                            "trajectory_id": task.traj_id})


def generate(cfg: GenerateConfig) -> dict:
    """Generate the missing trajectories of ``cfg`` into ``cfg.out``; returns counts and failures."""
    tasks = plan(cfg)
    if cfg.executor not in ("ray", "serial"):
        raise DataError("<command line>", "executor", "'ray' or 'serial'", repr(cfg.executor))
    if cfg.executor == "ray":
        _start_ray(cfg)
    if cfg.device == "cuda":  # fail before the store is touched, not in every task: no silent CPU fallback
        _check_cuda(cfg)
    with TrajectoryStore(cfg.out, mode="a", precision=cfg.precision) as store:  # one writer: this driver
        return _generate(cfg, store, tasks)


def _start_ray(cfg: GenerateConfig) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=cfg.address, num_cpus=None if cfg.address else cfg.num_cpus, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)


def _check_cuda(cfg: GenerateConfig) -> None:
    """Serial: this process needs gpu4pyscf and a GPU; Ray: the cluster needs GPUs (each task asks for one)."""
    from rtml.datasets.engine.gpu_system import EngineDeviceError, cuda_status

    if cfg.executor == "serial":
        ok, why = cuda_status()
        if not ok:
            raise EngineDeviceError("<command line>", "--device", "cpu, or cuda with gpu4pyscf and a GPU", why)
        return
    import ray

    if not ray.cluster_resources().get("GPU", 0):
        raise EngineDeviceError("<command line>", "--device", "cpu, or cuda on a Ray cluster with GPUs",
                                f"cuda on a cluster with resources {ray.cluster_resources()}")


def _generate(cfg: GenerateConfig, store: TrajectoryStore, tasks: list[Task]) -> dict:
    done = set(store.ids())
    todo = [t for t in tasks if t.traj_id not in done]
    failures: dict[str, str] = {}
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="trajectories", disable=not cfg.progress,
               unit="traj")

    def commit(task, traj):
        store.append(traj, task.traj_id, geometry=task.geometry, field_family=task.family, seed=cfg.seed)
        bar.update(1)

    if cfg.executor == "serial":
        for t in todo:
            try:
                commit(t, run_task(t, cfg))
            except PropagationError as exc:
                failures[t.traj_id] = str(exc)
    else:
        import ray

        remote = ray.remote(num_cpus=1, num_gpus=1 if cfg.device == "cuda" else 0, max_retries=1)(run_task)
        pending = {remote.remote(t, cfg): t for t in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready[0])
            try:
                commit(task, ray.get(ready[0]))
            except (PropagationError, ray.exceptions.RayTaskError) as exc:
                failures[task.traj_id] = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
    bar.close()
    return {"store": cfg.out, "planned": len(tasks), "already_present": len(tasks) - len(todo),
            "generated": len(todo) - len(failures), "failed": failures}
