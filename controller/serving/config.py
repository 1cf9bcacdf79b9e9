"""What the server serves: the champion, the challenger and the split, and how a request is routed.

Pure and import-light (no MLflow), so the CLI can validate a configuration before the slow imports
and the rules are unit-testable. The config file is the swap interface of the local runtime: it
rewrites the file (atomically, by rename) and sends SIGHUP, or lets the one-second mtime poll see
the change. A bad file is rejected whole with a message naming the key; the server keeps serving
what it had.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_KEYS",
    "ConfigError",
    "ServeSettings",
    "ServingConfig",
    "load_config_file",
    "parse_config",
    "routes_to_challenger",
    "routing_bucket",
]

CONFIG_KEYS = ("champion", "challenger", "challengerTraffic")


class ConfigError(ValueError):
    """The serving configuration is invalid; the message names the key and the problem."""


@dataclass(frozen=True)
class ServingConfig:
    """The models to serve. ``challenger_traffic`` is the percent (0..100) sent to the challenger."""

    champion: str
    challenger: str | None = None
    challenger_traffic: int = 0

    def __post_init__(self) -> None:
        _check_uri("champion", self.champion, required=True)
        _check_uri("challenger", self.challenger, required=False)
        traffic = _traffic(self.challenger_traffic, "challengerTraffic")
        if traffic and self.challenger is None:
            raise ConfigError(f"challengerTraffic: is {traffic} but no challenger is set")
        object.__setattr__(self, "challenger_traffic", traffic)

    def to_json(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "challengerTraffic": self.challenger_traffic,
        }


def _check_uri(key: str, value: object, *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a model URI string, got {_kind(value)}")
    if not value.strip():
        raise ConfigError(f"{key}: must not be empty" if required else f"{key}: is empty")
    if value != value.strip():
        raise ConfigError(f"{key}: has leading or trailing whitespace: {value!r}")


def _kind(value: object) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def _traffic(value: object, key: str) -> int:
    """A percent 0..100: an int, an integral float, or a string of digits (from an env var)."""
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+").isdigit():
        number = int(value.strip())
    if number is None:
        raise ConfigError(f"{key}: must be an integer percent from 0 to 100, got {_kind(value)}")
    if not 0 <= number <= 100:
        raise ConfigError(f"{key}: must be between 0 and 100, got {number}")
    return number


def parse_config(data: object, *, source: str = "config") -> ServingConfig:
    """Validate a config document (``{"champion", "challenger", "challengerTraffic"}``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: must be a JSON object, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in CONFIG_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} (expected: {', '.join(CONFIG_KEYS)})"
        )
    if "champion" not in data or data["champion"] is None:
        raise ConfigError(f"{source}: champion: is required (a model URI)")
    try:
        return ServingConfig(
            champion=data["champion"],
            challenger=data.get("challenger"),
            challenger_traffic=data.get("challengerTraffic", 0),
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config_file(path: Path) -> ServingConfig:
    """Read and validate the JSON config file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    return parse_config(data, source=str(path))


def routing_bucket(key: str) -> int:
    """The bucket 0..99 of a routing key: the first 8 bytes of its SHA-256, modulo 100.

    Stable across processes, restarts and machines (unlike ``hash()``), so every replica sends a
    key to the same role; with a split of P percent, buckets 0..P-1 go to the challenger, hence
    raising P only moves keys from the champion to the challenger, never back.
    """
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % 100


def routes_to_challenger(key: str, traffic: int) -> bool:
    return routing_bucket(key) < traffic


DEFAULT_PORT = 8000  # the container port of the serving Deployment (planning/children.py)
DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
PREDICT_MODES = ("auto", "inline", "thread")


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``mlgitops serve`` was started with; JSON-able, to hand to worker processes.

    ``config`` is the initial configuration (from the flags, or the file when ``config_file`` is
    set; the file is re-read on SIGHUP or when its mtime changes). ``predict`` picks where
    predictions run: ``inline`` on the event loop, ``thread`` in the thread pool, ``auto`` inline
    only for models measured fast at load.
    """

    config: ServingConfig
    config_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    inference_log: str | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    predict: str = "auto"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: must be 0..65535, got {self.port}")
        if self.workers < 1:
            raise ConfigError(f"workers: must be at least 1, got {self.workers}")
        if self.max_request_bytes < 1:
            raise ConfigError(f"max-request-bytes: must be positive, got {self.max_request_bytes}")
        if self.predict not in PREDICT_MODES:
            raise ConfigError(
                f"predict: must be one of {', '.join(PREDICT_MODES)}, got {self.predict!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.to_json(),
            "configFile": str(self.config_file) if self.config_file else None,
            "host": self.host,
            "port": self.port,
            "workers": self.workers,
            "inferenceLog": self.inference_log,
            "maxRequestBytes": self.max_request_bytes,
            "predict": self.predict,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServeSettings:
        return cls(
            config=parse_config(data["config"]),
            config_file=Path(data["configFile"]) if data.get("configFile") else None,
            host=data["host"],
            port=int(data["port"]),
            workers=int(data["workers"]),
            inference_log=data.get("inferenceLog"),
            max_request_bytes=int(data["maxRequestBytes"]),
            predict=data["predict"],
        )
