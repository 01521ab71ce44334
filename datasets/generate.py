"""Dataset generation: one Ray task per trajectory, written to a Zarr store by the driver, resumable.

Trajectory ids are ``<molecule>-g<geometry>-<family><k>`` and everything about a trajectory (geometry, field) is
drawn from (seed, molecule, geometry index, field family, k), so a restarted run regenerates exactly the missing
ones. The driver is the store's only writer and commits a trajectory's index entry after its arrays: a killed run
leaves no half-written trajectory visible.

Nothing finished is lost and nothing is silently reused:

* every index entry records the parameters it was generated with (:func:`generation_params`); a resume into a store
  whose trajectories were made with other parameters (seed, basis, functional, dt, steps, integrator, geometry
  sampling) is refused, naming both, before any work starts;
* a Ray task whose worker or node dies (OOM, node loss) is re-run up to ``retries`` times; a task that still fails,
  or raises (a propagation blow-up, an SCF that does not converge — named by molecule and geometry), is reported
  in ``failed`` while every other trajectory is written;
* a trajectory the store refuses (it fails validation: reported) or cannot take (another writer took the lease of an
  object store) is not dropped: it is written to ``<out>.unwritten/<id>.h5`` (``rtml convert --hdf5`` appends it
  later) and listed in ``unwritten``.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from rtml.datasets.engine.gpu_system import EngineDeviceError, cuda_status
from rtml.datasets.engine.propagator import Integrator, IntegratorConfig
from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.errors import DataError, PropagationError, SCFConvergenceError
from rtml.datasets.fields import FIELD_FAMILIES, RESONANT_FAMILIES, sample_field
from rtml.datasets.formats.hdf5 import write_hdf5
from rtml.datasets.molecules import GeometrySampling, get_molecule, sample_geometry
from rtml.datasets.resonance import first_bright
from rtml.datasets.store.zarr_store import StoreBusyError, TrajectoryStore


@dataclass(kw_only=True)
class GenerateConfig:
    """Which trajectories to generate and how (``rtml generate`` derives its flags from these fields)."""

    out: str  # Zarr store path (created or appended to)
    molecules: list[str] = field(default_factory=lambda: ["h2", "lih"])  # catalog names or .xyz paths
    fields: list[str] = field(default_factory=lambda: ["kick", "pulse"])  # field families: kick, pulse, strong (pulse beyond linear response), sine; tiers weak, moderate, resonant; mixed (all tiers, for training)
    n_geometries: int = 2  # geometries per molecule, >= 1 (geometry 0 is the catalog geometry; 1 = only that one)
    first_geometry: int = 0  # index of the first geometry (>= 1 leaves out the catalog geometry: held-out sets)
    n_fields: int = 1  # random fields per family and geometry
    steps: int = EngineConfig.n_steps  # recorded states per trajectory (incl. t = 0)
    dt: float = IntegratorConfig.dt  # time step, a.u.
    basis: str = SystemConfig.basis  # Gaussian basis set (PySCF name)
    xc: str = SystemConfig.xc  # PySCF functional string, or HF
    integrator: Integrator = IntegratorConfig.integrator  # reference propagator
    seed: int = 0  # every geometry and field is drawn from (seed, molecule, geometry, family, k)
    precision: Literal["float32", "float64"] = "float32"  # density storage
    sampling: GeometrySampling = field(default_factory=GeometrySampling)
    device: Literal["cpu", "cuda"] = "cpu"  # engine device: 'cuda' = Fock builds in gpu4pyscf, one GPU per Ray task
    executor: Literal["ray", "serial"] = "ray"  # one Ray task per trajectory, or in this process
    retries: int = 2  # Ray re-runs a task whose worker or node died (OOM, node loss) this many times
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


def generation_params(cfg: GenerateConfig) -> dict:
    """What a trajectory's content depends on besides its id (recorded in its index entry, checked on resume)."""
    return {"seed": cfg.seed, "basis": cfg.basis.lower(), "xc": cfg.xc.upper(), "dt": float(cfg.dt),
            "steps": cfg.steps, "integrator": cfg.integrator, "sampling": asdict(cfg.sampling)}


def _recorded_params(entry: dict) -> dict:
    """The generation parameters of an index entry (entries written before they were recorded: what the entry
    itself says — seed, basis, functional, dt, steps)."""
    if "generation" in entry:
        return entry["generation"]
    old = {"basis": str(entry.get("basis", "")).lower(), "xc": str(entry.get("functional", "")).upper(),
           "dt": float(entry["dt"]), "steps": entry.get("n_steps")}
    if "seed" in entry:
        old["seed"] = entry["seed"]
    return old


def check_resume(cfg: GenerateConfig, store: TrajectoryStore, tasks: list[Task]) -> None:
    """Refuse to resume into ``store`` when a planned trajectory is already there with other parameters."""
    want = generation_params(cfg)
    for t in tasks:
        if t.traj_id not in store:
            continue
        have = _recorded_params(store.entry(t.traj_id))
        diff = {k: (have[k], want[k]) for k in have if k in want and have[k] != want[k]}
        if diff:
            raise DataError(f"{cfg.out}/trajectories/{t.traj_id}", "generation parameters",
                            "the parameters this run would use, to resume (another store, or the same parameters): "
                            + ", ".join(f"{k}={w!r}" for k, (_, w) in diff.items()),
                            "a trajectory made with " + ", ".join(f"{k}={h!r}" for k, (h, _) in diff.items()))


