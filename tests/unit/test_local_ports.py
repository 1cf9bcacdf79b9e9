"""The embedded runtime's serving ports: from 8600 up, or from ``$MLGITOPS_FIRST_PORT``."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from controller.local.servers import LocalRuntime


def test_ports_start_at_mlgitops_first_port_skip_taken_ones_and_are_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = int(held.getsockname()[1])
        monkeypatch.setenv("MLGITOPS_FIRST_PORT", str(taken))
        runtime = LocalRuntime("prod", tmp_path, "sqlite://")
        fraud = runtime.port_for("fraud-detector")
        churn = runtime.port_for("churn-predictor")
    assert taken < fraud < churn
    again = LocalRuntime("prod", tmp_path, "sqlite://")
    assert again.port_for("fraud-detector") == fraud
    assert json.loads((tmp_path / "ports.json").read_text()) == {
        "prod/fraud-detector": fraud,
        "prod/churn-predictor": churn,
    }


def test_without_mlgitops_first_port_ports_start_at_8600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLGITOPS_FIRST_PORT", raising=False)
    assert LocalRuntime("prod", tmp_path, "sqlite://").port_for("fraud-detector") >= 8600
