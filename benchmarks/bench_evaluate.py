"""`aromatrack evaluate` on the demo cohort with its FIT files: the code before issue 16 against this tree, in one
run, on the same cohort file.

"Before" is the tree at `--baseline` (default: the commit issue 16 was filed against), extracted with `git
archive` and run with this checkout's virtualenv (the same packages; its `aromatrack` package shadows the
editable install through PYTHONPATH). Each `evaluate` runs as a subprocess and is measured by the kernel
(`wait4`: user + system CPU of the process and of its worker processes, wall time, peak RSS); the machine is
shared, so CPU time is the figure and wall time is printed with the load average beside it.

The summaries must not change: the same run decodes every `--compare-every`-th FIT upload of the cohort in both
trees and compares the `workout.summary` each makes of it, byte for byte and to 9 significant digits (the alerts
themselves differ between the trees where rules changed since the baseline; their counts are printed).
Usage: python benchmarks/bench_evaluate.py [--athletes 50 --days 182] [--workers 1,2] [--compare-every 10]
(needs `make corpus`; the full cohort's baseline takes ~4-5 min of CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "2378b48"  # main when issue 16 was filed: garmin-fit-sdk, an object per record
PACKAGES = ("domain", "schemas", "streams", "services", "deploy")

# Runs in either tree: the summaries of every n-th upload of a cohort file, one JSON list per upload.
SUMMARIES = """
import json, sys
from aromatrack.schemas.events import WorkoutFit, parse_event
from aromatrack.streams import fit
path, every = sys.argv[1], int(sys.argv[2])
uploads = [line for line in open(path) if '"workout.fit"' in line][::every]
for line in uploads:
    event = parse_event(line)
    data = fit.fit_payload(event)
    decoded = fit.decode_fit(data)
    if hasattr(fit, "upload_summaries"):
        summaries = fit.upload_summaries(decoded, event.athlete_id, data)
    else:  # before multisport files: one summary per file
        summaries = [fit.upload_summary(decoded, event.athlete_id, data)]
    print(json.dumps(summaries, sort_keys=True))
"""


def baseline_tree(revision: str, scratch: Path) -> Path:
    """The baseline's packages laid out as `aromatrack.*` under scratch; the directory to put on PYTHONPATH."""
    source = scratch / "source"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    package = scratch / "path" / "aromatrack"
    package.mkdir(parents=True)
    (package / "__init__.py").touch()
    for name in PACKAGES:
        (package / name).symlink_to(source / name)
    return scratch / "path"


def measured(args: list[str], env: dict[str, str], stdout: Path) -> dict:
    """Run a command; its CPU (self and waited-for children), wall time and peak RSS from the kernel."""
    load = os.getloadavg()[0]
    started = time.monotonic()
    with stdout.open("wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(args)} exited with status {status}")
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": time.monotonic() - started,
            "max_rss_mb": usage.ru_maxrss / 1024, "load": (load + os.getloadavg()[0]) / 2,
            "lines": len(stdout.read_bytes().splitlines())}


def make_cohort(athletes: int, days: int, path: Path) -> None:
    from aromatrack.services import cohort
    from aromatrack.services.demo import CORPUS

    events = cohort.generate(athletes=athletes, days=days, seed=7, recordings=cohort.FitRecordings.load(CORPUS))
    path.write_text("".join(json.dumps(event) + "\n" for event in events))


def main() -> None:
    if sys.argv[1:2] == ["--make-cohort"]:
        make_cohort(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--athletes", type=int, default=50)
    parser.add_argument("--days", type=int, default=182)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--workers", default="1,2", help="this tree's evaluate --workers values, comma-separated")
    parser.add_argument("--compare-every", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as scratch_name:
        scratch = Path(scratch_name)
        cohort_file = scratch / "cohort.jsonl"
        # In a child process: a child's peak RSS as the kernel reports it starts from its parent's at fork.
        subprocess.run([sys.executable, __file__, "--make-cohort", str(args.athletes), str(args.days), str(cohort_file)],
                       check=True)
        uploads = sum('"workout.fit"' in line for line in cohort_file.open())
        print(f"cohort: {args.athletes} athletes x {args.days} days, seed 7: {cohort_file.stat().st_size / 1e6:.1f} MB,"
              f" {uploads} FIT uploads; {os.cpu_count()} CPUs")
        base_env = {**os.environ, "PYTHONPATH": str(baseline_tree(args.baseline, scratch))}
        here_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        python = [sys.executable, "-c", "import sys; from aromatrack.services.cli import main; sys.argv[0] = 'aromatrack'; main()"]

        runs = {f"before ({args.baseline})": measured([*python, "evaluate", "--json", str(cohort_file)], base_env,
                                                      scratch / "before.txt")}
        for workers in args.workers.split(","):
            runs[f"after, --workers {workers}"] = measured(
                [*python, "evaluate", "--json", "--workers", workers, str(cohort_file)], here_env, scratch / f"after{workers}.txt")
        before = next(iter(runs.values()))
        print("| evaluate | CPU s | x less CPU | wall s | load | max RSS MB | alerts |")
        print("|---|---|---|---|---|---|---|")
        for name, run in runs.items():
            print(f"| {name} | {run['cpu_s']:.1f} | {before['cpu_s'] / run['cpu_s']:.2f}x | {run['wall_s']:.1f} | "
                  f"{run['load']:.1f} | {run['max_rss_mb']:.0f} | {run['lines']} |")

        compare = [sys.executable, "-c", SUMMARIES, str(cohort_file), str(args.compare_every)]
        old = subprocess.run(compare, env=base_env, capture_output=True, check=True).stdout.splitlines()
        new = subprocess.run(compare, env=here_env, capture_output=True, check=True).stdout.splitlines()
        exact = sum(a == b for a, b in zip(old, new))
        close = sum(rounded(json.loads(a)) == rounded(json.loads(b)) for a, b in zip(old, new))
        print(f"summaries of every {args.compare_every}th upload ({len(old)}): {exact} byte-identical in both trees, "
              f"{close} equal to 9 significant digits" + ("" if close == len(old) == len(new) else " -- DIFFERENT"))


def rounded(value: object) -> object:
    """Floats to 9 significant digits (TRIMP and hrTSS are summed in another order since issue 16: the last
    digits of a double differ), everything else as it is."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, list):
        return [rounded(item) for item in value]
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return value


if __name__ == "__main__":
    main()
