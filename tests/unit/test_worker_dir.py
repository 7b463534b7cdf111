"""Several workers on one host: a worker's directory is its own, and a second worker on it is refused clearly."""

from __future__ import annotations

import os

import pytest
import typer

from aromatrack.services.cli import _hold_worker_dir


def test_a_directory_held_by_a_running_worker_is_refused_with_its_pid(tmp_path, capsys):
    held = _hold_worker_dir(tmp_path / "worker-1")
    try:
        with pytest.raises(typer.Exit):
            _hold_worker_dir(tmp_path / "worker-1")
        assert f"used by a running worker (pid {os.getpid()})" in capsys.readouterr().err
        _hold_worker_dir(tmp_path / "worker-2").close()  # another directory is fine
    finally:
        held.close()
    _hold_worker_dir(tmp_path / "worker-1").close()  # free again once its worker is gone
