"""Sweeps: the cartesian product of seeds x grid values, one whole run per unit of work, in parallel worker
processes (``backend="local"``: ProcessPoolExecutor, spawn, one torch thread and one physics thread per
worker) or as Ray tasks (``backend="ray"``: ``ray.init(address)`` joins a cluster, or starts a local one).

All runs land in one folder (``<out>/<run name>/``) with ``sweep.yaml`` (the plan), and at the end
``summary.md`` and ``curves.png`` from :func:`lnn_control.runs.compare.compare_runs`. Re-running the same
sweep into the same folder skips finished runs and resumes interrupted ones. On a multi-node Ray cluster,
``out`` must be a path every node can write (a shared filesystem), and lnn-control must be installed on the
nodes.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import itertools
import multiprocessing
import os
import re
import shutil
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lnn_control.atomic import atomic_write_text
from lnn_control.checks import positive_int
from lnn_control.extras import require
from lnn_control.runs.compare import Comparison, compare_runs
from lnn_control.runs.config import RunSpec, resolve
from lnn_control.runs.errors import RunError
from lnn_control.runs.layout import RunDir
from lnn_control.runs.signals import GracefulStop, exit_code

__all__ = [
    "BACKENDS",
    "SweepPlan",
    "SweepResult",
    "SweepRun",
    "plan_sweep",
    "run_one",
    "run_sweep",
    "run_sweeps",
]

BACKENDS = ("local", "ray")
_POLL_S = 0.5


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its folder name under the sweep's output and its spec."""

    name: str
    spec: RunSpec


