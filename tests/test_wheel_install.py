"""The installed user's path: the wheel in a fresh virtualenv outside the checkout, with only the required
dependencies, then with the ``export`` extra.

Steps: build the wheel from a copy of the source tree; make a fresh venv in a temporary folder; make the
required dependencies (and only those: the closure of the wheel's ``Requires-Dist`` without extras)
importable there by linking them (and pip) from this test's environment, so that torch is not downloaded
again; install the wheel with ``pip --no-index`` (which proves that the required dependencies are
complete); then, from a folder outside the checkout and without PYTHONPATH, run ``lnn-control --help``, a
short ``train`` of an LTC agent (the compiled kernel builds from the wheel's C sources into a fresh cache),
``eval``, ``export --format c --format torchscript`` and ``export --format onnx``, which must fail with the
one-line error naming the extra (exit code 2). Then ``pip install 'lnn-control[export]'`` (from the package
registry, at the versions of this environment) and the ONNX export and the torch-free ``Controller`` work.

An audit hook installed in the fresh venv (a ``.pth`` file) records every file opened, directory listed
and program started whose path lies in the checkout (this test's own environment excepted, where CI keeps
its ``.venv``): the test fails if any package datum (catalogue, C sources, ...) came from the checkout.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).resolve().parents[1]
TASK = "InvertedPendulum-NoVel-Jitter-v0"
TINY_LTC = [
    "--env", TASK, "--agent", "liquid-ppo-ltc", "--n-envs", "2", "--eval-episodes", "2", "--no-progress",
    "--timesteps", "128", "--eval-freq", "64",
    "--set", "hyperparameters.n_steps=32", "--set", "hyperparameters.batch_size=32",
    "--set", "hyperparameters.seq_len=16", "--set", "hyperparameters.n_epochs=1",
    "--set", "policy_kwargs.units=8",
]  # fmt: skip
EXPORT_EXTRA = ("onnx", "onnxruntime")
EXTRA_HINT = "pip install 'lnn-control[export]'"

GUARD = '''"""Records checkout paths that this interpreter opens, lists or runs (see test_wheel_install)."""
import os
import sys

_FORBIDDEN = {forbidden!r}
_ALLOWED = {allowed!r}
_LOG = {log!r}
_EVENTS = {{"open": 0, "os.listdir": 0, "os.scandir": 0, "glob.glob": 0, "subprocess.Popen": 1}}


def _inside(path):
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return (real == _FORBIDDEN or real.startswith(_FORBIDDEN + os.sep)) and not any(
        real == a or real.startswith(a + os.sep) for a in _ALLOWED
    )


def _hook(event, args):
    index = _EVENTS.get(event)
    if index is None or len(args) <= index:
        return
    value = args[index]
    candidates = value if isinstance(value, (list, tuple)) else [value]
    for path in candidates:
        if isinstance(path, (str, bytes, os.PathLike)) and _inside(path):
            with open(_LOG, "a") as f:
                f.write(f"{{event}} {{os.fsdecode(path)}} (pid {{os.getpid()}}: {{' '.join(sys.argv)}})\\n")


sys.addaudithook(_hook)
'''


def _source_files() -> list[Path]:
    """The files of the source tree that git tracks or would track (what a clean clone holds)."""
    if (CHECKOUT / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(
            ["git", "-C", str(CHECKOUT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True,
            capture_output=True,
        ).stdout.split(b"\0")
        paths = [Path(os.fsdecode(p)) for p in listed if p]
        return [p for p in paths if (CHECKOUT / p).is_symlink() or (CHECKOUT / p).is_file()]
    skip = {".venv", ".git", "build", "dist", "runs", ".pytest_cache", ".ruff_cache", "__pycache__"}
    found = []
    for root, dirs, files in os.walk(CHECKOUT):
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
        found += [Path(root, f).relative_to(CHECKOUT) for f in files]
    return found


def _build_wheel(work: Path) -> Path:
    """The wheel, built from a copy of the source tree (the checkout gets no build/ or egg-info)."""
    source = work / "source"
    for relative in _source_files():
        target = source / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        origin = CHECKOUT / relative
        if origin.is_symlink():
            os.symlink(os.readlink(origin), target)  # the catalogue links inside lnn_control/
        else:
            shutil.copy2(origin, target)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist")]
    try:  # the build backend of this environment, when it is new enough (else pip isolates and fetches it)
        if int(metadata.version("setuptools").split(".")[0]) >= 68:
            command.append("--no-build-isolation")
    except metadata.PackageNotFoundError:
        pass
    subprocess.run([*command, str(source)], check=True, cwd=work)
    (wheel,) = (work / "dist").glob("lnn_control-*.whl")
    return wheel


def _required_closure(wheel: Path) -> list[metadata.Distribution]:
    """The distributions of this environment that the wheel's required dependencies pull in, transitively."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(name).decode()
    pending = [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
               if line.startswith("Requires-Dist:")]  # fmt: skip
    pending = [r for r in pending if r.marker is None or r.marker.evaluate({"extra": ""})]
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement = pending.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"this environment lacks {requirement.name}, a required dependency of the wheel")
        found[key[0]] = dist
        for line in dist.requires or []:
            child = Requirement(line)
            marker: Marker | None = child.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in ("", *requirement.extras)):
                pending.append(child)
    assert not set(found) & {canonicalize_name(n) for n in EXPORT_EXTRA}, "export extra leaked into required"
    return list(found.values())


