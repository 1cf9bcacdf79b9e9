"""The documents a team keeps in Git: ``Environment`` and ``ModelDeployment``.

These pydantic models are the single definition of the contract: the loader validates YAML with
them, the CRDs under ``manifests/crds`` are generated from them, and the planner reads them. Field
names are camelCase on the wire (Kubernetes convention) and snake_case in Python. Unknown fields
are errors, so a typo never silently turns into a default.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from controller.api.where import parse_where

API_VERSION = "mlgitops.io/v1alpha1"
GROUP = "mlgitops.io"

_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_IDENT = r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$"
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_\-]*"
_VERSION = re.compile(r"^[1-9][0-9]*$")


class Model(BaseModel):
    """Base for every document part: camelCase aliases, unknown fields forbidden."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


def _version(value: Any) -> Any:
    # YAML reads `version: 3` as an int; a registry version is a positive integer either way.
    if isinstance(value, bool):
        raise ValueError('must be a registry version number such as "3"')
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not _VERSION.match(value):
        raise ValueError(f'must be a registry version number such as "3", got {value!r}')
    return value


# int-or-string in the CRD too, so `kubectl apply` accepts exactly what `mlgitops validate` does;
# pattern applies to a string, minimum to an integer.
VersionNumber = Annotated[
    str,
    BeforeValidator(_version),
    WithJsonSchema({"type": ["integer", "string"], "minimum": 1, "pattern": "^[1-9][0-9]*$"}),
]


def _cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(f'{value!r} is not a valid cron schedule (5 fields, e.g. "0 3 * * 0")')
    return value


Schedule = Annotated[str, AfterValidator(_cron)]

# A Delta table named in a document: <catalog>/<schema>/<table> under the Environment's data
# root, never a path or a URI, so no document can reach outside the lake (`..`, an absolute path,
# another bucket). Which catalogs a document may name is the loader's check.
TableName = Annotated[
    str,
    Field(
        pattern=rf"^{_SEGMENT}/{_SEGMENT}/{_SEGMENT}$",
        description="<catalog>/<schema>/<table> under the Environment's dataRoot.",
    ),
]


class ObjectMeta(Model):
    name: str = Field(pattern=_NAME, max_length=63)
    namespace: str | None = Field(default=None, pattern=_NAME, max_length=63)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    # Kubernetes adds these to objects read from a cluster; documents in Git leave them out.
    model_config = ConfigDict(extra="ignore")


# --- Environment ---------------------------------------------------------------------------


def _carries_credentials(url: str) -> bool:
    return bool(_USERINFO.search(url) or _SECRET_PARAM.search(url))


def _no_credentials(value: str | None) -> str | None:
    # A credential in Git is leaked to everyone who can read the repository, and from there
    # into every object and pod the controller renders: refuse it where it is written.
    if value is not None and _carries_credentials(value):
        raise ValueError(
            "must not carry credentials (user:password@ or a token parameter): put them in the "
            "Secret mlgitops-mlflow (keys token, or username and password), which the operator "
            "and its pods read as MLFLOW_TRACKING_TOKEN / _USERNAME / _PASSWORD"
        )
    return value


_USERINFO = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://[^/@\s]+@")
_SECRET_PARAM = re.compile(r"(?i)[?&](token|password|secret|access_key)=")


class RegistrySpec(Model):
    tracking_uri: Annotated[str | None, AfterValidator(_no_credentials)] = Field(
        default=None,
        description="MLflow tracking/registry URI, without credentials (those come from the "
        "Secret mlgitops-mlflow). Omitted: the embedded SQLite store.",
    )


class WriteBackSpec(Model):
    branch: str = "main"
    author: str = Field(default="mlgitops <mlgitops@localhost>", pattern=r"^[^<>]+ <[^<>]+>$")


