"""Timing, memory and time budgets for torch_bench.py."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

GIB = 2**30  # memory in GiB, labelled GB as atelier-bench.ts does (nvidia-smi MiB / 1024)


class Clock:
    """Seconds of GPU work: CUDA events around the call (after a synchronize), or wall time on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        self.sync()
        if not self.cuda:
            start = time.perf_counter()
            result = fn()
            return result, time.perf_counter() - start
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        result = fn()
        end.record()
        end.synchronize()
        return result, begin.elapsed_time(end) / 1e3

    def wall(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        """Wall time with the device drained before and after (loads: host and copies together)."""
        self.sync()
        start = time.perf_counter()
        result = fn()
        self.sync()
        return result, time.perf_counter() - start

    def median(self, fn: Callable[[], Any], runs: int, warmup: int = 1) -> float:
        for _ in range(warmup):
            self.time(fn)
        times = sorted(self.time(fn)[1] for _ in range(runs))
        return times[len(times) // 2]


class MemoryWatch:
    """Peak GPU memory in use, measured the way atelier-bench.ts measures its own: `nvidia-smi
    --query-gpu=memory.used -lms 100` from before this process touches CUDA, the peak since
    `reset()` minus that baseline, in GiB (MiB / 1024). It includes this process's CUDA context,
    every resident model and the allocator's cache; the allocator's own peaks come beside it.
    Without nvidia-smi, total − free from cudaMemGetInfo is polled instead."""

    def __init__(self, device: torch.device, interval_ms: int = 100) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.source = "none"
        self.baseline_mib = 0.0
        self._last = 0.0
        self._peak = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._first = threading.Event()
        if not self.cuda:
            return
        index = device.index if device.index is not None else 0
        try:
            self._proc = subprocess.Popen(
                ["nvidia-smi", f"--id={index}", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", str(interval_ms)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self.source = "nvidia-smi memory.used"
            self._thread = threading.Thread(target=self._read_smi, name="memory-watch", daemon=True)
        except OSError:
            self.source = "cudaMemGetInfo total - free"
            self._thread = threading.Thread(target=self._poll_cuda, args=(interval_ms / 1e3,), daemon=True)
        self._thread.start()
        self._first.wait(timeout=5)
        self.baseline_mib = self._last

    def _see(self, mib: float) -> None:
        with self._lock:
            self._last = mib
            self._peak = max(self._peak, mib)
        self._first.set()

    def _read_smi(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self._see(float(line.strip()))
            except ValueError:
                continue

    def _poll_cuda(self, interval: float) -> None:
        while not self._stop.is_set():
            free, total = torch.cuda.mem_get_info(self.device)
            self._see((total - free) / 2**20)
            self._stop.wait(interval)

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            with self._lock:
                self._peak = self._last

    def peaks(self) -> dict[str, float | None]:
        if not self.cuda:
            return {"peak_gpu_mem_gb": None, "peak_allocated_gb": None, "peak_reserved_gb": None}
        torch.cuda.synchronize()
        time.sleep(0.25)  # let the poller see the end of the run
        with self._lock:
            peak = self._peak
        return {
            "peak_gpu_mem_gb": round((peak - self.baseline_mib) / 1024, 3),
            "peak_allocated_gb": round(torch.cuda.max_memory_allocated(self.device) / GIB, 3),
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved(self.device) / GIB, 3),
        }

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)


class BudgetExceeded(Exception):
    pass


class Budget:
    """The whole run's time limit, so one command finishes (and writes its results) in time."""

    def __init__(self, total_seconds: float) -> None:
        self.total = total_seconds
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return self.total - self.elapsed()


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raises BudgetExceeded in the main thread after `seconds` (torch.compile can't be bounded
    otherwise). Only for code that can be abandoned halfway: a compile, not a file write."""

    def expire(signum: int, frame: object) -> None:
        raise BudgetExceeded(f"over {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def nvidia_smi() -> dict[str, str]:
    """GPU name, driver, memory total: the device the numbers belong to."""
    query = "name,driver_version,memory.total,pci.bus_id"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    first = out.strip().splitlines()[0] if out.strip() else ""
    values = [v.strip() for v in first.split(",")]
    return dict(zip(["device", "driver", "memory_total", "pci_bus_id"], values)) if len(values) == 4 else {}
