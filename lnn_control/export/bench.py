"""Single-step latency of an exported actor in every runtime (used by ``scripts/bench_export.py``).

All figures are per call at batch 1, in microseconds (median and 99th percentile of per-call timings):

- ``torch eager``: the ``ActorStep`` module under ``torch.no_grad()`` (what ``predict`` computes, without
  SB3's numpy conversion), and ``sb3 predict`` for reference;
- ``torchscript``: the traced module;
- ``torch.export``: the ExportedProgram's module (``.pt2``), and with ``aoti=True`` ``aoti (python)``: the
  AOTInductor package run from Python (its C++ runner, compiled here; 20-70 s to build);
- ``onnxruntime``: ``InferenceSession.run`` with one intra-op thread, and ``Controller.step`` (input checks,
  state handling included);
- ``c (loop)``: the generated C step timed inside a C loop (``clock_gettime`` around each call; its own
  overhead, ~20-30 ns, is included), and ``c (ctypes)``: the same step called per call from Python.
"""

from __future__ import annotations

import ctypes
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lnn_control.extras import require

from .formats import trace_actor, write_c, write_onnx
from .meta import ActorMeta
from .pt2 import export_program, write_aoti
from .step import ActorStep

__all__ = ["C_TIMING_FLAGS", "bench_actor", "c_timing_harness", "percentiles_us", "time_calls"]

C_TIMING_FLAGS = ("-std=c99", "-O2")


def percentiles_us(samples_ns: np.ndarray) -> tuple[float, float]:
    """(median, p99) in microseconds of per-call timings in nanoseconds."""
    samples = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return float(np.median(samples)), float(np.percentile(samples, 99))


