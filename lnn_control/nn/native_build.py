"""The compiled kernels' shared machinery: build with the system C compiler into a per-user cache on first
use, load with ctypes, switch off (environment variable or :meth:`NativeKernel.disabled`), and decide per call
whether the kernel may run (:meth:`NativeKernel.usable`). ``ltc_native`` and ``cfc_native`` each hold one
:class:`NativeKernel`.

The cache is ``$LNN_CONTROL_CACHE`` or ``~/.cache/lnn_control``; a library is named after the hash of its
sources, the compiler, flags and platform, and written atomically (a temporary name, then a rename).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["NativeKernel", "batch_slices", "declare", "run_calls"]

SOURCE_DIR = Path(__file__).with_name("csrc")
FLAGS = (
    "-O3",
    "-std=c99",
    "-fPIC",
    "-shared",
    "-fopenmp-simd",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-ffp-contract=fast",
)
LANES = 8  # CFC_LANES in csrc: samples per vector lane group, default of batch_slices (ltc_native.LANES: 16)
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, workers, pool): a fork makes its own


def cache_dir() -> Path:
    root = os.environ.get("LNN_CONTROL_CACHE") or Path.home() / ".cache" / "lnn_control"
    return Path(root)


def find_compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")


def build(compiler: str, sources: tuple[str, ...]) -> Path:
    """Compile a kernel (``sources[0]`` includes the others) into the cache, unless it is there already."""
    digest = hashlib.sha256()
    for name in sources:
        digest.update((SOURCE_DIR / name).read_bytes())
    digest.update(" ".join((compiler, *FLAGS, platform.machine(), platform.system())).encode())
    target = cache_dir() / f"{Path(sources[0]).stem}-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        command = [compiler, *FLAGS, "-o", temporary, str(SOURCE_DIR / sources[0]), "-lm"]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return target


def declare(library: ctypes.CDLL, signatures: dict[str, tuple[int, int]]) -> None:
    """Set the ctypes signature of each kernel entry point: name -> (int64 sizes, pointers) arguments, in
    that order; every entry point returns an int status (0: success)."""
    for name, (sizes, pointers) in signatures.items():
        function = getattr(library, name)
        function.argtypes = [ctypes.c_int64] * sizes + [ctypes.c_void_p] * pointers
        function.restype = ctypes.c_int


class NativeKernel:
    """One compiled kernel.

    Args:
        name: what it computes, for the warning when it cannot be built ("LTC", "CfC").
        sources: C files in ``csrc/``, the compiled one first.
        env_var: set to "0" to switch the kernel off.
        declare: sets the ctypes signatures of the library's functions.
    """

    def __init__(
        self, name: str, sources: tuple[str, ...], env_var: str, declare: Callable[[ctypes.CDLL], None]
    ) -> None:
        self.name = name
        self.sources = sources
        self.declare = declare
        self.enabled = os.environ.get(env_var, "1") != "0"
        self.library: ctypes.CDLL | None = None
        self.load_failed = False

    def load(self) -> ctypes.CDLL | None:
        """The library, built on first call; None (with one warning) if it cannot be built."""
        if self.library is not None or self.load_failed:
            return self.library
        compiler = find_compiler()
        try:
            if compiler is None:
                raise OSError("no C compiler found ($CC, cc, gcc or clang)")
            library = ctypes.CDLL(str(build(compiler, self.sources)))
            self.declare(library)
        except (OSError, subprocess.SubprocessError, AttributeError) as error:
            detail = getattr(error, "stderr", "") or error
            warnings.warn(
                f"compiled {self.name} kernel unavailable, using the torch loop: {detail}", stacklevel=3
            )
            self.load_failed = True
            return None
        self.library = library
        return library

    def available(self) -> bool:
        """Whether the kernel is enabled and could be built and loaded on this machine."""
        return self.enabled and self.load() is not None

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Run the cells on their torch loop inside the block (for comparisons and debugging)."""
        previous, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = previous

    def usable(self, *tensors: Tensor) -> bool:
        """Whether the kernel can run on these tensors: enabled, CPU, float32/float64, not traced, compiled
        or exported (torch.compile / torch.export record the torch loop)."""
        if not self.enabled:
            return False
        dtype = tensors[0].dtype
        if dtype is not torch.float32 and dtype is not torch.float64:
            return False
        for t in tensors:  # a loop, not any(generator): this runs at every control step
            if t.dtype is not dtype or t.device.type != "cpu":
                return False
        if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return False
        if torch.onnx.is_in_onnx_export():
            return False
        return self.library is not None or self.load() is not None


def batch_slices(batch: int, lanes: int = LANES) -> list[slice]:
    """Contiguous batch slices, one per torch thread, each starting at a multiple of ``lanes`` samples (the
    kernel's lane group)."""
    groups = -(-batch // lanes)
    parts = max(1, min(torch.get_num_threads(), groups))
    bounds = [min(batch, groups * i // parts * lanes) for i in range(parts + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


def run_calls(calls: list[Callable[[], int]]) -> None:
    """Run the kernel calls (one per slice), on threads when there are several: ctypes releases the GIL
    for the call, so slices run in parallel. Raise if one fails."""
    global _pool
    if len(calls) == 1:
        results = [calls[0]()]
    else:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < len(calls):
            pool = ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="lnn-native")
            _pool = (os.getpid(), len(calls), pool)
        results = list(_pool[2].map(lambda call: call(), calls))
    if any(results):
        raise MemoryError("a compiled kernel could not allocate its work buffer")
