"""``make bench``: botdb's paths beside the raw drivers, in one run, each ratio beside its target.

Each comparison runs in several interleaved rounds (baseline then botdb, botdb then baseline, ...);
the ratio of each round is botdb's rate over the baseline's, and the table shows the medians.
The machine is shared and noisy: quote ratios, not absolute rates.

    python bench/run.py [--rounds N] [--only NAME] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _base import Case, LatencyCase  # noqa: E402


def all_cases() -> list[Case | LatencyCase]:
    """The ``CASES`` and ``LATENCIES`` of the ``cases_*.py`` modules here, in name order."""
    import importlib

    cases: list[Case | LatencyCase] = []
    for path in sorted(HERE.glob("cases_*.py")):
        module = importlib.import_module(path.stem)
        cases.extend(getattr(module, "CASES", []))
        cases.extend(getattr(module, "LATENCIES", []))
    return cases


PG_ADMIN_DSN = os.environ.get("BOTDB_BENCH_PG_DSN", "postgresql://root@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BOTDB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Result:
    name: str
    baseline: str
    target: float | None
    baseline_rates: list[float] = field(default_factory=list)
    botdb_rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "baseline": self.baseline,
            "target": self.target,
            "baseline_rate": statistics.median(self.baseline_rates) if self.ratios else None,
            "botdb_rate": statistics.median(self.botdb_rates) if self.ratios else None,
            "ratio": self.ratio,
            "ratios": self.ratios,
            "meets_target": None
            if self.target is None or self.ratio is None
            else self.ratio >= self.target,
            "skipped": self.skipped,
        }


async def measure(fn: Callable[[], Awaitable[int]]) -> float:
    """Operations per second of one call of ``fn`` (which returns how many it did)."""
    start = time.perf_counter()
    count = await fn()
    return count / (time.perf_counter() - start)


async def run_latency(case: LatencyCase, env: dict[str, Any]) -> Result:
    """A latency case as a row: 'ratio' is the p99 target over the measured p99."""
    result = Result(case.name, "p99 latency (ms)", 1.0)
    try:
        async with case.setup(env) as sample:
            latencies = sorted(await sample())
    except Exception as exc:
        result.skipped = f"{type(exc).__name__}: {exc}"
        return result
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    result.baseline = f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (target p99 < {case.target_p99_ms} ms)"
    result.baseline_rates.append(case.target_p99_ms)
    result.botdb_rates.append(p99)
    result.ratios.append(case.target_p99_ms / p99 if p99 else float("inf"))
    return result


async def run_case(case: Case, env: dict[str, Any], rounds: int) -> Result:
    result = Result(case.name, case.baseline, case.target)
    try:
        async with case.setup(env) as pair:
            baseline, subject = pair
            await baseline()  # warm-up: caches, prepared statements, pool
            await subject()
            for round_number in range(rounds):
                # Alternate which side goes first, so that drift within a round cancels out.
                if round_number % 2:
                    botdb_rate = await measure(subject)
                    base_rate = await measure(baseline)
                else:
                    base_rate = await measure(baseline)
                    botdb_rate = await measure(subject)
                result.baseline_rates.append(base_rate)
                result.botdb_rates.append(botdb_rate)
                result.ratios.append(botdb_rate / base_rate)
            # A case may attach a note to its subject (the recorder's peak memory).
            note = getattr(subject, "note", None)
            if note:
                result.baseline = f"{case.baseline} ({note})"
    except Exception as exc:
        result.skipped = f"{type(exc).__name__}: {exc}"
    return result


async def pg_database() -> str | None:
    try:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except Exception:
        return None
    name = f"botdb_bench_{secrets.token_hex(4)}"
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name


async def drop_pg_database(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    await conn.close()


def render(results: list[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="botdb benchmark (median of interleaved rounds)")
    for column in ("path", "baseline", "baseline/s", "botdb/s", "ratio", "target", ""):
        table.add_column(column, justify="right" if column.endswith("/s") else "left")
    for r in results:
        if r.skipped:
            table.add_row(r.name, r.baseline, "", "", "", "", f"[yellow]skipped: {r.skipped}")
            continue
        d = r.as_dict()
        verdict = {None: "", True: "[green]ok", False: "[red]below"}[d["meets_target"]]
        table.add_row(
            r.name,
            r.baseline,
            f"{d['baseline_rate']:,.0f}",
            f"{d['botdb_rate']:,.0f}",
            f"{d['ratio']:.2f}x",
            f">= {r.target}x" if r.target is not None else "-",
            verdict,
        )
    Console(width=200).print(table)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", action="append", help="run the cases whose name contains this")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    options = parser.parse_args()

    pg_url = await pg_database()
    with tempfile.TemporaryDirectory(prefix="botdb-bench-") as tmp:
        env = {"pg_url": pg_url, "tmp": Path(tmp), "redis_url": REDIS_URL, "sqlite3": sqlite3}
        results = []
        try:
            for case in all_cases():
                if options.only and not any(word in case.name for word in options.only):
                    continue
                if not options.json:
                    print(f"running {case.name} ...", file=sys.stderr)
                if isinstance(case, LatencyCase):
                    results.append(await run_latency(case, env))
                else:
                    results.append(await run_case(case, env, options.rounds))
        finally:
            if pg_url:
                await drop_pg_database(pg_url)
    if options.json:
        print(orjson.dumps([r.as_dict() for r in results], option=orjson.OPT_INDENT_2).decode())
    else:
        render(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