# What the controller can tell a notification endpoint about. The controller decides when each
# happens; an endpoint lists the ones it wants.
NotificationEvent = Literal[
    "ValidationFailed",
    "ChallengerProposed",
    "PromotionCommitted",
    "AwaitingApproval",
    "RollbackDetected",
    "TrainingFailed",
    "SyncStalled",
    "DriftDetected",
    "QualityBreached",
    "RetrainingDue",
]
NOTIFICATION_EVENTS: tuple[str, ...] = get_args(NotificationEvent)

# Secrets reach the controller as environment variables, and a document may name only these:
# otherwise a line in Git could have the controller sign with, or send to an address made of,
# another credential it holds (MLFLOW_TRACKING_TOKEN). On Kubernetes the operator gets every key
# of the Secret mlgitops-notifications under this prefix.
NOTIFY_ENV_PREFIX = "MLGITOPS_NOTIFY_"
NOTIFY_SECRET = "mlgitops-notifications"
EnvVarName = Annotated[
    str,
    Field(
        pattern=rf"^{NOTIFY_ENV_PREFIX}[A-Z0-9_]+$",
        max_length=253,
    ),
]
_FROM_ENV = (
    f"an environment variable of the controller named {NOTIFY_ENV_PREFIX}*; on Kubernetes, key "
    f"<NAME> of the Secret {NOTIFY_SECRET} is {NOTIFY_ENV_PREFIX}<NAME>."
)

_HTTP_URL = re.compile(r"^https?://[^/\s?#]+(?:[/?#]\S*)?$")
# Slack's incoming-webhook URLs are bearer credentials (Slack revokes those it finds in public
# repositories).
_SLACK_HOOK = re.compile(r"^https?://hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/")


def _notification_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not _HTTP_URL.match(value):
        raise ValueError(f"must be an http:// or https:// URL, got {value.split('?')[0]!r}")
    if _carries_credentials(value):
        raise ValueError(
            "must not carry credentials (user:password@ or a token parameter): give the whole "
            f"URL through urlEnv (a variable from the Secret {NOTIFY_SECRET} on Kubernetes), "
            "and sign json bodies with tokenEnv"
        )
    if _SLACK_HOOK.match(value):
        raise ValueError(
            "is a Slack webhook URL, which is itself a credential: put it in the Secret "
            f"{NOTIFY_SECRET} (or the controller's environment) and name the variable in urlEnv"
        )
    return value


class NotificationEndpoint(Model):
    """One HTTP endpoint that receives the events it lists, as a Slack message or signed JSON."""

    name: str = Field(pattern=_NAME, max_length=63, description="Names it in logs and metrics.")
    url: Annotated[str | None, AfterValidator(_notification_url)] = Field(
        default=None,
        description="Where to POST, without credentials. Exactly one of url and urlEnv.",
    )
    url_env: EnvVarName | None = Field(
        default=None,
        description="For a URL that is itself a secret (a Slack webhook): the URL is in "
        + _FROM_ENV,
    )
    format: Literal["json", "slack"] = Field(
        default="json",
        description="json: the event as JSON, signed (X-Mlgitops-Signature-256); slack: a Slack "
        "incoming-webhook message.",
    )
    events: list[NotificationEvent] = Field(min_length=1, description="The events to send.")
    token_env: EnvVarName | None = Field(
        default=None,
        description="json: the HMAC-SHA256 key the body is signed with is in " + _FROM_ENV,
    )

    @model_validator(mode="after")
    def _consistent(self) -> NotificationEndpoint:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url and urlEnv")
        if self.format == "json" and self.token_env is None:
            raise ValueError(
                "a json endpoint needs tokenEnv: its bodies are signed with HMAC-SHA256 "
                "(X-Mlgitops-Signature-256) so the receiver can tell them from forgeries"
            )
        if self.format == "slack" and self.token_env is not None:
            raise ValueError(
                "slack bodies are not signed (Slack's incoming webhooks take no signature): "
                "drop tokenEnv; the webhook URL is the secret, so give it with urlEnv"
            )
        twice = sorted({e for e in self.events if self.events.count(e) > 1})
        if twice:
            raise ValueError(f"events lists {', '.join(twice)} more than once")
        return self


