"""CPU per operation against this run's /healthz calibration, and the issue's targets.

Every step's `cost` (API and worker CPU ms per operation, the worker's counted until it
drained) gets ratios to the `healthz` step: API CPU ms per GET /healthz, and its rate at
c=50. Each scenario's headline step (c=50; e2e: the 50/s step) becomes one row of the
run's summary table, compared with the targets of the issue "Cost per purchase".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.scenarios import Baseline

E2E_TARGET_RATE = 50.0  # purchases/s the issue asks to sustain for 60 s


@dataclass(frozen=True)
class Target:
    text: str
    max_total_ms: float | None = None
    max_x_healthz: float | None = None
    min_rate_pct: float | None = None  # rate at c=50 as % of the healthz rate
    max_p99_ms: float | None = None
    max_worker_pct: float | None = None  # idle: % of one core


TARGETS: dict[str, Target] = {
    "healthz": Target("calibration"),
    "idle": Target("worker <2% core", max_worker_pct=2.0),
    "catalog": Target(">=50% hz rate", min_rate_pct=50.0),
    "cart": Target("<=1.2ms <=3.5x >=30%hz p99<=50", 1.2, 3.5, 30.0, 50.0),
    "orders": Target("<=4ms <=12x >=10%hz p99<=150", 4.0, 12.0, 10.0, 150.0),
    "hot-book": Target("race exact, every c"),
    "e2e": Target("<=20ms <=60x p99<=1s @50/s 60s", 20.0, 60.0, None, 1000.0),
    "sockets": Target("-"),
}


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 2)


def annotate(summary: dict[str, Any], baseline: Baseline | None) -> None:
    """Adds the ratios to healthz to every step's `cost` (None without a calibration)."""
    for step in summary.get("steps", []):
        cost = step.setdefault("cost", {})
        base_ms = baseline.api_ms if baseline else None
        for part in ("api", "worker", "total"):
            key = "total_ms_per_op" if part == "total" else f"{part}_ms_per_op"
            cost[f"{part}_x_healthz"] = _ratio(cost.get(key), base_ms)
        rate = step["extra"].get("achieved_order_rate", step["requests_per_s"])
        pct = _ratio(rate, baseline.rate if baseline else None) if step["requests"] else None
        cost["rate_pct_of_healthz"] = None if pct is None else round(100 * pct, 1)


def _step(summary: dict[str, Any]) -> dict[str, Any] | None:
    label = summary.get("headline_step")
    return next((s for s in summary.get("steps", []) if s["step"] == label), None)


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """One row of the summary table: the headline step's figures, target and verdict."""
    name = summary["scenario"]
    target = TARGETS.get(name, Target("-"))
    row: dict[str, Any] = {"scenario": name, "target": target.text, "misses": []}
    step = _step(summary)
    if summary.get("skipped") or step is None:
        row.update(step=None, met=None, skipped=summary.get("skipped") or "no steps")
        return row
    cost = step["cost"]
    row.update(
        step=step["step"],
        rate=step["extra"].get("achieved_order_rate", step["requests_per_s"]),
        rate_pct_of_healthz=cost.get("rate_pct_of_healthz"),
        p99_ms=step["latency_ms"]["p99"],
        api_ms_per_op=cost.get("api_ms_per_op"),
        worker_ms_per_op=cost.get("worker_ms_per_op"),
        total_ms_per_op=cost.get("total_ms_per_op"),
        x_healthz=cost.get("total_x_healthz"),
        drain_capped=bool(cost.get("drain", {}).get("capped")),
    )
    if name == "idle":
        pct = step["extra"].get("pct_of_one_core", {})
        row.update(api_pct=pct.get("api"), worker_pct=pct.get("worker"), rate=None, p99_ms=None)
    misses = _misses(target, row)
    verdict = summary.get("verdict") or {}
    if name == "hot-book" and verdict.get("pass") is False:
        misses.append("race")
    if name == "e2e":
        row["max_sustained_rate"] = verdict.get("max_sustained_rate")
        if not step["extra"].get("pass") or step["extra"].get("target_rate") != E2E_TARGET_RATE:
            misses.append("50/s")
    row["misses"] = misses
    checked = any(
        v is not None
        for v in (
            target.max_total_ms,
            target.max_x_healthz,
            target.min_rate_pct,
            target.max_p99_ms,
            target.max_worker_pct,
        )
    )
    row["met"] = not misses if checked or name == "hot-book" else None
    return row


def _misses(target: Target, row: dict[str, Any]) -> list[str]:
    out: list[str] = []

    def over(value: Any, limit: float | None, label: str) -> None:
        if limit is not None and (value is None or value > limit):
            out.append(label)

    over(row.get("total_ms_per_op"), target.max_total_ms, "ms")
    over(row.get("x_healthz"), target.max_x_healthz, "x")
    over(row.get("p99_ms"), target.max_p99_ms, "p99")
    worker_pct = row.get("worker_pct")
    if target.max_worker_pct is not None and (
        worker_pct is None or worker_pct >= target.max_worker_pct  # "< 2%": strictly under
    ):
        out.append("worker%")
    pct = row.get("rate_pct_of_healthz")
    if target.min_rate_pct is not None and (pct is None or pct < target.min_rate_pct):
        out.append("rate")
    return out
