"""A crashed worker exits even when faust's stop hangs (services/cli.py), so its supervisor can start it again."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from aromatrack.services.cli import exit_when_a_crashed_stop_hangs


def test_a_crashed_worker_whose_stop_hangs_exits_with_status_1_after_the_deadline():
    app = SimpleNamespace(crash_reason=None)
    exited: list[tuple[int, float]] = []
    done = threading.Event()

    def exit(status: int) -> None:
        exited.append((status, time.monotonic()))
        done.set()

    exit_when_a_crashed_stop_hangs(app, deadline_s=0.2, exit=exit)
    time.sleep(0.7)
    assert exited == []  # running normally: never
    crashed_at = time.monotonic()
    app.crash_reason = RuntimeError("fenced")
    assert done.wait(5)
    status, at = exited[0]
    assert status == 1 and at - crashed_at >= 0.2
