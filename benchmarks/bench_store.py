"""The store's cost per API request on its two databases, in one run: the embedded SQLite file against the local
stack's PostgreSQL (`aromatrack stack up` first; AROMATRACK_* env as for the tests).

Per request of the intake path: an Idempotency-Key lookup, a one-event claim, its settlement and the remembered
answer (four transactions); per authenticated request: one token lookup. Sequential (one thread) and with
8 threads over two `Store`s (two API processes' pools), each thread its own athlete.

    .venv/bin/python benchmarks/bench_store.py [--requests 2000] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aromatrack.services.auth import Role, hash_token
from aromatrack.services.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.store_databases import postgres_schema  # noqa: E402  (the tests' schema on the local PostgreSQL)


def intake(store: Store, athlete: str, n: int) -> None:
    scope = f'["{athlete}", "key-{n}"]'
    store.idempotent_response(scope, "fingerprint")
    claimed, _, _ = store.claim_events(athlete, [f"ev-{n}"])
    store.settle_events(athlete, claimed, produced=True)
    store.remember_response(scope, "fingerprint", {"accepted": claimed, "duplicates": []})


def run(url: str, requests: int, threads: int) -> dict[str, float]:
    stores = [Store(url), Store(url)]
    token = stores[0].add_user("ath-bench", Role.ATHLETE)
    token_hash = hash_token(token)
    figures = {}
    for name, threads_used in (("1 thread", 1), (f"{threads} threads", threads)):
        per_thread = requests // threads_used
        run_id = uuid.uuid4().hex[:6]

        def work(index: int) -> None:
            store = stores[index % 2]
            for n in range(per_thread):
                intake(store, f"ath-{run_id}-{index}", n)

        started = time.perf_counter()
        with ThreadPoolExecutor(threads_used) as pool:
            list(pool.map(work, range(threads_used)))
        figures[f"intake, {name}"] = per_thread * threads_used / (time.perf_counter() - started)

        def auth(index: int) -> None:
            for _ in range(per_thread):
                stores[index % 2].token_record(token_hash)

        started = time.perf_counter()
        with ThreadPoolExecutor(threads_used) as pool:
            list(pool.map(auth, range(threads_used)))
        figures[f"token lookup, {name}"] = per_thread * threads_used / (time.perf_counter() - started)
    for store in stores:
        store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.1f} (1-minute average, {os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = run(f"sqlite:///{Path(tmp) / 'api.sqlite3'}", args.requests, args.threads)
    with postgres_schema() as url:
        postgres = run(url, args.requests, args.threads)
    print(f"{'operation':32} {'SQLite /s':>10} {'PostgreSQL /s':>14} {'PG/SQLite':>10}")
    for key in sqlite:
        print(f"{key:32} {sqlite[key]:10.0f} {postgres[key]:14.0f} {postgres[key] / sqlite[key]:10.2f}")
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
