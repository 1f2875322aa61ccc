"""`python -m benchmarks` (what `make bench` runs).

By default starts the service itself on the embedded default (PostgreSQL and Redis
started here, `bookbazar up` in a temporary directory), runs the scenarios, prints a table
per scenario and a summary table (CPU per operation against the /healthz calibration and
the issue's targets), writes benchmarks/results/<timestamp>.json and stops the service.
With --url it measures an already running service instead. With --profile, py-spy flame
graphs go to benchmarks/results/<timestamp>/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.costs import annotate, headline
from benchmarks.drain import Drainer
from benchmarks.e2e import run_e2e
from benchmarks.fixtures import Fixtures
from benchmarks.load import Meter
from benchmarks.profile import FULL, QUICK, Profile
from benchmarks.pyspy import Profiler
from benchmarks.readonly import run_catalog, run_healthz, run_idle
from benchmarks.report import (
    RESULTS_DIR,
    environment,
    run_stamp,
    scenario_tables,
    summary_table,
    write_results,
)
from benchmarks.scenarios import Context, ScenarioResult, run_cart, run_hot_book, run_orders
from benchmarks.service import ManagedService, Service, external_service, log_size, scan_log
from benchmarks.sockets import run_sockets
from benchmarks.stockcheck import StockChecker

SCENARIOS = ("healthz", "idle", "catalog", "cart", "orders", "hot-book", "e2e", "sockets")
CALIBRATION = "healthz"  # always run: every cost is compared with it


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Load benchmarks for Book Bazar (loopback only, bounded in time).",
    )
    parser.add_argument("--url", help="measure this running service instead of starting one")
    parser.add_argument(
        "--scenario",
        default=",".join(SCENARIOS),
        help=f"comma-separated, in this order: {','.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts, a few seconds each")
    parser.add_argument("--users", type=int, help="benchmark users to register")
    parser.add_argument("--sockets", type=int, help="idle sockets for `sockets` (default 1000)")
    parser.add_argument(
        "--e2e-rate", type=float, action="append", help="target purchases/s for `e2e` (repeatable)"
    )
    parser.add_argument("--seconds", type=float, help="time budget per step (cart, orders, e2e)")
    parser.add_argument("--admin-email", help="with --url: an admin account's email")
    parser.add_argument("--admin-password", help="with --url: its password")
    parser.add_argument(
        "--demo-credentials",
        type=Path,
        help="with --url: the service's .bookbazar/demo-credentials.json (admin login)",
    )
    parser.add_argument("--database-url", help="with --url: PostgreSQL URL for the stock check")
    parser.add_argument("--redis-url", help="with --url: Redis URL for the stock check")
    parser.add_argument("--keep", action="store_true", help="keep the temporary service dir")
    parser.add_argument(
        "--api", type=int, default=1, help="API processes to start (more than one: behind HAProxy)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes to start")
    parser.add_argument("--results-dir", type=Path, help="where to write the JSON results")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy flame graphs of the API and the worker per scenario, top self frames",
    )
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.scenario.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)} (choose from {', '.join(SCENARIOS)})")
    if CALIBRATION not in names:
        names.append(CALIBRATION)
    args.scenarios = [s for s in SCENARIOS if s in names]
    return args


def build_profile(args: argparse.Namespace) -> Profile:
    profile = QUICK if args.quick else FULL
    if args.users:
        profile = replace(profile, users=args.users)
    if args.sockets:
        profile = replace(profile, sockets=args.sockets)
    if args.e2e_rate:
        profile = replace(profile, e2e_rates=tuple(args.e2e_rate))
    if args.seconds:
        profile = replace(
            profile, cart_seconds=args.seconds, order_seconds=args.seconds, e2e_seconds=args.seconds
        )
    return profile


def _raise_fd_limit() -> None:
    """Thousands of sockets: lift the soft open-file limit (the service inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


RUNNERS: dict[str, Callable[[Context], Awaitable[ScenarioResult]]] = {
    "healthz": run_healthz,
    "idle": run_idle,
    "catalog": run_catalog,
    "cart": run_cart,
    "orders": run_orders,
    "hot-book": run_hot_book,
    "e2e": run_e2e,
    "sockets": run_sockets,
}


async def run_all(
    service: Service, profile: Profile, scenarios: list[str], profiler: Profiler
) -> dict[str, Any]:
    fixtures = Fixtures(service)
    drainer = Drainer(service.redis_url, service.database_url)
    if not drainer.available:
        print("[drain] no Redis/PostgreSQL URL: the worker is drained by its CPU alone")
    ctx = Context(
        service=service,
        fixtures=fixtures,
        meter=Meter(service, drainer, profiler),
        checker=StockChecker(service.database_url, service.redis_url),
        profile=profile,
    )
    try:
        return await _run_scenarios(ctx, scenarios)
    finally:
        await drainer.close()


async def _run_scenarios(ctx: Context, scenarios: list[str]) -> dict[str, Any]:
    service, fixtures, profile = ctx.service, ctx.fixtures, ctx.profile
    needed = profile.users
    if "hot-book" in scenarios:
        needed = max(needed, profile.hot_buyers)
    t0 = time.monotonic()
    await fixtures.ensure_users(needed)
    setup_s = time.monotonic() - t0
    results: list[dict[str, Any]] = []
    for name in scenarios:
        print(f"\n>>> scenario {name}")
        offset = log_size(service.log_path)
        t1 = time.monotonic()
        try:
            result = await RUNNERS[name](ctx)
        except Exception as exc:  # one broken scenario must not hide the others' figures
            result = ScenarioResult(name, skipped=f"failed: {exc!r}")
            print(f"[{name}] failed: {exc!r}")
        summary = result.summary()
        summary["wall_s"] = round(time.monotonic() - t1, 1)
        summary["service_log"] = scan_log(service.log_path, offset)
        if ctx.meter.profiler is not None:
            summary["profile"] = ctx.meter.profiler.report(name)
        annotate(summary, ctx.baseline)
        print(scenario_tables(summary))
        log = summary["service_log"]
        if log["errors"] or log["warnings"]:
            print(f"service log: {log['errors']} error lines, {log['warnings']} warnings")
            for sample in log["samples"][:5]:
                print(f"  | {sample[:300]}")
        results.append(summary)
    baseline = ctx.baseline.__dict__ if ctx.baseline else None
    rows = [headline(s) for s in results]
    print("\n" + summary_table(rows, baseline))
    return {
        "setup_users_s": round(setup_s, 1),
        "healthz_baseline": baseline,
        "drain_checks_skipped": ctx.meter.drainer.skipped if ctx.meter.drainer else {},
        "scenarios": results,
        "summary": rows,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profile = build_profile(args)
    _raise_fd_limit()
    started = time.monotonic()
    results_dir = args.results_dir or RESULTS_DIR
    stamp = run_stamp(results_dir)
    profiler = Profiler(args.profile, results_dir / stamp)
    env_start = environment()
    print(
        f"Book Bazar benchmarks ({profile.name}): {', '.join(args.scenarios)}; "
        f"{env_start['cpus']} CPUs, load average {env_start['loadavg_1_5_15']}"
    )
    managed: ManagedService | None = None
    doc: dict[str, Any] = {"profile": profile.__dict__, "environment_start": env_start}
    exit_code = 0
    try:
        if args.url:
            service = external_service(
                args.url,
                admin_email=args.admin_email,
                admin_password=args.admin_password,
                credentials_file=args.demo_credentials,
                database_url=args.database_url,
                redis_url=args.redis_url,
            )
        else:
            managed = ManagedService(keep=args.keep, apis=args.api, workers=args.workers)
            service = managed.start()
        doc["service"] = {
            "url": service.base_url,
            "managed": service.managed,
            "pids": {n: g.roots[0].pid for n, g in service.groups.items()},
            "processes": {n: len(g.roots) for n, g in service.groups.items()},
        }
        try:
            import uvloop

            runner: Any = uvloop.run
        except ImportError:
            runner = asyncio.run
        doc.update(runner(run_all(service, profile, args.scenarios, profiler)))
    except KeyboardInterrupt:
        print("\ninterrupted")
        exit_code = 130
    finally:
        if managed is not None:
            code = managed.stop()
            doc.setdefault("service", {})["up_exit_code"] = code
    doc["environment_end"] = environment()
    doc["total_s"] = round(time.monotonic() - started, 1)
    if "scenarios" in doc:
        path = write_results(doc, results_dir, stamp)
        print(f"\nresults: {path}  (total {doc['total_s']} s)")
        if profiler.results:
            print(f"profiles: {profiler.out_dir}/<scenario>-<api|worker>.svg (and .txt stacks)")
        failed = [
            s["scenario"]
            for s in doc["scenarios"]
            if (
                s.get("stock_check")
                and not s["stock_check"]["ok"]
                and not s["stock_check"]["skipped"]
            )
            or (s.get("verdict", {}).get("pass") is False)
        ]
        if failed:
            print(f"CHECKS FAILED: {', '.join(failed)}")
            exit_code = exit_code or 1
    else:
        print(json.dumps(doc, indent=2)[:2000])
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
