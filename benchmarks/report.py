"""Tables on the terminal and the JSON results file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.pyspy import profile_lines

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GROUPS = ("api", "worker", "balancer", "postgres", "redis", "bench")


def _fmt_errors(errors: dict[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in errors.items()) or "-"


def _ms(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(out)


def scenario_tables(summary: dict[str, Any]) -> str:
    name = summary["scenario"]
    lines = [f"\n=== {name} ==="]
    if summary.get("skipped"):
        lines.append(f"skipped: {summary['skipped']}")
        return "\n".join(lines)
    steps = summary["steps"]
    if steps:
        rows = []
        for s in steps:
            lat = s["latency_ms"]
            rate = s["extra"].get("achieved_order_rate", s["requests_per_s"])
            rows.append(
                [
                    str(s["concurrency"]) if name != "e2e" else s["step"],
                    str(s["requests"]),
                    f"{rate:.0f}",
                    f"{lat['p50']:.1f}",
                    f"{lat['p90']:.1f}",
                    f"{lat['p99']:.1f}",
                    f"{lat['max']:.1f}",
                    _fmt_errors(s["errors"]),
                ]
            )
        first, per_s = ("target", "orders/s") if name == "e2e" else ("conc", "req/s")
        lines.append(
            _table(
                [first, "requests", per_s, "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"], rows
            )
        )
        rows = []
        for s in steps:
            wall = s["elapsed_s"] or 1.0
            cpu = [
                f"{s['cpu_s'][g]:.1f} ({100 * s['cpu_s'][g] / wall:.0f}%)"
                if g in s["cpu_s"]
                else "-"
                for g in GROUPS
            ]
            rss = [
                f"{s['rss_mb_peak'][g]:.0f}" if g in s["rss_mb_peak"] else "-"
                for g in ("api", "worker", "redis")
            ]
            rows.append([s["step"], f"{s['elapsed_s']:.1f}", *cpu, *rss, f"{s['load_1m']:.1f}"])
        lines.append("")
        lines.append(
            _table(
                [
                    "step",
                    "wall s",
                    *(f"cpu {g} s" for g in GROUPS),
                    "rss api MB",
                    "rss worker MB",
                    "rss redis MB",
                    "load 1m",
                ],
                rows,
            )
        )
        lines.append("")
        lines.append(_cost_table(steps))
        for s in steps:
            extra = {
                k: v
                for k, v in s["extra"].items()
                if v not in (0, 0.0, None, {}, []) and k != "backlog_per_s"
            }
            if extra:
                lines.append(f"  {s['step']}: {json.dumps(extra)}")
            for note in s["notes"]:
                lines.append(f"  {s['step']} note: {note}")
    lines.extend(_verdict_lines(summary.get("verdict") or {}))
    check = summary.get("stock_check")
    if check:
        if check["skipped"]:
            lines.append(f"stock check: SKIPPED ({check['skipped']})")
        else:
            state = "OK" if check["ok"] else "FAILED"
            lines.append(
                f"stock check: {state} over {check['books']} books "
                f"(attempts {check['attempts']}) totals {json.dumps(check['totals'])} "
                f"orders {json.dumps(check['orders_by_status'])}"
            )
            for v in check["violations"][:10]:
                lines.append(f"  violation: {v}")
    audit = summary.get("stock_audit")
    if audit:
        if not audit["available"]:
            lines.append("audit: not available")
        elif audit["error"]:
            lines.append(f"audit: failed ({audit['error']})")
        else:
            lines.append(
                f"audit drift: {audit['drift_units']} units ({audit['corrections']} corrections)"
            )
    lines.extend(profile_lines(summary.get("profile")))
    return "\n".join(lines)


def _verdict_lines(verdict: dict[str, Any]) -> list[str]:
    if not verdict:
        return []
    nested = {k: v for k, v in verdict.items() if isinstance(v, dict) and "pass" in v}
    if not nested:
        return [f"verdict: {json.dumps(verdict)}"]
    lines = [f"verdict: {'PASS' if verdict.get('pass') else 'FAIL'}"]
    for label, v in nested.items():
        lines.append(f"  {label}: {json.dumps(v)}")
    return lines


def _cost_table(steps: list[dict[str, Any]]) -> str:
    """CPU ms per operation (API, worker until drained, total) and x the /healthz request."""
    rows = []
    for s in steps:
        c = s.get("cost") or {}
        drain = c.get("drain") or {}
        backlog = c.get("backlog") or {}
        rows.append(
            [
                s["step"],
                str(c.get("ops", "-")),
                _ms(c.get("api_ms_per_op"), 3),
                _ms(c.get("worker_ms_per_op"), 3),
                _ms(c.get("total_ms_per_op"), 3),
                _x(c.get("api_x_healthz")),
                _x(c.get("worker_x_healthz")),
                _x(c.get("total_x_healthz")),
                _ms(c.get("rate_pct_of_healthz"), 0),
                str(backlog.get("max", "-")),
                f"{drain.get('seconds', 0.0):.1f}" + (" CAP" if drain.get("capped") else ""),
            ]
        )
    headers = ["step", "ops", "api ms/op", "worker ms/op", "total ms/op", "api x hz"]
    headers += ["worker x hz", "total x hz", "rate % hz", "backlog max", "drain s"]
    return _table(headers, rows)


def summary_table(rows: list[dict[str, Any]], baseline: dict[str, Any] | None) -> str:
    """One row per scenario: its c=50 (e2e: 50/s) step against the issue's targets."""
    if baseline:
        head = (
            f"=== summary: CPU per operation (API + worker until drained) vs /healthz "
            f"({baseline['api_ms']:.3f} ms API CPU, {baseline['rate']:.0f} req/s at c=50) ==="
        )
    else:
        head = "=== summary: CPU per operation (no /healthz calibration in this run) ==="
    table = []
    for r in rows:
        if r.get("step") is None:
            table.append([r["scenario"], "-", *["-"] * 8, r["target"], "skipped"])
            continue
        if r["scenario"] == "idle":
            api, worker = f"{r['api_pct']}% core", f"{r['worker_pct']}% core"
        else:
            api, worker = _ms(r.get("api_ms_per_op")), _ms(r.get("worker_ms_per_op"))
            if r.get("drain_capped"):
                worker += " CAP"
        met = {True: "met", False: "MISS " + ",".join(r["misses"]), None: "-"}[r["met"]]
        table.append(
            [
                r["scenario"],
                r["step"],
                _ms(r.get("rate"), 0),
                _ms(r.get("rate_pct_of_healthz"), 0),
                _ms(r.get("p99_ms"), 1),
                api,
                worker,
                _ms(r.get("total_ms_per_op")),
                _x(r.get("x_healthz")),
                r["target"],
                met,
            ]
        )
    headers = ["scenario", "step", "rate/s", "% hz", "p99 ms", "api ms/op", "worker ms/op"]
    headers += ["total ms/op", "x hz", "target", "verdict"]
    lines = [head, _table(headers, table)]
    for r in rows:
        if r["scenario"] == "e2e" and r.get("step") is not None:
            best = r.get("max_sustained_rate")
            lines.append(
                "e2e: highest rate sustained (order -> order.paid p99 <= 1 s, nothing backing "
                f"up): {'none' if best is None else f'{best:g}/s'}"
            )
    return "\n".join(lines)


def _git_rev() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "git": _git_rev(),
    }


def run_stamp(results_dir: Path = RESULTS_DIR) -> str:
    """This run's name: a timestamp, unique in `results_dir` (JSON file, profile folder)."""
    stamp = base = time.strftime("%Y%m%dT%H%M%S")
    n = 1
    while (results_dir / f"{stamp}.json").exists() or (results_dir / stamp).exists():
        stamp = f"{base}-{n}"
        n += 1
    return stamp


def write_results(
    doc: dict[str, Any], results_dir: Path = RESULTS_DIR, stamp: str | None = None
) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = stamp or time.strftime("%Y%m%dT%H%M%S")
    path = results_dir / f"{stamp}.json"
    n = 1
    while path.exists():
        path = results_dir / f"{stamp}-{n}.json"
        n += 1
    path.write_text(json.dumps(doc, indent=2))
    return path
