"""Helpers shared by the benchmarks: child processes, ports, readiness, percentiles, tables."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import psutil

__all__ = [
    "LOOPBACK",
    "MODEL",
    "REPO",
    "BenchError",
    "Child",
    "CpuMeter",
    "Processes",
    "add_limit_options",
    "bench_key",
    "bench_main",
    "free_ports",
    "listen_args",
    "percentile",
    "print_table",
    "progress",
    "stop_on_sigterm",
    "verdict",
    "wait_ready",
    "write_json",
]

LOOPBACK = "127.0.0.1"
MODEL = "smollm2-135m-instruct"
REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class BenchError(Exception):
    """The benchmark cannot go on (a process died, never got ready, ...)."""


def free_ports(count: int) -> list[int]:
    """Distinct ports that are free on the loopback address right now."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:  # all bound at once, so the kernel cannot hand one out twice
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def listen_args(port: int, data_dir: Path) -> list[str]:
    """The command-line flags that put a shardgate server on a loopback port."""
    return ["--host", LOOPBACK, "--port", str(port), "--data-dir", str(data_dir)]


def bench_key() -> str:
    """A fresh API key for the gateway's bootstrap admin."""
    return "sk-sg-bench-" + secrets.token_urlsafe(24)


class Child:
    """One ``shardgate`` process started by a benchmark, its output going to a log file."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self.ps = psutil.Process(process.pid)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 10.0) -> None:
        if not self.alive:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Processes:
    """Starts ``python -m shardgate ...`` children and stops every one of them on exit."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self.children: list[Child] = []

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        log_path = self._log_dir / f"{name}.log"
        argv = [sys.executable, "-m", "shardgate", *args]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(log_path, "wb") as log:
            # A session of its own: Ctrl-C reaches only the benchmark, which then stops it.
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=REPO,
                start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            for child in self.children:
                print(
                    f"--- the last lines {child.name} wrote ---\n{child.tail()}",
                    file=sys.stderr,
                )
        self.stop_all()


def wait_ready(child: Child, base_url: str, timeout_s: float) -> float:
    """Poll ``GET /readyz`` until it answers 200; the seconds it took."""
    started = time.monotonic()
    while True:
        if not child.alive:
            raise BenchError(f"{child.name} exited with code {child.process.returncode}")
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or 503 while loading
        if time.monotonic() - started > timeout_s:
            raise BenchError(f"{child.name} was not ready after {timeout_s:g}s")
        time.sleep(0.2)


class CpuMeter:
    """CPU used over an interval by some processes, and by everything else on the machine.

    ``stop`` gives percentages of one core; "other" is the machine's busy time not spent
    in the named processes (other work disturbing the figures).
    """

    def __init__(self, processes: Mapping[str, psutil.Process]) -> None:
        self._processes = dict(processes)
        self._start = self._read()
        self._started = time.perf_counter()

    def _read(self) -> dict[str, float]:
        used = {name: _cpu_seconds(p) for name, p in self._processes.items()}
        return {**used, "machine": _machine_busy_seconds()}

    def stop(self) -> tuple[dict[str, float], dict[str, float]]:
        """(CPU seconds, CPU percent of one core) per process, and for "other"."""
        wall = time.perf_counter() - self._started
        end = self._read()
        used = {name: end[name] - self._start[name] for name in end}
        machine = used.pop("machine")
        used["other"] = max(0.0, machine - sum(used.values()))
        return used, {name: round(100 * s / wall, 1) for name, s in used.items()}


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0) + getattr(times, "steal", 0.0)
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)  # in user already
    return float(sum(times) - idle - guest)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating linearly; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain text table: the first column left-aligned, the others right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.ljust(widths[0]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(values)]
        return "  ".join(parts).rstrip()

    print(line(headers))
    print(line(["-" * w for w in widths]))
    for row in cells:
        print(line(row))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def machine() -> tuple[int, float]:
    """CPU cores, and the load average over the last minute, for a report's header."""
    return os.cpu_count() or 1, os.getloadavg()[0]


def run_info(args: argparse.Namespace, cores: int, load1: float) -> dict[str, Any]:
    """The ``machine`` and ``settings`` entries of a report's JSON (paths as strings)."""
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {"machine": {"cpu_cores": cores, "load_average_1m": load1}, "settings": settings}


def print_warnings(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"WARNING: {line}")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")
    print(f"\nfigures written to {path}")


def _finite(value: Any) -> Any:
    """The same data with NaN (no measurement) as null, which JSON can carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so that every started process is stopped."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def add_limit_options(
    parser: argparse.ArgumentParser, request_timeout: float, ready_timeout: float, ready_what: str
) -> None:
    """The options every benchmark takes: its time limits and where to write JSON."""
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=request_timeout,
        help=f"seconds before a request fails (default {request_timeout:g})",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=ready_timeout,
        help=f"seconds to wait for {ready_what} (default {ready_timeout:g})",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")


def bench_main(
    name: str,
    json_path: Path | None,
    measure: Callable[[], T],
    report: Callable[[T], Mapping[str, Any]],
) -> int:
    """Measure, print the report, write its figures; the exit code for ``sys.exit``."""
    stop_on_sigterm()
    try:
        result = measure()
    except KeyboardInterrupt:
        print(
            "\ninterrupted; every process the benchmark started has been stopped", file=sys.stderr
        )
        return 130
    except BenchError as exc:
        print(f"{name} benchmark failed: {exc}", file=sys.stderr)
        return 1
    figures = report(result)
    if json_path:
        write_json(json_path, figures)
    return 0
