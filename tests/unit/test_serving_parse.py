"""The serving configuration and the routing hash: pure rules, no model and no server."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from controller.serving.config import (
    ConfigError,
    ServeSettings,
    ServingConfig,
    load_config_file,
    parse_config,
    routes_to_challenger,
    routing_bucket,
)

# -- the routing hash ----------------------------------------------------------------------------


def test_bucket_is_sha256_based_and_stable_across_processes() -> None:
    # Fixed values: a change here re-routes every user between champion and challenger.
    assert [routing_bucket(k) for k in ("user-42", "", "ключ")] == [29, 52, 24]
    code = "from controller.serving.config import routing_bucket as b; print(b('user-42'))"
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert other.stdout.strip() == "29"  # not Python's salted hash()


def test_buckets_are_uniform() -> None:
    n = 50_000
    counts = Counter(routing_bucket(f"customer-{i}") for i in range(n))
    assert set(counts) == set(range(100))
    expected = n / 100
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    # 99 degrees of freedom: the 99.9th percentile of chi-square is about 148.2.
    assert chi2 < 148.2, chi2
    assert max(abs(c - expected) for c in counts.values()) < 5 * math.sqrt(expected)


def test_raising_the_split_only_moves_keys_to_the_challenger() -> None:
    keys = [f"k{i}" for i in range(2000)]
    at10 = {k for k in keys if routes_to_challenger(k, 10)}
    at30 = {k for k in keys if routes_to_challenger(k, 30)}
    assert at10 < at30
    assert not any(routes_to_challenger(k, 0) for k in keys)
    assert all(routes_to_challenger(k, 100) for k in keys)
    assert abs(len(at30) / len(keys) - 0.30) < 0.05


# -- the config document -------------------------------------------------------------------------


def test_a_full_config() -> None:
    config = parse_config(
        {"champion": "models:/a/2", "challenger": "models:/a/3", "challengerTraffic": 10}
    )
    assert config == ServingConfig("models:/a/2", "models:/a/3", 10)
    assert parse_config(config.to_json()) == config
    assert parse_config({"champion": "models:/a/2", "challenger": None}) == ServingConfig(
        "models:/a/2"
    )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "champion: is required (a model URI)"),
        ({"champion": None}, "champion: is required (a model URI)"),
        ({"champion": ""}, "champion: must not be empty"),
        ({"champion": 3}, "champion: must be a model URI string, got int 3"),
        (
            {"champion": " models:/a/1"},
            "champion: has leading or trailing whitespace: ' models:/a/1'",
        ),
        (
            {"champion": "models:/a/1", "challenger": "models:/a/2", "challengerTraffic": 150},
            "challengerTraffic: must be between 0 and 100, got 150",
        ),
        (
            {"champion": "models:/a/1", "challenger": "models:/a/2", "challengerTraffic": -1},
            "challengerTraffic: must be between 0 and 100, got -1",
        ),
        (
            {"champion": "models:/a/1", "challenger": "models:/a/2", "challengerTraffic": "ten"},
            "challengerTraffic: must be an integer percent from 0 to 100, got str 'ten'",
        ),
        (
            {"champion": "models:/a/1", "challenger": "models:/a/2", "challengerTraffic": 12.5},
            "challengerTraffic: must be an integer percent from 0 to 100, got float 12.5",
        ),
        (
            {"champion": "models:/a/1", "challenger": "models:/a/2", "challengerTraffic": True},
            "challengerTraffic: must be an integer percent from 0 to 100, got bool True",
        ),
        (
            {"champion": "models:/a/1", "challengerTraffic": 10},
            "challengerTraffic: is 10 but no challenger is set",
        ),
        (
            {"champion": "models:/a/1", "challenger_traffic": 10},
            "unknown key(s) challenger_traffic (expected: champion, challenger, challengerTraffic)",
        ),
        (["models:/a/1"], "must be a JSON object, got list"),
    ],
)
def test_config_errors_name_the_key(doc: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, source="serving.json")
    assert str(caught.value) == f"serving.json: {message}"


def test_traffic_from_an_environment_variable_string() -> None:
    assert ServingConfig("m", "c", "25").challenger_traffic == 25  # type: ignore[arg-type]
    assert ServingConfig("m", "c", 25.0).challenger_traffic == 25  # type: ignore[arg-type]


def test_config_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "serving.json"
    with pytest.raises(ConfigError, match=r"serving\.json: cannot read"):
        load_config_file(path)
    path.write_text('{"champion": "models:/a/1",\n "challengerTraffic": }')
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    assert str(caught.value).startswith(f"{path}:2: invalid JSON: Expecting value")
    path.write_text(json.dumps({"challenger": "models:/a/2"}))
    with pytest.raises(ConfigError, match="champion: is required"):
        load_config_file(path)
    path.write_text(json.dumps({"champion": "models:/a/1"}))
    assert load_config_file(path) == ServingConfig("models:/a/1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 70000}, "port: must be 0..65535"),
        ({"workers": 0}, "workers: must be at least 1"),
        ({"max_request_bytes": 0}, "max-request-bytes: must be positive"),
        ({"predict": "gpu"}, "predict: must be one of auto, inline, thread"),
    ],
)
def test_settings_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServeSettings(config=ServingConfig("models:/a/1"), **kwargs)  # type: ignore[arg-type]


def test_settings_round_trip_to_workers(tmp_path: Path) -> None:
    settings = ServeSettings(
        config=ServingConfig("models:/a/1", "models:/a/2", 5),
        config_file=tmp_path / "c.json",
        host="127.0.0.1",
        port=0,
        workers=3,
        inference_log=str(tmp_path / "log"),
        max_request_bytes=1024,
        predict="thread",
    )
    assert ServeSettings.from_json(json.loads(json.dumps(settings.to_json()))) == settings


def test_the_server_listens_on_loopback_unless_told() -> None:
    """As `mlflow models serve`: a laptop's model server is not on the network by default."""
    from controller.serving.config import ServeSettings, ServingConfig

    settings = ServeSettings(config=ServingConfig(champion="models:/m/1"))
    assert settings.host == "127.0.0.1"