def _short(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "_"


def plan_sweep(base: RunSpec, seeds: Sequence[int], grid: dict[str, list[Any]]) -> list[SweepRun]:
    """Every combination of grid values (in key order) x every seed, validated against the catalogues.

    Run names are ``<key>=<value>_..._seed<S>`` with the last component of each dotted key.
    """
    if not seeds:
        raise RunError("a sweep needs at least one seed")
    shorts = [k.rsplit(".", 1)[-1] for k in grid]
    names_for_keys = shorts if len(set(shorts)) == len(shorts) else [k.replace(".", "-") for k in grid]
    runs = []
    for values in itertools.product(*grid.values()) if grid else [()]:
        combo = dict(zip(grid, values, strict=True))
        prefix = "_".join(f"{n}={_short(v)}" for n, v in zip(names_for_keys, values, strict=True))
        for seed in seeds:
            spec = base.with_(seed=int(seed), overrides={**base.overrides, **combo})
            name = f"{prefix}_seed{seed}" if prefix else f"seed{seed}"
            runs.append(SweepRun(name, spec))
    for run in runs[:: len(seeds)]:  # one per grid point: every seed resolves the same way
        resolve(run.spec)
    return runs


# ------------------------------------------------------------------------------------------ one worker
_stop_event: Any = None


def _init_worker(event: Any) -> None:
    """Process-pool initializer: one torch thread; remember the parent's stop event. A worker ignores
    SIGINT outside training (Ctrl-C reaches the whole process group; the parent decides via ``event``)."""
    global _stop_event
    _stop_event = event
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(1)


def run_one(spec: dict[str, Any], run_dir: str, event: Any = None) -> dict[str, Any]:
    """Train (or resume, or skip when finished) one sweep run; never raises (errors come back as data)."""
    import torch

    torch.set_num_threads(1)
    from lnn_control.runs import training

    event = event if event is not None else _stop_event
    name = Path(run_dir).name
    started = time.monotonic()
    if event is not None and event.is_set():  # the sweep was stopped while this run waited in the queue
        return {"name": name, "status": "not started"}
    try:
        run = RunDir(Path(run_dir))
        if run.config.is_file() and run.checkpoint("last").is_file():
            if run.read_status().get("status") == "finished":
                return {"name": name, "status": "finished", "skipped": True}
            result = training.resume(run_dir, quiet=True, nthread=1, stop_event=event)
        else:
            if run.root.exists():  # started, but crashed before its first checkpoint
                shutil.rmtree(run.root)
            result = training.train(RunSpec(**spec), run_dir, quiet=True, nthread=1, stop_event=event)
        best = result.best.mean if result.best else None
        last = result.last.mean if result.last else None
        return {
            "name": name,
            "status": result.status,
            "timesteps": result.timesteps,
            "best": best,
            "last": last,
            "seconds": time.monotonic() - started,
            "signal": result.signal,
        }
    except RunError as exc:
        return {"name": name, "status": "failed", "error": str(exc)}
    except Exception:
        return {"name": name, "status": "failed", "error": traceback.format_exc()}


# ------------------------------------------------------------------------------------------ the sweep
@dataclass
class SweepResult:
    """Outcome per run (dicts from :func:`run_one`), the comparison, and the stop signal if any."""

    out: Path
    outcomes: list[dict[str, Any]]
    comparison: Comparison | None
    signal: int | None = None

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [o for o in self.outcomes if o["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        if self.signal is not None:
            return exit_code(self.signal)
        return 1 if self.failed else 0


def _plan_record(base: RunSpec, seeds: Sequence[int], grid: dict[str, list[Any]]) -> dict[str, Any]:
    spec = dataclasses.asdict(base)
    spec.pop("seed")
    return {"base": spec, "seeds": list(seeds), "grid": grid}


def _check_plan(out: Path, record: dict[str, Any]) -> None:
    plan_file = out / "sweep.yaml"
    if plan_file.is_file():
        previous = yaml.safe_load(plan_file.read_text())
        if previous != record:
            raise RunError(
                f"{out} holds another sweep (its sweep.yaml differs); choose another --out or rerun that plan"
            )
    elif out.exists() and any(out.iterdir()):
        raise RunError(f"{out} exists, is not empty and holds no sweep.yaml; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan_file, yaml.safe_dump(record, sort_keys=False))


def _describe(outcome: dict[str, Any]) -> str:
    status = outcome["status"]
    if status == "not started":
        return f"{outcome['name']}: not started"
    if status == "failed":
        return f"{outcome['name']}: FAILED: {outcome['error'].strip().splitlines()[-1]}"
    if outcome.get("skipped"):
        return f"{outcome['name']}: already finished"
    best = "—" if outcome.get("best") is None else f"{outcome['best']:.1f}"
    last = "—" if outcome.get("last") is None else f"{outcome['last']:.1f}"
    return (
        f"{outcome['name']}: {status} at {outcome['timesteps']:,d} steps, final return {last}, best {best} "
        f"({outcome['seconds']:.0f} s)"
    )


@dataclass(frozen=True)
class SweepPlan:
    """One sweep of :func:`run_sweeps`: the runs of ``plan_sweep(base, seeds, grid)`` in folder ``out``."""

    base: RunSpec
    seeds: Sequence[int]
    grid: dict[str, list[Any]]
    out: Path


def run_sweep(
    base: RunSpec,
    seeds: Sequence[int],
    grid: dict[str, list[Any]],
    out: str | Path,
    *,
    workers: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    log: Callable[[str], None] = print,
) -> SweepResult:
    """Run the sweep (see the module docstring) and compare its runs.

    Args:
        base: the spec every run starts from (its seed is replaced by each of ``seeds``).
        seeds: seeds of each grid point.
        grid: dotted agent keys -> values (``--grid``).
        out: the sweep folder.
        workers: runs at a time (default: local, the CPU count; Ray, as many as the cluster schedules).
        backend: "local" or "ray".
        ray_address: Ray cluster address (``ray.init(address=...)``); None starts a local Ray instance with
            ``workers`` CPUs.
        log: where progress lines go.
    """
    plan = SweepPlan(base, list(seeds), grid, Path(out))
    return run_sweeps([plan], workers=workers, backend=backend, ray_address=ray_address, log=log)[0]


def run_sweeps(
    plans: Sequence[SweepPlan],
    *,
    workers: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    log: Callable[[str], None] = print,
    seed_major: bool = False,
) -> list[SweepResult]:
    """Several sweeps (each in its own folder, e.g. one per task and agent) as one pool of runs.

    Arguments as :func:`run_sweep`; ``seed_major`` queues every sweep's first seed before any second seed, so
    that a suite stopped part-way has one seed of every configuration rather than all seeds of a few.
    Each sweep is resumable on its own, as with :func:`run_sweep`.
    """
    if backend not in BACKENDS:
        raise RunError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    positive_int("workers", workers, allow_none=True, error=RunError)
    if backend == "ray":
        require("ray", extra="cluster", feature="the Ray sweep backend")
    planned = [(plan, plan_sweep(plan.base, plan.seeds, plan.grid)) for plan in plans]
    outs = [Path(plan.out) for plan in plans]
    if len(set(outs)) != len(outs):
        raise RunError("each sweep of run_sweeps needs its own folder")
    for plan, _ in planned:
        _check_plan(Path(plan.out), _plan_record(plan.base, plan.seeds, plan.grid))
    ordered = [(plan, run) for plan, runs in planned for run in runs]
    if seed_major:
        ordered.sort(key=lambda item: list(item[0].seeds).index(item[1].spec.seed))  # stable sort
    jobs = [(dataclasses.asdict(run.spec), str(Path(plan.out) / run.name)) for plan, run in ordered]
    single = len(plans) == 1
    labels = {path: Path(path).name if single else "/".join(Path(path).parts[-3:]) for _, path in jobs}
    if single:
        seeds = plans[0].seeds
        runs = planned[0][1]
        points = len(runs) // len(seeds)
        log(f"sweep: {len(runs)} runs ({len(seeds)} seeds x {points} grid points) -> {outs[0]}")
    else:
        log(f"sweeps: {len(jobs)} runs in {len(plans)} folders")
    with GracefulStop() as stop:
        if backend == "local":
            outcomes = _run_local(jobs, workers or os.cpu_count() or 1, stop, log, labels)
        else:
            outcomes = _run_ray(jobs, workers, ray_address, stop, log, labels)
    by_path = dict(zip((path for _, path in jobs), outcomes, strict=True))
    results = []
    for plan, runs in planned:
        out = Path(plan.out)
        comparison = None
        if any((out / r.name / "eval.csv").is_file() for r in runs):
            comparison = compare_runs([out], out=out / "curves.png", markdown=out / "summary.md")
        mine = [by_path[str(out / r.name)] for r in runs]
        results.append(SweepResult(out, mine, comparison, stop.requested))
    return results


def _run_local(
    jobs: list[tuple[dict[str, Any], str]],
    workers: int,
    stop: GracefulStop,
    log: Callable[[str], None],
    labels: dict[str, str],
) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    event = ctx.Event()
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers before torch loads
    try:
        with cf.ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_init_worker, initargs=(event,)
        ) as pool:
            futures = {pool.submit(run_one, spec, path): path for spec, path in jobs}
            outcomes: dict[str, dict[str, Any]] = {}
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, timeout=_POLL_S, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    path = futures[future]
                    if future.cancelled():
                        outcomes[path] = _not_started(path)
                        continue
                    try:
                        outcomes[path] = future.result()
                    except Exception as exc:  # a worker died (killed, out of memory)
                        outcomes[path] = {"name": Path(path).name, "status": "failed", "error": repr(exc)}
                    log(_describe(_labelled(outcomes[path], path, labels)))
                if stop.requested is not None and not event.is_set():
                    event.set()
                    for future in pending:
                        future.cancel()
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous
    return [_labelled(outcomes.get(p, _not_started(p)), p, labels) for _, p in jobs]


def _not_started(path: str) -> dict[str, Any]:
    return {"name": Path(path).name, "status": "not started"}


def _labelled(outcome: dict[str, Any], path: str, labels: dict[str, str]) -> dict[str, Any]:
    return {**outcome, "name": labels.get(path, outcome["name"])}


def _run_ray(
    jobs: list[tuple[dict[str, Any], str]],
    workers: int | None,
    address: str | None,
    stop: GracefulStop,
    log: Callable[[str], None],
    labels: dict[str, str],
) -> list[dict[str, Any]]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            kwargs["num_cpus"] = workers or os.cpu_count() or 1
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RunError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from exc
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_one)
        waiting = list(jobs)
        in_flight: dict[Any, str] = {}
        outcomes: dict[str, dict[str, Any]] = {}
        limit = workers or len(jobs)
        while waiting or in_flight:
            while waiting and len(in_flight) < limit and stop.requested is None:
                spec, path = waiting.pop(0)
                in_flight[remote.remote(spec, path)] = path
            if stop.requested is not None:
                waiting.clear()
            if not in_flight:
                break
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=_POLL_S)
            for ref in done:
                path = in_flight.pop(ref)
                try:
                    outcomes[path] = ray.get(ref)
                except ray.exceptions.TaskCancelledError:
                    outcomes[path] = _not_started(path)
                except Exception as exc:  # the task's worker died
                    outcomes[path] = {"name": Path(path).name, "status": "failed", "error": repr(exc)}
                log(_describe(_labelled(outcomes[path], path, labels)))
            if stop.requested is not None:
                for ref in in_flight:
                    ray.cancel(ref)  # KeyboardInterrupt in the task; the run saves a checkpoint
    finally:
        if started_here:
            ray.shutdown()
    return [_labelled(outcomes.get(p, _not_started(p)), p, labels) for _, p in jobs]