def _unique_endpoints(value: list[NotificationEndpoint]) -> list[NotificationEndpoint]:
    names = [endpoint.name for endpoint in value]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"endpoint names must be unique: {', '.join(twice)} used more than once")
    return value


class EnvironmentSpec(Model):
    catalog: str = Field(
        pattern=_IDENT, description="Registered models are <catalog>.<schema>.<model>."
    )
    namespace: str = Field(pattern=_NAME, max_length=63, description="Kubernetes namespace.")
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    data_root: str | None = Field(
        default=None,
        min_length=1,
        description="Where the relative table names of ModelDeployments (batchInference, "
        "monitoring, validation, serving.inferenceTable) live: a directory or an object-store "
        "prefix such as s3://bucket/lake, holding <catalog>/<schema>/<table>; environments that "
        "read each other's catalogs (readCatalogs) name the same one. Omitted: <state "
        "dir>/tables on one machine.",
    )
    read_catalogs: list[Annotated[str, Field(pattern=_IDENT)]] = Field(default_factory=list)
    write_back: WriteBackSpec = Field(default_factory=WriteBackSpec)
    notifications: Annotated[list[NotificationEndpoint], AfterValidator(_unique_endpoints)] = Field(
        default_factory=list,
        description="HTTP endpoints told about events (validation, promotion, rollback, ...).",
    )


class Environment(Model):
    api_version: Literal["mlgitops.io/v1alpha1"]
    kind: Literal["Environment"]
    metadata: ObjectMeta
    spec: EnvironmentSpec


# --- ModelDeployment -----------------------------------------------------------------------


class VersionPin(Model):
    version: VersionNumber


QualityMetric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse", "r2"]


class OnlineComparison(Model):
    metric: QualityMetric = Field(
        description="Measured on labeled traffic (monitoring.labels); mae and rmse: lower wins."
    )
    min_change: float = Field(
        default=0.0,
        description="The challenger must beat the champion by at least this much (0: no worse).",
    )
    min_labeled_rows: int = Field(
        default=100, ge=1, description="Each side needs this many labeled rows to be judged."
    )


class PromotionSpec(Model):
    policy: Literal["auto", "manual", "disabled"] = "manual"
    online: OnlineComparison | None = Field(
        default=None,
        description="Promote the challenger when it wins on live traffic (the monitor compares "
        "it with the champion on the same windows) instead of on the offline comparison.",
    )


class TrainingSource(Model):
    repo: str = Field(min_length=1)
    branch: str = "main"
    paths: list[str] = Field(default_factory=lambda: ["**"])


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def _duration(value: Any) -> Any:
    # Seconds as an integer, or "1d", "2h", "90m", "1h30m", "45s".
    if isinstance(value, bool):
        raise ValueError('must be a duration such as "2h", "30m" or a number of seconds')
    if isinstance(value, int):
        return value
    match = _DURATION.match(value) if isinstance(value, str) and value else None
    if match is None or not any(match.groups()):
        raise ValueError(f'must be a duration such as "2h", "30m" or "90s", got {value!r}')
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


Duration = Annotated[
    int,
    BeforeValidator(_duration),
    Field(gt=0),
    WithJsonSchema(
        {
            "type": ["integer", "string"],
            "minimum": 1,
            "pattern": "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
        }
    ),
]


class TrainingSpec(Model):
    source: TrainingSource
    command: list[str] = Field(min_length=1)
    image: str | None = Field(
        default=None,
        description="Image of the training Job (Kubernetes); {commit} is replaced by the code "
        "commit. Omitted: the operator's image.",
    )
    schedule: Schedule | None = Field(
        default=None, description="Also train the branch head at each slot of this cron."
    )
    timeout: Duration = Field(default=7200, description="A run still going after this is ended.")
    retries: int = Field(
        default=2, ge=0, le=10, description="Attempts after a failed one, with backoff."
    )


