"""``tests.helpers.wait_for``: a broken check fails at once, "not there yet" is retried."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import wait_for


def raising(exc: BaseException) -> Callable[[], Any]:
    def check() -> Any:
        raise exc

    return check


@pytest.mark.parametrize(
    "exc",
    [
        KeyError("status"),
        TypeError("'NoneType' object is not subscriptable"),
        ValueError("x"),
        IndexError("list index out of range"),
        StopIteration(),
        AssertionError("server exited"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_broken_check_fails_at_once_with_its_own_exception(exc: BaseException) -> None:
    calls: list[float] = []

    def check() -> Any:
        calls.append(time.monotonic())
        raise exc

    start = time.monotonic()
    with pytest.raises(type(exc)) as raised:
        wait_for("a key", check, timeout=30)
    assert raised.value is exc
    assert len(calls) == 1
    assert time.monotonic() - start < 5


def test_a_falsy_check_times_out_naming_what_and_the_last_value() -> None:
    calls: list[float] = []

    def check() -> list[str]:
        calls.append(time.monotonic())
        return []

    start = time.monotonic()
    with pytest.raises(AssertionError) as raised:
        wait_for("the answer", check, timeout=0.5, interval=0.05)
    assert 0.5 <= time.monotonic() - start < 5
    assert len(calls) > 2  # polled, not given up after one look
    assert calls[-1] - start >= 0.5  # and looked once more at the deadline
    assert str(raised.value) == "timed out after 0.5 s waiting for the answer; last: []"


def test_on_timeout_text_is_added_to_the_failure() -> None:
    with pytest.raises(AssertionError, match=r"(?s)waiting for a log line; last: None\nthe log$"):
        wait_for(
            "a log line", lambda: None, timeout=0.1, interval=0.05, on_timeout=lambda: "the log"
        )


def test_a_truthy_result_is_returned_at_once() -> None:
    assert wait_for("a dict", lambda: {"phase": "Ready"}, timeout=0) == {"phase": "Ready"}


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        FileNotFoundError(2, "No such file or directory"),
        subprocess.CalledProcessError(1, ["kubectl", "get"]),
    ],
    ids=lambda e: type(e).__name__,
)
def test_io_that_is_not_there_yet_is_retried(exc: BaseException) -> None:
    results: list[Any] = [exc, exc, "up"]

    def check() -> Any:
        result = results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result

    assert wait_for("a server", check, timeout=10, interval=0.01) == "up"
    assert results == []


def test_io_that_never_comes_times_out_naming_the_last_error() -> None:
    with pytest.raises(AssertionError, match=r"waiting for a server; last: ConnectionRefusedError"):
        wait_for("a server", raising(ConnectionRefusedError()), timeout=0.2, interval=0.05)


class ClientError(Exception):
    """A client library's connection error that is no OSError (httpx's, for one)."""


def test_retry_adds_exceptions_that_mean_not_yet() -> None:
    results: list[Any] = [ClientError("refused"), True]

    def check() -> Any:
        result = results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result

    with pytest.raises(ClientError):
        wait_for("a server", raising(ClientError("refused")), timeout=10)
    assert wait_for("a server", check, timeout=10, interval=0.01, retry=(ClientError,)) is True
