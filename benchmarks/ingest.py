"""Ingest throughput and memory: file -> per-minute counts.

    .venv/bin/python benchmarks/ingest.py [--lines 2000000] [--big-factor 10] [--workdir DIR]

Generates a Common Log Format file of about ``--lines`` lines with the project's seeded
generator, times ``ingest_logs`` on it (best of three, in process), times the CLI end to
end (process start and imports included), then measures peak resident memory of the CLI
on that file and on one ``--big-factor`` times larger, to show memory stays flat. A plain
Python regex loop is timed on the same file for comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from forecaster.generate import TrafficProfile, generate_traffic, write_access_log
from forecaster.ingest import ingest_logs

REQUESTS_PER_DAY_AT_5_RPS = 113_000  # measured average of the default profile


def make_log(path: Path, lines: int, seed: int = 0) -> int:
    """Generate a CLF log of exactly ``lines`` lines (a few days more, then cut)."""
    days = max(1, round(1.3 * lines / REQUESTS_PER_DAY_AT_5_RPS))
    traffic = generate_traffic(TrafficProfile(peak_rps=5.0), date(2026, 9, 1), days, seed=seed)
    written = write_access_log(traffic, path, seed=seed, fmt="clf")
    if written < lines:
        raise RuntimeError(f"generated only {written:,} lines")
    data = path.read_bytes()
    cut = -1
    for _ in range(lines):
        cut = data.index(b"\n", cut + 1)
    path.write_bytes(data[: cut + 1])
    return lines


def regex_loop(path: Path) -> int:
    pattern = re.compile(r'^(\S+) \S+ \S+ \[([^\]]+)\] "([^"]*)" (\d{3}) (\S+)')
    counts: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            match = pattern.match(line)
            if match:
                minute = match.group(2)[:17]
                counts[minute] = counts.get(minute, 0) + 1
    return sum(counts.values())


# The child reports VmHWM, its own peak RSS: ru_maxrss would include the parent's memory,
# which Linux carries over into the child's high-water mark across fork and exec.
CHILD = """
import sys
from controller.cli import app
app(["ingest", sys.argv[1], "--freq", "1min", "-o", sys.argv[2]], standalone_mode=False)
status = open("/proc/self/status").read()
print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""


def cli_run(path: Path, out: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of ``surgecast ingest`` in a fresh child process."""
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(out)],
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return time.perf_counter() - start, int(run.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--big-factor", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="surgecast-bench-"))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )

    small = workdir / "small.log"
    t0 = time.perf_counter()
    lines = make_log(small, args.lines)
    print(
        f"generated {lines:,} CLF lines ({small.stat().st_size / 2**20:,.0f} MiB) "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        result = ingest_logs(small, freq="1min")
        timings.append(time.perf_counter() - t0)
        assert result.report.parsed == lines
    best = min(timings)
    print(
        f"ingest_logs, file -> per-minute counts: best {best:.2f} s "
        f"= {lines / best / 1e6:.2f} M lines/s"
    )

    elapsed, _ = cli_run(small, workdir / "small.parquet")
    print(
        f"surgecast ingest CLI end to end (incl. start-up): {elapsed:.2f} s "
        f"= {lines / elapsed / 1e6:.2f} M lines/s"
    )

    t0 = time.perf_counter()
    regex_loop(small)
    loop = time.perf_counter() - t0
    print(f"plain Python regex loop, same file: {loop:.2f} s = {lines / loop / 1e6:.2f} M lines/s")

    print("peak resident memory of the CLI (the file repeated to grow it):")
    data = small.read_bytes()
    big = workdir / "big.log"
    for factor in sorted({1, args.big_factor // 2, args.big_factor} - {0}):
        with open(big, "wb") as out:
            for _ in range(factor):
                out.write(data)
        seconds, rss = cli_run(big, workdir / "big.parquet")
        print(
            f"  {lines * factor:>12,} lines ({big.stat().st_size / 2**30:5.2f} GiB): "
            f"{rss:,.0f} MiB, {lines * factor / seconds / 1e6:.2f} M lines/s end to end"
        )
    big.unlink()
    small.unlink()


if __name__ == "__main__":
    main()