class DataSpec(Model):
    uri: TableName
    target: str = Field(min_length=1)


class Threshold(Model):
    metric: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None
    min_change_vs_champion: float | None = Field(
        default=None,
        description="The new version must beat the champion's value of the metric by at least "
        "this much (0: be no worse; negative: may be that much worse).",
    )
    min_relative_change_vs_champion: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="The new version must beat the champion by at least this fraction of the "
        "champion's value (0.02: 2% better; 0: no worse).",
    )

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        bounds = (
            self.min,
            self.max,
            self.min_change_vs_champion,
            self.min_relative_change_vs_champion,
        )
        if all(b is None for b in bounds):
            raise ValueError(
                "a threshold needs min, max, minChangeVsChampion or minRelativeChangeVsChampion"
            )
        return self


def _where(value: str) -> str:
    # Parsed at load, so a condition outside the grammar is refused where it is written.
    parse_where(value)
    return value


class Slice(Model):
    name: str = Field(pattern=_IDENT)
    where: Annotated[str, AfterValidator(_where)] = Field(
        min_length=1,
        description="A SQL condition over the validation table's columns: comparisons, AND, OR, "
        "NOT, IN, BETWEEN, LIKE, IS NULL; no function calls or subqueries.",
    )
    thresholds: list[Threshold] = Field(min_length=1)


class ValidationSpec(Model):
    data: DataSpec
    model_type: Literal["classifier", "regressor"] | None = Field(
        default=None,
        description="How the model is evaluated. Omitted: classifier when the target has few "
        "distinct integer, boolean or string values, else regressor.",
    )
    thresholds: list[Threshold] = Field(default_factory=list)
    slices: list[Slice] = Field(default_factory=list)
    required_tags: list[str] = Field(default_factory=list)


class TrafficSpec(Model):
    challenger: int = Field(default=0, ge=0, le=100, description="Percent of requests.")


class ServingSpec(Model):
    enabled: bool = True
    replicas: int = Field(default=1, ge=0, le=100)
    traffic: TrafficSpec = Field(default_factory=TrafficSpec)
    inference_table: TableName | None = Field(
        default=None,
        description="<catalog>/<schema>/<table> under the Environment's dataRoot: every replica "
        "appends each request to this Delta table, one row per input row (request id, time, "
        "model version, role, routing key, latency, status, the inputs as columns named by the "
        "model's signature, the prediction). Omitted: no inference log.",
    )


class BatchInferenceSpec(Model):
    schedule: Schedule
    input: TableName
    output: TableName


class DriftSpec(Model):
    method: Literal["psi", "ks"] = "psi"
    threshold: float = Field(default=0.2, gt=0)


class RetrainSpec(Model):
    violations: int = Field(default=2, ge=1)
    windows: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _fits(self) -> RetrainSpec:
        if self.violations > self.windows:
            raise ValueError("violations cannot exceed windows")
        return self


class LabelsSpec(Model):
    table: TableName = Field(description="Delta table of ground truth that lands later.")
    key: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1,
        description="Columns joining a label to its prediction (in both tables): request_id "
        "(and row) for an inference table, or a business key.",
    )
    target: str = Field(min_length=1, description="The labels table's column with the truth.")
    min_rows: int = Field(
        default=30, ge=1, description="Fewer labeled rows in a window: quality not judged."
    )


class QualityThreshold(Model):
    metric: QualityMetric
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> QualityThreshold:
        if self.min is None and self.max is None:
            raise ValueError("give min or max")
        return self


