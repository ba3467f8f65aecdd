#!/usr/bin/env python
"""Instructions per record under callgrind: a deterministic companion to run.py.

    python benchmarks/instructions.py              # 40,000 small records per contender
    python benchmarks/instructions.py --n 20000 --contenders floor_emit,cwlhandler
    python benchmarks/instructions.py --n 20000 --contenders cwlhandler,metrics   # put_metric beside logger.info

Wall-clock ratios on a shared machine swing by tens of percent between
repetitions; instruction counts do not.  Each contender runs the ``small``
workload of run.py in its own child (the same ``run.py --one`` code) under
``valgrind --tool=callgrind --separate-threads=yes``, once with N records and
once with none; the difference divided by N is the cost of one record, split
into the application's thread and the others (shipping threads), and the
SHA-256 of SigV4 payload signing (libcrypto), which runs without the GIL.

``metrics`` (opt-in) is ``metrics.put_metric`` instead of ``logger.info``: metrics.py's child, N puts
of one metric into one handler, then ``close()``; its ratio is over cwlhandler's ``logger.info``.

Callgrind runs threads one at a time and counts instructions, not cycles:
it shows how much work each contender does, not how the work overlaps, and it
weighs `rep movsb` copies per byte.  Read it beside run.py's wall-clock ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (the benchmark's own children, endpoint and workload)

CONTENDERS = ["floor_emit", "raw_botocore", "watchtower", "cwlhandler", "metrics"]
# Slowed down by valgrind, watchtower delivered 36,232 of 40,000 records before its
# close() returned, so its counts are not per delivered record: opt-in only.
DEFAULT_CONTENDERS = ["floor_emit", "raw_botocore", "cwlhandler"]
_COST_LINE = re.compile(r"\s*([\d,]+) \([\s\d.]+%\)\s+(.*)")


def thread_costs(path: str) -> Tuple[int, int]:
    """(all instructions, libcrypto's) of one callgrind thread file, by function."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    total = crypto = 0
    for line in out.splitlines():
        m = _COST_LINE.match(line)
        if m and "PROGRAM TOTALS" not in line:
            cost = int(m.group(1).replace(",", ""))
            total += cost
            crypto += cost if "libcrypto" in m.group(2) else 0
    return total, crypto


def measure(contender: str, n: int, endpoint: str, workdir: str) -> Dict[str, int]:
    """Instruction totals of one child run: main thread, other threads, libcrypto (any thread)."""
    out = os.path.join(workdir, f"{contender}.{n}")
    if contender == "metrics":  # metrics.py's child: N put_metric calls
        child = [os.path.join(HERE, "metrics.py"), "--one", "--n", str(n), "--endpoint", endpoint]
    else:
        child = [os.path.join(HERE, "run.py"), "--one", contender, "--workload", "small", "--n", str(n),
                 "--endpoint", endpoint]
    cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}",
           sys.executable] + child
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", PYTHONHASHSEED="0")
    env.pop("AWS_PROFILE", None)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not lines:
        raise SystemExit(f"{contender} (n={n}) failed: exit {p.returncode}\n{p.stderr[-2000:]}")
    report = json.loads(lines[-1])
    received = report.get("events_received", report.get("values_delivered"))
    if received != n:
        raise SystemExit(f"{contender} (n={n}): {received} of {n} events received")
    result = {"main": 0, "other": 0, "crypto": 0}
    for name in sorted(os.listdir(workdir)):
        if name.startswith(os.path.basename(out) + "-"):
            total, crypto = thread_costs(os.path.join(workdir, name))
            result["main" if name.endswith("-01") else "other"] += total  # the first thread is the application's
            result["crypto"] += crypto
    return result


def per_record(contender: str, n: int, endpoint: str, workdir: str, pool: ThreadPoolExecutor) -> Dict[str, float]:
    with_n, without = pool.submit(measure, contender, n, endpoint, workdir), pool.submit(
        measure, contender, 0, endpoint, workdir)
    a, b = with_n.result(), without.result()
    return {key: (a[key] - b[key]) / n for key in a}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40_000, help="records per contender (default 40,000)")
    ap.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                    help=f"comma-separated subset of {','.join(CONTENDERS)} (default: all but watchtower)")
    args = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        print("valgrind (with callgrind_annotate) is needed: apt-get install valgrind", file=sys.stderr)
        return 2
    contenders = args.contenders.split(",")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + [os.path.relpath(sys.argv[0])] + sys.argv[1:])}")
    print(f"workload: small ({args.n:,} records of ~{run.PAD_SMALL} bytes, one thread), "
          "instructions per record = (run with N - run with 0) / N")
    proc, endpoint = run.start_endpoint()
    try:
        with tempfile.TemporaryDirectory() as workdir, ThreadPoolExecutor(2) as pool:
            rows = {c: per_record(c, args.n, endpoint, workdir, pool) for c in contenders}
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"\n  {'contender':<14}{'app thread':>12}{'others':>10}{'all':>10}{'of all, SHA-256':>17}")
    for c, r in rows.items():
        print(f"  {c:<14}{r['main']:>12,.0f}{r['other']:>10,.0f}{r['main'] + r['other']:>10,.0f}{r['crypto']:>17,.0f}")
    floor, cwl, raw = rows.get("floor_emit"), rows.get("cwlhandler"), rows.get("raw_botocore")
    metrics, wt = rows.get("metrics"), rows.get("watchtower")
    ratios = []
    if floor and cwl:
        everything = cwl["main"] + cwl["other"]
        ratios += [
            ("app thread, cwlhandler / floor_emit", cwl["main"] / floor["main"]),
            ("all threads, cwlhandler / floor_emit", everything / floor["main"]),
            ("all threads but SHA-256 (run without the GIL), cwlhandler / floor_emit",
             (everything - cwl["crypto"]) / floor["main"]),
        ]
        if raw:  # raw_botocore formats as the floor does, then ships
            ratios.append(("shipping work per record, cwlhandler / raw_botocore",
                           (everything - floor["main"]) / (raw["main"] + raw["other"] - floor["main"])))
        if wt:
            ratios.append(("all threads, watchtower / floor_emit", (wt["main"] + wt["other"]) / floor["main"]))
    if metrics and cwl:
        ratios += [
            ("app thread, put_metric / cwlhandler's logger.info", metrics["main"] / cwl["main"]),
            ("all threads, put_metric / cwlhandler's logger.info",
             (metrics["main"] + metrics["other"]) / (cwl["main"] + cwl["other"])),
        ]
    if ratios:
        print("\n  ratios (deterministic):")
        for label, value in ratios:
            print(f"  {label + ':':<76}{value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
