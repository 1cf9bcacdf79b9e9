"""What validating a model version asks of MLflow: its facts, its predictions, its metrics.

Validation (``controller.jobs.validation``) decides; this module only talks to MLflow, which no
other package may import. It reads what the registry knows about a version (its run's tags, its
signature and input example), loads the model once, runs ``mlflow.models.evaluate`` on a frame
and returns the metrics, and decides a comparison with the champion with
``mlflow.validate_evaluation_results``.

Evaluations run inside the one validation run (made active here), so MLflow logs their metrics
and plots there: the candidate's overall metrics under their own names, every other evaluation
under a prefix (``slice.<name>.``, ``champion.``). The prefix has no ``/``: MLflow 3.17's
``metric_prefix`` doubles a prefix holding a slash in metric names and fails to write the plots.

A model is other people's code: whatever loading, predicting or evaluating it raises becomes
:class:`~controller.errors.EvaluationFailed`, one line, so it is a failed check and never a
traceback. The registry being unreachable is :class:`~controller.errors.RegistryUnavailable`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import mlflow
import mlflow.artifacts
import mlflow.models
import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import MetricThreshold as _MetricThreshold
from mlflow.models.evaluation import EvaluationResult as _EvaluationResult
from mlflow.models.evaluation.validation import ModelValidationFailedException

from controller.errors import EvaluationFailed, RegistryUnavailable, one_line
from controller.redact import redact
from controller.registry.models import use_tracking_uri

__all__ = ["Session", "VersionFacts", "decide_change", "greater_is_better"]

# MLflow ships these classes without annotations.
MetricThreshold: Any = _MetricThreshold
EvaluationResult: Any = _EvaluationResult

T = TypeVar("T")
_MISSING = ("RESOURCE_DOES_NOT_EXIST",)

# Metrics of MLflow's default evaluator where lower is better; for any other metric, a name
# ending in _error or _loss is lower-is-better and everything else higher-is-better.
_LOWER_IS_BETTER = {
    "log_loss",
    "false_positives",
    "false_negatives",
    "mean_absolute_error",
    "mean_squared_error",
    "root_mean_squared_error",
    "max_error",
    "mean_absolute_percentage_error",
}


def greater_is_better(metric: str) -> bool:
    """Whether a higher value of ``metric`` (an evaluate key) is better."""
    return not (metric in _LOWER_IS_BETTER or metric.endswith(("_error", "_loss")))


@dataclass(frozen=True)
class VersionFacts:
    """What the registry says about one model version."""

    name: str
    version: str
    uri: str  # models:/<name>/<version>
    run_id: str | None
    tags: dict[str, str]
    run_tags: dict[str, str]
    inputs: list[str] | None  # the signature's input columns; None: no signature
    has_input_example: bool
    unreadable: str | None = None  # why its MLmodel could not be read


class LoadedModel:
    """A model loaded once (``mlflow.pyfunc``) and used for every evaluation of a validation."""

    def __init__(self, uri: str, pyfunc: Any) -> None:
        self.uri = uri
        self._pyfunc = pyfunc

    def predict_example(self) -> int:
        """Predict on the model's input example; the number of predictions.
        :class:`EvaluationFailed` when there is none or the model fails on it."""
        example = self._pyfunc.input_example
        if example is None:
            raise EvaluationFailed("the model has no input example to predict on")
        predictions = _guard(
            f"predicting on the input example of {self.uri}", self._pyfunc.predict, example
        )
        return len(predictions) if hasattr(predictions, "__len__") else 1


def _guard(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, MLflow's and the model's own noise silenced; whatever it raises
    becomes one line of :class:`EvaluationFailed`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    except Exception as exc:  # a model is arbitrary code: anything can come out of it
        raise EvaluationFailed(f"{what}: {redact(one_line(exc))}") from None


class Session:
    """MLflow at one tracking URI, for one validation (this process's MLflow default)."""

    def __init__(self, tracking_uri: str) -> None:
        use_tracking_uri(tracking_uri)
        self.display = redact(tracking_uri)
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _call(self, fn: Callable[[], T], *, missing: bool = False) -> T | None:
        try:
            return fn()
        except MlflowException as exc:
            if missing and getattr(exc, "error_code", "") in _MISSING:
                return None
            raise RegistryUnavailable(
                f"registry {self.display}: {redact(one_line(exc, lines=2))}"
            ) from None

    # -- the registry ---------------------------------------------------------------------------

    def version(self, name: str, version: str) -> VersionFacts | None:
        """The facts of ``name`` version ``version``; None when it does not exist."""
        mv = self._call(lambda: self._client.get_model_version(name, version), missing=True)
        if mv is None:
            return None
        run_tags: dict[str, str] = {}
        run_id = str(mv.run_id or "")
        if run_id:
            run = self._call(lambda: self._client.get_run(run_id), missing=True)
            if run is not None:
                run_tags = {str(k): str(v) for k, v in (run.data.tags or {}).items()}
        uri = f"models:/{name}/{version}"
        inputs: list[str] | None = None
        example = False
        unreadable = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                info = mlflow.models.get_model_info(uri)
            if info.signature is not None and info.signature.inputs is not None:
                inputs = [str(n) for n in info.signature.inputs.input_names()]
            example = info.saved_input_example_info is not None
        except Exception as exc:  # a broken or missing MLmodel: the checks say so
            unreadable = redact(one_line(exc))
        return VersionFacts(
            name=name,
            version=str(mv.version),
            uri=uri,
            run_id=mv.run_id or None,
            tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
            run_tags=run_tags,
            inputs=inputs,
            has_input_example=example,
            unreadable=unreadable,
        )

    def alias(self, name: str, alias: str) -> str | None:
        """The version ``alias`` of ``name`` points at now; None when unset."""
        model = self._call(lambda: self._client.get_registered_model(name), missing=True)
        if model is None:
            return None
        found = (model.aliases or {}).get(alias)
        return None if found is None else str(found)

    def load(self, uri: str) -> LoadedModel:
        """The model at ``uri``, loaded; :class:`EvaluationFailed` when it cannot be."""
        return LoadedModel(uri, _guard(f"loading {uri}", mlflow.pyfunc.load_model, uri))

    # -- the validation run ---------------------------------------------------------------------

    @contextmanager
    def active(self, run_id: str) -> Iterator[str]:
        """Make ``run_id`` this process's active run (resumed if it was ended or interrupted):
        evaluations log into it. It ends FINISHED when the block completes, FAILED when it
        raises. Yields the run's artifact URI."""
        try:
            run = mlflow.start_run(run_id=run_id)
        except MlflowException as exc:
            raise RegistryUnavailable(
                f"registry {self.display}: {redact(one_line(exc, lines=2))}"
            ) from None
        with run:
            yield str(run.info.artifact_uri)

    def evaluate(
        self, model: LoadedModel, frame: Any, *, target: str, model_type: str, prefix: str = ""
    ) -> dict[str, float]:
        """``mlflow.models.evaluate`` of ``model`` on ``frame`` (features and ``target``), in the
        active run, metrics named ``prefix`` + key. Returns the finite metrics without prefix."""
        result = _guard(
            f"evaluating {model.uri}",
            mlflow.models.evaluate,
            model=model._pyfunc,
            data=frame,
            targets=target,
            model_type=model_type,
            evaluators=["default"],
            evaluator_config={
                "default": {"log_model_explainability": False, "metric_prefix": prefix}
            },
        )
        metrics: dict[str, float] = {}
        for key, value in result.metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                metrics[str(key).removeprefix(prefix)] = number
        return metrics

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Log ``metrics`` on the active run (non-finite values are left out)."""
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        if finite:
            self._call(lambda: mlflow.log_metrics(finite))

    def log_text(self, text: str, path: str) -> str:
        """Write ``text`` as the active run's artifact ``path``; its artifact URI."""
        self._call(lambda: mlflow.log_text(text, path))
        return str(mlflow.get_artifact_uri(path))

    def artifact_uri(self, path: str) -> str:
        """The URI ``path`` has (or will have) among the active run's artifacts."""
        return str(mlflow.get_artifact_uri(path))

    def read_text(self, artifact_uri: str) -> str | None:
        """The text of an artifact; None when it cannot be read."""
        try:
            return str(mlflow.artifacts.load_text(artifact_uri))
        except Exception:  # a missing or unreadable artifact: the caller falls back to tags
            return None


def decide_change(
    *,
    metric: str,
    candidate: float,
    champion: float,
    min_change: float | None = None,
    min_relative_change: float | None = None,
) -> bool:
    """Whether ``candidate`` beats ``champion`` on ``metric`` by at least ``min_change``
    (absolute) or ``min_relative_change`` (a fraction of the champion's magnitude): exactly one
    of the two is given. "Beats" follows the metric's direction (:func:`greater_is_better`).

    Decided by ``mlflow.validate_evaluation_results`` wherever MLflow's ``MetricThreshold`` can
    express it: a positive ``min_change`` (``min_absolute_change``), a ``min_relative_change``
    in [0, 1]; ``min_change`` 0 ("no worse") is ``min_relative_change=0.0``, which MLflow
    checks as ``candidate >= champion``. Two cases it cannot express are decided here with the
    same rule, improvement >= required: a champion value of exactly 0 with a 0 requirement
    (MLflow then demands a strict improvement of 1e-10, so two perfect models would "lose"),
    and a negative ``min_change`` (a tolerance: "may be that much worse"; MLflow refuses
    ``min_absolute_change <= 0``).
    """
    if (min_change is None) == (min_relative_change is None):
        raise ValueError("decide_change: give exactly one of min_change, min_relative_change")
    better = greater_is_better(metric)
    improvement = (candidate - champion) if better else (champion - candidate)
    required = min_change if min_change is not None else min_relative_change
    assert required is not None
    if min_change is not None and min_change < 0:
        return improvement >= min_change
    if required == 0 and champion == 0:
        return improvement >= 0
    if min_change is not None and min_change > 0:
        threshold = MetricThreshold(min_absolute_change=float(min_change), greater_is_better=better)
    else:
        threshold = MetricThreshold(min_relative_change=float(required), greater_is_better=better)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlflow.validate_evaluation_results(
                validation_thresholds={metric: threshold},
                candidate_result=EvaluationResult({metric: candidate}, {}, run_id=""),
                baseline_result=EvaluationResult({metric: champion}, {}, run_id=""),
            )
    except ModelValidationFailedException:
        return False
    return True