class MonitoringSpec(Model):
    schedule: Schedule
    baseline: TableName
    input: Literal["batch", "inference"] | None = Field(
        default=None,
        description="What is monitored: batchInference.output or serving.inferenceTable. "
        "Omitted: the batch output when there is batch inference, else the inference table.",
    )
    window: Duration | None = Field(
        default=None,
        description="Windows are time buckets of this length on the score or request time. "
        "Omitted: one window per scored batch (batch input), 1h (inference input).",
    )
    lookback: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Each run computes the newest this many windows again (labels landing late "
        "update their quality; a rerun replaces a window's rows).",
    )
    drift: DriftSpec = Field(default_factory=DriftSpec)
    labels: LabelsSpec | None = None
    model_type: Literal["classifier", "regressor"] | None = Field(
        default=None, description="How quality is measured. Omitted: inferred from the labels."
    )
    quality: list[QualityThreshold] = Field(
        default_factory=list,
        description="A window breaching one counts toward retrain as a drifted window does.",
    )
    retrain: RetrainSpec | None = None

    @model_validator(mode="after")
    def _labels_for_quality(self) -> MonitoringSpec:
        if self.quality and self.labels is None:
            raise ValueError("quality thresholds need labels")
        return self


class ModelDeploymentSpec(Model):
    model: str = Field(
        pattern=r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)?$",
        description="<schema>.<model>; the catalog comes from the Environment.",
    )
    champion: VersionPin | None = None
    challenger: VersionPin | None = None
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    training: TrainingSpec | None = None
    validation: ValidationSpec | None = None
    serving: ServingSpec = Field(default_factory=ServingSpec)
    batch_inference: BatchInferenceSpec | None = None
    monitoring: MonitoringSpec | None = None

    def monitored(self) -> tuple[Literal["batch", "inference"], str | None]:
        """What monitoring reads, as ``monitoring.input`` says: ``("batch",
        batchInference.output)`` or ``("inference", serving.inferenceTable)``; omitted, the batch
        output when there is batch inference, else the inference table. None: no such table."""
        mon = self.monitoring
        source = (mon.input if mon else None) or ("batch" if self.batch_inference else "inference")
        if source == "batch":
            return "batch", self.batch_inference.output if self.batch_inference else None
        return "inference", self.serving.inference_table

    @field_validator("monitoring")
    @classmethod
    def _something_to_monitor(
        cls, mon: MonitoringSpec | None, info: ValidationInfo
    ) -> MonitoringSpec | None:
        # serving and batchInference come before monitoring: validated already (when valid).
        if mon is None or "serving" not in info.data or "batch_inference" not in info.data:
            return mon
        batch, serving = info.data["batch_inference"], info.data["serving"]
        source = mon.input or ("batch" if batch else "inference")
        if source == "batch" and batch is None:
            raise ValueError("input batch monitors batchInference.output: add batchInference")
        if mon.input == "inference" and serving.inference_table is None:
            raise ValueError(
                "input inference monitors serving.inferenceTable: add serving.inferenceTable"
            )
        if source == "inference" and serving.inference_table is None:
            raise ValueError(
                "needs a table to monitor: add serving.inferenceTable (what the model server "
                "logs) or batchInference (its output)"
            )
        return mon

    @model_validator(mode="after")
    def _consistent(self) -> ModelDeploymentSpec:
        if self.challenger and self.champion and self.challenger.version == self.champion.version:
            raise ValueError("challenger.version must differ from champion.version")
        if self.promotion.online and not (self.monitoring and self.monitoring.labels):
            raise ValueError(
                "promotion.online compares on labeled traffic: it needs monitoring.labels"
            )
        # serving.traffic.challenger with no challenger pinned is the share a challenger gets
        # when there is one: all traffic goes to the champion meanwhile. A promotion commit
        # removes the challenger pin and nothing else, so this must stay a valid document.
        return self


class ModelDeployment(Model):
    api_version: Literal["mlgitops.io/v1alpha1"]
    kind: Literal["ModelDeployment"]
    metadata: ObjectMeta
    spec: ModelDeploymentSpec


def registered_name(*, catalog: str, model: str) -> str:
    """The full registry name of ``model`` (``<schema>.<model>``) in ``catalog``."""
    parts = model.split(".")
    return model if len(parts) == 3 else f"{catalog}.{model}"