def run_task(task: Task, cfg: GenerateConfig):
    mol = sample_geometry(get_molecule(task.molecule), task.geometry, cfg.seed, cfg.sampling)
    rng = np.random.default_rng([cfg.seed, zlib.crc32(mol.name.encode()), task.geometry,
                                 zlib.crc32(task.family.encode()), task.k])
    ecfg = EngineConfig(system=SystemConfig(basis=cfg.basis, xc=cfg.xc, device=cfg.device),
                        integrator=IntegratorConfig(integrator=cfg.integrator, dt=cfg.dt), n_steps=cfg.steps)
    try:
        resonance = first_bright(mol, cfg.basis, cfg.xc) if task.family in RESONANT_FAMILIES else None
        spec = sample_field(task.family, rng, resonance=resonance)
        return propagate(mol, spec, ecfg, meta={"geometry_index": task.geometry, "seed": cfg.seed,
                                                "trajectory_id": task.traj_id})
    except SCFConvergenceError as exc:
        raise SCFConvergenceError(f"trajectory {task.traj_id}: molecule {task.molecule}, geometry {task.geometry} "
                                  f"(seed {cfg.seed}): {exc} — try another geometry seed or a smaller "
                                  "sampling.stretch") from None


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
        check_resume(cfg, store, tasks)
        return _generate(cfg, store, tasks)


def _start_ray(cfg: GenerateConfig) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=cfg.address, num_cpus=None if cfg.address else cfg.num_cpus, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)


def _check_cuda(cfg: GenerateConfig) -> None:
    """Serial: this process needs gpu4pyscf and a GPU; Ray: the cluster needs GPUs (each task asks for one)."""

    if cfg.executor == "serial":
        ok, why = cuda_status()
        if not ok:
            raise EngineDeviceError("<command line>", "--device", "cpu, or cuda with gpu4pyscf and a GPU", why)
        return
    import ray

    if not ray.cluster_resources().get("GPU", 0):
        raise EngineDeviceError("<command line>", "--device", "cpu, or cuda on a Ray cluster with GPUs",
                                f"cuda on a cluster with resources {ray.cluster_resources()}")


def spill_dir(out: str) -> Path:
    """Where trajectories the store could not take are kept: ``<out>.unwritten`` beside a local store, else in the
    working directory."""
    return Path(f"{out.rstrip('/')}.unwritten") if "://" not in out else Path(f"{Path(out.rstrip('/')).name}.unwritten")


def _generate(cfg: GenerateConfig, store: TrajectoryStore, tasks: list[Task]) -> dict:
    done = set(store.ids())
    todo = [t for t in tasks if t.traj_id not in done]
    failures: dict[str, str] = {}
    unwritten: list[str] = []
    lost_lease: list[str] = []  # set once the store refused us as its writer: later trajectories go to the spill
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="trajectories", disable=not cfg.progress,
               unit="traj")

    def commit(task, traj):
        try:
            if lost_lease:
                raise StoreBusyError(cfg.out, "writer", "this run as the store's writer", lost_lease[0])
            store.append(traj, task.traj_id, geometry=task.geometry, field_family=task.family, seed=cfg.seed,
                         generation=generation_params(cfg))
        except DataError as exc:  # refused (validation) or not ours any more (lease): keep the trajectory
            if isinstance(exc, StoreBusyError) and not lost_lease:
                lost_lease.append(str(exc))
            if not isinstance(exc, StoreBusyError):
                failures[task.traj_id] = str(exc)
            spill = spill_dir(cfg.out)
            spill.mkdir(parents=True, exist_ok=True)
            write_hdf5(traj, spill / f"{task.traj_id}.h5")
            unwritten.append(task.traj_id)
        bar.update(1)

    if cfg.executor == "serial":
        for t in todo:
            try:
                traj = run_task(t, cfg)
            except PropagationError as exc:  # incl. SCFConvergenceError
                failures[t.traj_id] = str(exc)
                continue
            commit(t, traj)
    else:
        import ray

        remote = ray.remote(num_cpus=1, num_gpus=1 if cfg.device == "cuda" else 0,
                            max_retries=cfg.retries)(run_task)
        pending = {remote.remote(t, cfg): t for t in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready[0])
            try:
                traj = ray.get(ready[0])
            except (PropagationError, ray.exceptions.RayError) as exc:  # raised in the task, or its worker/node died
                failures[task.traj_id] = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                continue
            commit(task, traj)
    bar.close()
    report = {"store": cfg.out, "planned": len(tasks), "already_present": len(tasks) - len(todo),
              "generated": len(todo) - len(failures) - len(set(unwritten) - set(failures)), "failed": failures}
    if unwritten:
        report["unwritten"] = {"dir": str(spill_dir(cfg.out)), "ids": unwritten, "store_lost": lost_lease[:1],
                               "append_later": f"rtml convert --out {cfg.out} --hdf5 {spill_dir(cfg.out)}/*.h5"}
    return report
