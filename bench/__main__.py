"""`make bench` (python -m bench [--only A,B,...] [--n N] [--big N] [--under-load]): Crier's benchmarks, side by side.

A  bare Celery: a no-op task per recipient, two worker processes (one per core)
B  Crier unthrottled: a real campaign (create conversation + send + record) on the same layout
C  at Teams' limits: Microsoft's published limits enforced by the emulator, with and without
   stored conversations; with --under-load, C with stored conversations while a CPU hog keeps
   every core busy (its rate as a share of 50/s, and the 429s from the app-wide limit)
D  scale: launch to a very large audience, at Teams' pace and unthrottled; materialisation, first message, Redis, worker memory
E  faults: worker kill -9 ×3, a Redis restart, a PostgreSQL restart, and 503/429/timeouts from Teams
F  the API: people uploaded through POST /api/v1/recipients/bulk/ in 10,000-row calls, over HTTP
G  people from Entra ID: a full sync of --directory people from the emulator's Graph, then a delta of 1%
H  installing the app: a campaign to --installs people who never installed it, at Graph's and Teams' limits
I  inbound at scale: --engage people read, acknowledge and like a campaign's message at once, as fast as Crier's
   web server takes them, while another campaign sends at Teams' pace

Everything runs on this machine against its own database (crier_bench) and Redis database 12, but
E restarts the machine's Redis server and PostgreSQL cluster: run it where nothing else needs them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.directory import bench_g  # noqa: E402
from bench.engagement import ENGAGE_CONCURRENCY, ENGAGE_SENDING, ENGAGE_WEB, ENGAGE_WEB_NICE, bench_i  # noqa: E402
from bench.fixtures import RESULTS, prepare_database, setup_django  # noqa: E402
from bench.harness import REDIS_URL, VAR, Processes, base_env  # noqa: E402
from bench.installs import bench_h  # noqa: E402
from bench.scale_and_faults import bench_d, bench_e, bench_f  # noqa: E402
from bench.throughput import bench_a, bench_b, bench_c, bench_c_under_load  # noqa: E402



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="A,B,C,D,E,F,G,H,I", help="benchmarks to run, e.g. A,B")
    parser.add_argument("--n", type=int, default=20_000, help="recipients for A, B, C and E")
    parser.add_argument("--big", type=int, default=1_000_000, help="recipients for D")
    parser.add_argument("--directory", type=int, default=200_000, help="people in the directory for G")
    parser.add_argument("--installs", type=int, default=2_000, help="people without the app for H")
    parser.add_argument("--engage", type=int, default=100_000, help="people who read, acknowledge and like in I")
    parser.add_argument("--engage-sending", type=int, default=ENGAGE_SENDING,
                        help="people of the campaign I sends at Teams' pace meanwhile (it must outlast the engagement)")
    parser.add_argument("--engage-concurrency", type=int, default=ENGAGE_CONCURRENCY,
                        help="people the emulator has act at once in I")
    parser.add_argument("--engage-web", default=ENGAGE_WEB,
                        help="Crier's gunicorn in I: workers, or workers x threads (4, 4x8)")
    parser.add_argument("--engage-web-nice", type=int, default=ENGAGE_WEB_NICE,
                        help="run I's web server at this lower CPU priority (nice), below the workers sending")
    parser.add_argument("--d-seconds", type=float, default=45.0, help="how long D sends before cancelling")
    parser.add_argument("--under-load", action="store_true",
                        help="C runs with stored conversations while a CPU hog keeps every core busy")
    args = parser.parse_args()
    only = {name.strip().upper() for name in args.only.split(",")}

    from emulator.process import start_emulator

    VAR.mkdir(parents=True, exist_ok=True)
    emulator = start_emulator(VAR / "emulator", port=0, limits=False)
    env = base_env(emulator)
    print("preparing the benchmark database", flush=True)
    prepare_database(env)
    setup_django(env)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    processes = Processes(env)
    print(f"  {'':<3} {'measure':<52} {'value':>14}  goal", flush=True)
    try:
        baseline = bench_a(processes, args.n) if "A" in only else None
        if "B" in only or "C" in only:
            bench_b(processes, emulator, args.n, baseline)
        if "C" in only and args.under_load:
            bench_c_under_load(processes, emulator, args.n)
        elif "C" in only:
            bench_c(processes, emulator, args.n)
        if "D" in only:
            bench_d(processes, emulator, args.big, args.d_seconds)
        if "E" in only:
            bench_e(processes, emulator, args.n)
        if "F" in only:
            bench_f(env, 100_000)
        if "G" in only:
            bench_g(env, emulator, args.directory)
        if "H" in only:
            bench_h(processes, emulator, args.installs)
        if "I" in only:
            workers, _, threads = args.engage_web.lower().partition("x")
            bench_i(processes, emulator, args.engage, args.engage_sending, args.engage_concurrency, int(workers),
                    int(threads or 1), args.engage_web_nice)
    finally:
        processes.stop_all()
        emulator.stop()
    (VAR / "results.json").write_text(json.dumps(RESULTS, indent=1))
    print("\nResults (also in var/bench/results.json):")
    for bench, measure, value, goal in RESULTS:
        print(f"  {bench:<3} {measure:<52} {value:>14}  {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
