"""The candidate FIT decoders on the same real corpus in one run: CPU seconds, MB/s, peak extra memory, and
whether the adopted decoder's summaries equal the reference decoder's on every corpus file. `columnar` is this
project's reader of only what the summaries use (streams/fit_columns.py; its message count includes messages it
does not decode); the others decode every message.

Each decoder runs in a fresh subprocess over the whole corpus, so its peak RSS growth is its own (ru_maxrss
delta) and its CPU time is its own (the machine is shared: CPU time, not wall time, is the figure).
The identity check decodes every file through `streams.fit` twice, with `decode_fit` (the columnar reader) and
with garmin-fit-sdk (`decode_fit_salvaging`, the decoder before and the fallback now), and compares the
summary events, the 1 Hz samples and the lap and session counts.
Usage: python benchmarks/bench_fit_decoders.py [--decoders a,b,...]   (needs `make corpus`)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "fit"
DECODERS = ("columnar", "pyfitparsernative", "fitdecode", "garmin-fit-sdk", "fitparse")


def count_messages(decoder: str, data: bytes) -> int:
    """Data messages of one file with one decoder (each decoder's plain read, as its docs show)."""
    import io

    if decoder == "columnar":  # this project's reader of what the summaries use (streams/fit_columns.py)
        from aromatrack.streams.fit_columns import read_columns

        content = read_columns(data)
        assert content is not None, "the columnar reader gave up on a corpus file"
        return content.messages
    if decoder == "pyfitparsernative":
        from pyfitparsernative import parse_fit_bytes

        return len(parse_fit_bytes(data))
    if decoder == "fitparse":
        import fitparse

        return sum(1 for _ in fitparse.FitFile(io.BytesIO(data)).get_messages())
    if decoder == "fitdecode":
        import fitdecode

        with fitdecode.FitReader(io.BytesIO(data)) as reader:
            return sum(1 for frame in reader if frame.frame_type == fitdecode.FIT_FRAME_DATA)
    from garmin_fit_sdk import Decoder, Stream

    found, _ = Decoder(Stream.from_byte_array(bytearray(data))).read(expand_sub_fields=False, merge_heart_rates=False)
    return sum(len(group) for group in found.values())


def decode_all(decoder: str, paths: list[str]) -> dict:
    """Runs inside the subprocess: decode every file, count data messages."""
    files = [Path(path).read_bytes() for path in paths]
    count_messages(decoder, files[0])  # imports outside the timing
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    messages = sum(count_messages(decoder, data) for data in files)
    seconds = time.process_time() - started
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"decoder": decoder, "messages": messages, "seconds": seconds, "peak_extra_mb": peak_mb}


def outcome(decode, data: bytes) -> object:
    """What the pipeline makes of a file with one decoder: summary, samples, laps and sessions, or the refusal."""
    from aromatrack.streams.fit import FitDecodeError, summary_events

    try:
        decoded = decode(data)
    except FitDecodeError:
        return "refused"
    if not decoded.workouts:
        return decoded.weigh_ins
    samples = tuple(workout.samples for workout in decoded.workouts)
    return summary_events(decoded, "bench"), samples, decoded.laps, decoded.sessions


def identical_summaries(paths: list[str]) -> list[str]:
    """Corpus files whose outcome through `decode_fit` (the columnar reader; the native decoder where it gives
    up) differs from garmin-fit-sdk's (empty: identical everywhere)."""
    from aromatrack.streams.fit import decode_fit, decode_fit_salvaging

    return [path for path in paths if outcome(decode_fit, Path(path).read_bytes()) != outcome(decode_fit_salvaging, Path(path).read_bytes())]


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(decode_all(sys.argv[2], sys.argv[3:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoders", default=",".join(DECODERS), help="comma-separated subset of " + ", ".join(DECODERS))
    decoders = parser.parse_args().decoders.split(",")
    paths = sorted(str(p) for p in CORPUS.rglob("*") if p.suffix.lower() == ".fit")
    if not paths:
        sys.exit(f"no FIT corpus under {CORPUS}; run `make corpus`")
    megabytes = sum(Path(p).stat().st_size for p in paths) / 2**20
    print(f"corpus: {len(paths)} files, {megabytes:.1f} MB")
    results = {}
    for decoder in decoders:
        output = subprocess.run([sys.executable, __file__, "--child", decoder, *paths], capture_output=True, text=True, check=True)
        results[decoder] = result = json.loads(output.stdout)
        print(
            f"{decoder:18s} {result['messages']:8d} msgs  {result['seconds']:7.1f} s CPU  "
            f"{result['messages'] / result['seconds']:8.0f} msgs/s  {megabytes / result['seconds']:5.2f} MB/s  "
            f"peak +{result['peak_extra_mb']:.0f} MB"
        )
    if "garmin-fit-sdk" in results:
        for decoder, result in results.items():
            print(f"{decoder:18s} {results['garmin-fit-sdk']['seconds'] / result['seconds']:5.1f}x garmin-fit-sdk's speed")
    different = identical_summaries(paths)
    print(f"decode_fit vs garmin-fit-sdk through streams.fit: {len(paths) - len(different)} of {len(paths)} files identical"
          " (summary, samples, laps, sessions)")
    for path in different:
        print(f"  differs: {path}")


if __name__ == "__main__":
    main()
