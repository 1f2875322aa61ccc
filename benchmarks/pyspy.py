"""`--profile`: py-spy flame graphs of the API and the worker during a scenario's load.

For each scenario one measured block is profiled (the step at c=50, e2e's 50/s step, or
the scenario's only step), from the start of its timed load to the end of its drain. Per
process two `py-spy record --nonblocking --rate 200` run side by side until SIGINT: one
writes the SVG flame graph `<dir>/<scenario>-<api|worker>.svg`, the other the collapsed
stacks `<scenario>-<api|worker>.txt`, from which the top self-time frames are taken.
py-spy reads the target's memory without stopping it (ptrace permission needed: root, or
kernel.yama.ptrace_scope=0); if it cannot, the reason is printed and the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PIN = "py-spy==0.4.3"  # the version these flags and the raw format were checked with
RATE_HZ = 200
TOP_FRAMES = 3
STOP_TIMEOUT_S = 60.0
PROCESSES = ("api", "worker")
# A collapsed-stack frame: "function (path/to/file.py:123)"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")
_SITE = re.compile(r"^.*?/(?:site|dist)-packages/")
# Leaf frames that stand for native code below them (py-spy runs without --native).
NATIVE_BELOW = {
    "Runner.run:asyncio/runners.py": "uvloop's C event loop: I/O, scheduling",
    "EpollSelector.select:selectors.py": "epoll_wait",
}


def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def short_file(path: str) -> str:
    """site-packages/…/x.py -> …/x.py; this project's src/bookbazar/… -> bookbazar/…"""
    path = _SITE.sub("", path)
    marker = "/src/bookbazar/"
    if marker in path:
        return "bookbazar/" + path.split(marker, 1)[1]
    return path


def top_self_frames(raw: str, n: int = TOP_FRAMES) -> tuple[int, list[dict[str, Any]]]:
    """From py-spy's collapsed stacks ("a;b;c 12" per line): total samples and the `n`
    leaf frames (function:file, line numbers merged) with the most samples."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        m = _FRAME.match(leaf)
        name = f"{m['func']}:{short_file(m['file'])}" if m else leaf
        counts[name] += int(count)
        total += int(count)
    top = [
        {"frame": name, "samples": k, "pct": round(100 * k / total, 1) if total else 0.0}
        for name, k in counts.most_common(n)
    ]
    return total, top


@dataclass
class _Recording:
    name: str  # api | worker
    pid: int
    svg: Path
    raw: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)


class Profiler:
    """Starts and stops py-spy for one block per scenario; keeps what it found."""

    def __init__(self, enabled: bool, out_dir: Path) -> None:
        self.enabled = enabled
        self.out_dir = out_dir
        self.exe = find_py_spy() if enabled else None
        self.results: dict[str, dict[str, Any]] = {}
        self._active: list[_Recording] = []
        self._scenario: str | None = None
        if enabled and self.exe is None:
            print(f"[profile] py-spy not found (pip install {PIN}): running without profiles")

    def wants(self, scenario: str) -> bool:
        return self.exe is not None and scenario not in self.results and not self._active

    def start(self, scenario: str, pids: dict[str, int]) -> None:
        if not self.wants(scenario) or self.exe is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._scenario = scenario
        self.results[scenario] = {}
        for name in PROCESSES:
            pid = pids.get(name)
            if pid is None:
                self.results[scenario][name] = {"error": "process not known"}
                continue
            base = self.out_dir / f"{scenario}-{name}"
            rec = _Recording(name, pid, base.with_suffix(".svg"), base.with_suffix(".txt"))
            for fmt, out in (("flamegraph", rec.svg), ("raw", rec.raw)):
                log = base.parent / f"{base.name}.{fmt}.log"
                args = [self.exe, "record", "--format", fmt, "-o", str(out), "--pid", str(pid)]
                args += ["--rate", str(RATE_HZ), "--nonblocking"]
                with log.open("wb") as f:
                    rec.procs.append(
                        subprocess.Popen(
                            args, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT
                        )
                    )
                rec.logs.append(log)
            self._active.append(rec)

    async def stop(self) -> None:
        """SIGINT every py-spy (they write their files then), wait, read the top frames."""
        if not self._active or self._scenario is None:
            return
        active, self._active = self._active, []
        for rec in active:
            for proc in rec.procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGINT)
        for rec in active:
            for proc in rec.procs:
                try:
                    await asyncio.to_thread(proc.wait, STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    await asyncio.to_thread(proc.wait)
            self.results[self._scenario][rec.name] = self._read(rec)
        self._scenario = None

    def _read(self, rec: _Recording) -> dict[str, Any]:
        out: dict[str, Any] = {"pid": rec.pid}
        if rec.svg.exists() and rec.svg.stat().st_size > 0:
            out["svg"] = str(rec.svg)
        if rec.raw.exists():
            out["raw"] = str(rec.raw)
            out["samples"], out["top_self"] = top_self_frames(rec.raw.read_text())
        if "svg" not in out or "raw" not in out:
            why = " | ".join(dict.fromkeys(_tail(log) for log in rec.logs if log.exists()))
            out["error"] = why or "py-spy wrote nothing"
        for log in rec.logs:
            log.unlink(missing_ok=True)
        if "error" in out:
            print(f"[profile] {rec.name} (pid {rec.pid}): {out['error']}")
        return out

    def report(self, scenario: str) -> dict[str, Any] | None:
        return self.results.get(scenario)


_NOISE = re.compile(r"^(?:\d+: |at |Stack backtrace:|Caused by:|py-spy> Sampling process)")


def _tail(path: Path, lines: int = 3) -> str:
    """py-spy's own words: its `Error:` lines if any, else its last lines (no backtrace)."""
    text = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in text if ln.startswith("Error")]
    useful = errors or [ln for ln in text if not _NOISE.match(ln)]
    return " / ".join(useful[-lines:])[:400]


def profile_lines(report: dict[str, Any] | None) -> list[str]:
    """Terminal lines: where the flame graphs are and the top self-time frames."""
    if not report:
        return []
    lines: list[str] = []
    for name in PROCESSES:
        item = report.get(name)
        if not item:
            continue
        if item.get("svg"):
            lines.append(f"profile {name}: {item['svg']}  ({item.get('samples', 0)} samples)")
        if item.get("error"):
            lines.append(f"profile {name}: not available ({item['error']})")
        for rank, frame in enumerate(item.get("top_self") or [], 1):
            below = NATIVE_BELOW.get(frame["frame"])
            note = f"  ({below})" if below else ""
            lines.append(f"  {name} top self #{rank}: {frame['pct']:5.1f}%  {frame['frame']}{note}")
    return lines