def _link_closure(dists: list[metadata.Distribution], shadow: Path) -> None:
    """Symlink each distribution's top-level modules, packages and .dist-info into ``shadow``."""
    shadow.mkdir()
    for dist in dists:
        site = Path(str(dist.locate_file("")))
        if not dist.files:
            pytest.fail(f"{dist.metadata['Name']} has no RECORD: cannot tell its files")
        tops = {Path(str(f)).parts[0] for f in dist.files}
        for top in tops - {"..", "__pycache__"}:
            if top.endswith(".pth") or (shadow / top).exists() or not (site / top).exists():
                continue
            (shadow / top).symlink_to(site / top)


def _run(command: list[str], env: dict[str, str], cwd: Path, expect: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == expect, (
        f"{' '.join(command)} exited {result.returncode}, expected {expect}\n"
        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A fresh venv outside the checkout with the wheel and its required dependencies only."""
    work = tmp_path_factory.mktemp("wheel")
    assert CHECKOUT not in work.resolve().parents, "the test needs a temporary folder outside the checkout"
    timings: dict[str, float] = {}
    start = time.perf_counter()
    wheel = _build_wheel(work)
    timings["build wheel"] = time.perf_counter() - start

    start = time.perf_counter()
    venv = work / "venv"
    # No pip of its own (Python 3.11's would also bring an old setuptools that shadows torch's): pip comes
    # with the linked dependencies, and installs into the fresh venv.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    _link_closure([*_required_closure(wheel), metadata.distribution("pip")], work / "required")
    (site / "lnn_required_dependencies.pth").write_text(f"{work / 'required'}\n")
    log = work / "checkout-access.log"
    allowed = sorted({os.path.realpath(sys.prefix), os.path.realpath(work)})
    guard = GUARD.format(forbidden=os.path.realpath(CHECKOUT), allowed=allowed, log=str(log))
    (site / "_lnn_wheel_guard.py").write_text(guard)
    (site / "zz_lnn_wheel_guard.pth").write_text("import _lnn_wheel_guard\n")
    timings["fresh venv"] = time.perf_counter() - start

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        LNN_CONTROL_CACHE=str(work / "cache"),  # the LTC kernel compiles from the wheel's sources
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        MPLBACKEND="Agg",
    )
    home = work / "home"  # outside the checkout
    home.mkdir()
    start = time.perf_counter()
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-index", str(wheel)], env, home)
    timings["pip install --no-index"] = time.perf_counter() - start
    return {"work": work, "wheel": wheel, "python": python, "site": site, "env": env, "home": home,
            "log": log, "timings": timings}  # fmt: skip


def _checkout_access(fresh: dict) -> list[str]:
    log: Path = fresh["log"]
    return log.read_text().splitlines() if log.exists() else []


def test_the_wheel_ships_the_package_data(fresh: dict) -> None:
    with zipfile.ZipFile(fresh["wheel"]) as archive:
        names = set(archive.namelist())
    expected = {f"lnn_control/catalogue/envs/{p.name}" for p in (CHECKOUT / "envs").glob("*.yaml")}
    expected |= {f"lnn_control/catalogue/agents/{p.name}" for p in (CHECKOUT / "agents").glob("*.yaml")}
    expected |= {f"lnn_control/nn/csrc/{p.name}" for p in (CHECKOUT / "lnn_control/nn/csrc").iterdir()}
    assert len(expected) > 30 and expected <= names, sorted(expected - names)
    assert not any(n.startswith(("tests/", "scripts/", "envs/", "agents/")) for n in names)


def test_the_installed_users_path(fresh: dict) -> None:
    env, home, python = fresh["env"], fresh["home"], fresh["python"]
    cli = str(Path(python).parent / "lnn-control")
    timings = fresh["timings"]

    def timed(label: str, command: list[str], expect: int = 0) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        result = _run(command, env, home, expect)
        timings[label] = time.perf_counter() - start
        return result

    where = timed("import", [str(python), "-c", "import lnn_control; print(lnn_control.__file__)"])
    assert Path(where.stdout.strip()).is_relative_to(fresh["site"]), where.stdout
    assert "usage: lnn-control" in timed("--help", [cli, "--help"]).stdout

    run = home / "runs" / "ltc"
    timed("train (LTC, 128 steps)", [cli, "train", *TINY_LTC, "--out", str(run)])
    assert (run / "checkpoints" / "best.zip").is_file()
    assert list((fresh["work"] / "cache").glob("ltc_kernel-*.so")), "the LTC kernel was not compiled"
    report = timed("eval", [cli, "eval", str(run), "--episodes", "2", "--json"])
    assert json.loads(report.stdout)["episodes"] == 2

    out = home / "controller"
    timed("export c + torchscript", [cli, "export", str(run), "--format", "c", "--format", "torchscript",
                                     "--out", str(out)])  # fmt: skip
    assert {"policy.c", "policy.h", "policy.c.json", "policy.pt", "policy.pt.json"} <= {
        p.name for p in out.iterdir()
    }
    failed = timed("export onnx without the extra", [cli, "export", str(run), "--format", "onnx", "--out",
                                                     str(out)], expect=2)  # fmt: skip
    assert len(failed.stderr.strip().splitlines()) == 1 and EXTRA_HINT in failed.stderr, failed.stderr
    assert not (out / "policy.onnx").exists()

    pins = [f"{name}=={metadata.version(name)}" for name in EXPORT_EXTRA]  # this environment's versions
    (home / "constraints.txt").write_text("\n".join(pins) + "\n")
    timed("pip install the export extra", [str(python), "-m", "pip", "install", "--quiet", "-c",
                                           "constraints.txt", f"{fresh['wheel']}[export]"])  # fmt: skip
    timed("export onnx", [cli, "export", str(run), "--format", "onnx", "--out", str(out)])
    step = (
        "import numpy as np, sys; from lnn_control.export import Controller; c = Controller(sys.argv[1]); "
        "a = c.step(np.zeros(c.obs_dim), dt=0.04); assert a.shape == (c.act_dim,) and np.isfinite(a).all(); "
        "assert 'torch' not in sys.modules; print('ok')"
    )
    assert (
        timed("Controller step", [str(python), "-c", step, str(out / "policy.onnx")]).stdout.strip() == "ok"
    )

    assert _checkout_access(fresh) == [], "\n".join(_checkout_access(fresh))
    # Control: the guard is live in that venv (a read of a checkout file is recorded).
    _run([str(python), "-c", f"open({str(CHECKOUT / 'pyproject.toml')!r}).read()"], env, home)
    recorded = _checkout_access(fresh)
    assert len(recorded) == 1 and recorded[0].startswith(f"open {CHECKOUT / 'pyproject.toml'}"), recorded
    print("\nwheel test timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
