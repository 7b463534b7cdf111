"""All three FIT decoders on the same real corpus in one run: messages/s and peak extra memory.

Each decoder runs in a fresh subprocess per file set, so peak RSS growth is its own (ru_maxrss delta).
Usage: python benchmarks/bench_fit_decoders.py [--limit-mb N]   (needs `make corpus`)
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "fit"


def decode_all(decoder: str, paths: list[str]) -> dict:
    """Runs inside the subprocess: decode every file, count data messages."""
    import io

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    messages = 0
    started = time.perf_counter()
    for path in paths:
        data = Path(path).read_bytes()
        if decoder == "fitparse":
            import fitparse

            messages += sum(1 for _ in fitparse.FitFile(io.BytesIO(data)).get_messages())
        elif decoder == "fitdecode":
            import fitdecode

            with fitdecode.FitReader(io.BytesIO(data)) as reader:
                messages += sum(1 for frame in reader if frame.frame_type == fitdecode.FIT_FRAME_DATA)
        else:
            from garmin_fit_sdk import Decoder, Stream

            found, _ = Decoder(Stream.from_byte_array(bytearray(data))).read(expand_sub_fields=False, merge_heart_rates=False)
            messages += sum(len(group) for group in found.values())
    seconds = time.perf_counter() - started
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"decoder": decoder, "messages": messages, "seconds": seconds, "peak_extra_mb": peak_mb}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(decode_all(sys.argv[2], sys.argv[3:])))
        return
    paths = sorted(str(p) for p in CORPUS.rglob("*") if p.suffix.lower() == ".fit")
    if not paths:
        sys.exit(f"no FIT corpus under {CORPUS}; run `make corpus`")
    megabytes = sum(Path(p).stat().st_size for p in paths) / 2**20
    print(f"corpus: {len(paths)} files, {megabytes:.1f} MB")
    for decoder in ("fitparse", "fitdecode", "garmin-fit-sdk"):
        output = subprocess.run([sys.executable, __file__, "--child", decoder, *paths], capture_output=True, text=True, check=True)
        result = json.loads(output.stdout)
        print(
            f"{decoder:15s} {result['messages']:8d} msgs  {result['seconds']:7.1f} s  "
            f"{result['messages'] / result['seconds']:8.0f} msgs/s  {megabytes / result['seconds']:5.2f} MB/s  "
            f"peak +{result['peak_extra_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