def time_calls(fn: Callable[[int], Any], repeats: int, warmup: int) -> np.ndarray:
    """Per-call durations (ns) of ``fn(i)`` for i in range(repeats), after ``warmup`` untimed calls."""
    for i in range(warmup):
        fn(i)
    out = np.empty(repeats, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(repeats):
        start = clock()
        fn(i)
        out[i] = clock() - start
    return out


def c_timing_harness(prefix: str, obs_dim: int, act_dim: int, state_dim: int) -> str:
    """A C program timing ``<prefix>_step``: argv[1] calls, prints one duration (ns) per line."""
    return f"""#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "{prefix}.h"

#define N_OBS_SETS 64

int main(int argc, char **argv)
{{
    static float obs[N_OBS_SETS][{obs_dim}];
    float state[{state_dim}];
    float action[{act_dim}];
    unsigned int seed = 12345u;
    long n = argc > 1 ? atol(argv[1]) : 10000;
    long warmup = n / 10 + 100;
    float sink = 0.0f;
    for (int k = 0; k < N_OBS_SETS; ++k)
        for (int i = 0; i < {obs_dim}; ++i) {{
            seed = seed * 1664525u + 1013904223u;
            obs[k][i] = (float)((seed >> 8) & 0xFFFF) / 32768.0f - 1.0f;
        }}
    {prefix}_reset(state);
    for (long t = 0; t < warmup; ++t)
        {prefix}_step(obs[t % N_OBS_SETS], state, {prefix.upper()}_NOMINAL_DT, action);
    for (long t = 0; t < n; ++t) {{
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        {prefix}_step(obs[t % N_OBS_SETS], state, {prefix.upper()}_NOMINAL_DT, action);
        clock_gettime(CLOCK_MONOTONIC, &b);
        sink += action[0];
        printf("%ld\\n", (long)((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec)));
    }}
    fprintf(stderr, "%g\\n", (double)sink);
    return 0;
}}
"""


def _compile(sources: list[Path], output: Path, flags: tuple[str, ...], shared: bool) -> None:
    command = [
        "gcc",
        *flags,
        *(["-shared", "-fPIC"] if shared else []),
        *map(str, sources),
        "-o",
        str(output),
    ]
    result = subprocess.run([*command, "-lm"], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")


def bench_actor(
    actor: ActorStep,
    meta: ActorMeta,
    *,
    repeats: int = 2000,
    c_repeats: int = 20000,
    rounds: int = 10,
    cflags: tuple[str, ...] = C_TIMING_FLAGS,
    predict: Callable[[np.ndarray], Any] | None = None,
    workdir: str | Path | None = None,
    aoti: bool = False,
) -> dict[str, tuple[float, float]]:
    """(median, p99) microseconds per runtime for one step at batch 1 (see the module docstring).

    The Python-side runtimes are timed interleaved, ``rounds`` rounds of ``repeats / rounds`` calls each, so
    that bursts of load on a shared machine spread over all of them alike.
    """
    ort = require("onnxruntime", extra="export", feature="the onnxruntime benchmark")

    from .runtime import Controller

    rng = np.random.default_rng(0)
    observations = rng.uniform(-1.0, 1.0, (64, meta.obs_dim)).astype(np.float32)
    dt = np.full((1, 1), meta.nominal_dt, dtype=np.float32)
    runtimes: dict[str, Callable[[int], Any]] = {}

    obs_t = [torch.from_numpy(o[None]) for o in observations]
    dt_t = torch.from_numpy(dt)
    torch_state = {name: torch.zeros(1, meta.state_dim) for name in ("eager", "script", "pt2", "aoti")}
    scripted = trace_actor(actor, meta)
    program = export_program(actor, meta).module()

    def eager(i: int) -> None:
        with torch.no_grad():
            _, torch_state["eager"] = actor(obs_t[i % 64], torch_state["eager"], dt_t)

    def script(i: int) -> None:
        with torch.no_grad():
            _, torch_state["script"] = scripted(obs_t[i % 64], torch_state["script"], dt_t)

    def exported(i: int) -> None:
        with torch.no_grad():
            _, torch_state["pt2"] = program(obs_t[i % 64], torch_state["pt2"], dt_t)

    runtimes["torch eager"] = eager
    runtimes["torchscript"] = script
    runtimes["torch.export"] = exported
    if predict is not None:
        runtimes["sb3 predict"] = lambda i: predict(observations[i % 64])

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp_path = Path(tmp)
        paths = write_onnx(actor, meta, tmp_path / "bench.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(paths["onnx"]), options, providers=["CPUExecutionProvider"])
        onnx_state = {"h": np.zeros((1, meta.state_dim), dtype=np.float32)}
        onnx_obs = [o[None] for o in observations]

        def run(i: int) -> None:
            _, onnx_state["h"] = session.run(None, {"obs": onnx_obs[i % 64], "h": onnx_state["h"], "dt": dt})

        runtimes["onnxruntime"] = run
        controller = Controller(paths["onnx"])
        runtimes["Controller.step"] = lambda i: controller.step(observations[i % 64], dt=meta.nominal_dt)

        c_paths = write_c(actor, meta, tmp_path, prefix="bench")
        harness = tmp_path / "harness.c"
        harness.write_text(c_timing_harness("bench", meta.obs_dim, meta.act_dim, meta.state_dim))
        binary = tmp_path / "harness"
        _compile([harness, c_paths["c_source"]], binary, cflags, shared=False)
        library = tmp_path / "libbench.so"
        _compile([c_paths["c_source"]], library, cflags, shared=True)
        lib = ctypes.CDLL(str(library))
        floats = ctypes.POINTER(ctypes.c_float)
        lib.bench_step.restype = ctypes.c_int
        lib.bench_step.argtypes = [floats, floats, ctypes.c_float, floats]
        c_state = np.zeros(meta.state_dim, dtype=np.float32)
        c_action = np.zeros(meta.act_dim, dtype=np.float32)
        pointers = [o.ctypes.data_as(floats) for o in observations]
        state_ptr, action_ptr = c_state.ctypes.data_as(floats), c_action.ctypes.data_as(floats)
        step_dt = float(meta.nominal_dt)
        runtimes["c (ctypes)"] = lambda i: lib.bench_step(pointers[i % 64], state_ptr, step_dt, action_ptr)
        if aoti:
            runner = torch._inductor.aoti_load_package(
                str(write_aoti(actor, meta, tmp_path / "b.pt2")["aoti"])
            )

            def compiled(i: int) -> None:
                _, torch_state["aoti"] = runner(obs_t[i % 64], torch_state["aoti"], dt_t)

            runtimes["aoti (python)"] = compiled

        per_round = max(1, repeats // rounds)
        samples: dict[str, list[np.ndarray]] = {name: [] for name in [*runtimes, "c (loop)"]}
        for _ in range(rounds):
            for name, fn in runtimes.items():
                samples[name].append(time_calls(fn, per_round, warmup=max(10, per_round // 10)))
            output = subprocess.run(
                [str(binary), str(max(1, c_repeats // rounds))], capture_output=True, text=True, check=True
            )
            samples["c (loop)"].append(np.array(output.stdout.split(), dtype=np.int64))
    order = [
        "torch eager",
        "sb3 predict",
        "torchscript",
        "torch.export",
        "aoti (python)",
        "onnxruntime",
        "Controller.step",
        "c (loop)",
        "c (ctypes)",
    ]
    return {name: percentiles_us(np.concatenate(samples[name])) for name in order if name in samples}
