"""Every domain error in one place, so the boundaries (CLI, operator) map them in one place.

Two families matter to callers: ``InvalidInput`` means the desired state itself is wrong and
retrying will not help (the CLI exits 2, the operator reports Stalled); ``Unavailable`` means a
dependency (Git, the registry) could not be reached and a later retry may succeed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class MlgitopsError(Exception):
    """Base of all errors the controller raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document, located precisely enough to fix it."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


@dataclass
class InvalidInput(MlgitopsError):
    """The revision (or a document in it) is invalid; nothing from it may be applied."""

    problems: list[Problem] = field(default_factory=list)
    revision: str | None = None

    def __str__(self) -> str:
        return "; ".join(str(p) for p in self.problems) or "invalid input"


class Unavailable(MlgitopsError):
    """A dependency could not be reached; the last good state stays in force. Retry later."""

    reason = "Unavailable"


class SourceUnavailable(Unavailable):
    """The Git repository or revision could not be read."""

    reason = "GitUnavailable"


class RegistryUnavailable(Unavailable):
    """The MLflow registry could not be reached or answered with a server error."""

    reason = "RegistryUnavailable"


class ClusterUnavailable(Unavailable):
    """The Kubernetes API server could not be reached or refused a request."""

    reason = "ClusterUnavailable"


class EnvironmentMissing(Unavailable):
    """A ModelDeployment's namespace holds no Environment (yet): retry once one is applied."""

    reason = "EnvironmentNotFound"


class SyncFailed(Unavailable):
    """A Git sync failed in a way nobody foresaw (a bug): retried, and reported as such."""

    reason = "SyncFailed"


class WriteBackFailed(Unavailable):
    """A write-back commit was not pushed: the branch kept moving under it for every attempt,
    or the remote refused it (a protected or checked-out branch, a hook). Nothing was lost."""

    reason = "WriteBackFailed"


class Busy(MlgitopsError):
    """Another mlgitops process holds the environment's lock."""


class JobError(MlgitopsError):
    """A job cannot run as asked: a missing table or alias, or data the model refuses."""


class EvaluationFailed(MlgitopsError):
    """A model could not be loaded, predict or be evaluated: a finding about the model (a
    failed validation check), not a reason to stop."""


def one_line(exc: BaseException | str, *, lines: int = 1, limit: int = 500) -> str:
    """An error as one short line: MLflow's, deltalake's and requests' messages run to pages.

    The first ``lines`` non-blank lines of the message (an ``MlflowException``'s ``message``
    rather than its repr), joined, at most ``limit`` characters; the exception's type when it
    says nothing.
    """
    text = exc if isinstance(exc, str) else str(getattr(exc, "message", None) or exc)
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not kept:
        return type(exc).__name__ if not isinstance(exc, str) else ""
    return " ".join(kept[:lines])[:limit]
