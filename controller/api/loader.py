"""Turn the files of one environment folder into validated documents, or say exactly what is wrong.

Pure: it takes file contents, not paths on disk, so the same code checks a working tree, a Git
revision or a Kubernetes object. A revision is accepted whole or rejected whole: every problem in
every file is collected and reported together, each with its file, line and field, so one run of
``mlgitops validate`` shows everything a pull request has to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from controller.api.documents import Environment, ModelDeployment, registered_name
from controller.errors import InvalidInput, Problem

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_KINDS = ("Environment", "ModelDeployment")
_IGNORED = {"kustomization.yaml", "kustomization.yml"}


@dataclass(frozen=True)
class Located:
    """Where a document came from, and the line of each of its fields (dotted path -> line)."""

    file: str
    line: int
    lines: Mapping[str, int] = field(default_factory=dict)

    def line_of(self, path: str) -> int:
        """The line of ``path``, or of its nearest ancestor that is present."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rpartition(".")[0]
        return self.line

    def problem(self, path: str, message: str) -> Problem:
        return Problem(self.file, self.line_of(path) or None, path, message)


@dataclass(frozen=True)
class DeploymentDoc:
    doc: ModelDeployment
    at: Located
    registered_model: str


@dataclass(frozen=True)
class DesiredState:
    """One environment at one revision: everything the planner needs from Git."""

    env_name: str
    revision: str
    environment: Environment
    environment_at: Located
    deployments: tuple[DeploymentDoc, ...]

    @property
    def catalog(self) -> str:
        return self.environment.spec.catalog


def _walk(
    node: yaml.Node, path: str, lines: dict[str, int], problems: list[Problem], file: str
) -> None:
    lines.setdefault(path, node.start_mark.line + 1)  # a key's own line wins over its value's
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key in seen:
                problems.append(Problem(file, key_node.start_mark.line + 1, child, "duplicate key"))
            seen.add(key)
            lines.setdefault(child, key_node.start_mark.line + 1)
            _walk(value_node, child, lines, problems, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, f"{path}.{index}", lines, problems, file)


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"{error['msg'].replace('Input should be', 'must be')}, got {error.get('input')!r}"
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg.replace("Input should be", "must be")


def parse_documents(
    file: str, text: str | bytes
) -> tuple[list[tuple[Any, Located]], list[Problem]]:
    """Split one YAML file into (data, location) pairs; YAML errors become problems."""
    problems: list[Problem] = []
    out: list[tuple[Any, Located]] = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[str, int] = {}
            _walk(node, "", lines, problems, file)
            data = loader.construct_document(node)
            out.append((data, Located(file, node.start_mark.line + 1, lines)))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        problems.append(Problem(file, line, None, f"invalid YAML: {what}"))
    except yaml.YAMLError as exc:
        problems.append(Problem(file, None, None, f"invalid YAML: {exc}"))
    finally:
        loader.dispose()
    return out, problems


def _validate(
    model: type[Environment] | type[ModelDeployment],
    data: Any,
    at: Located,
    problems: list[Problem],
) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            path = ".".join(str(part) for part in error["loc"])
            problems.append(at.problem(path, _message(error)))
        return None


def _catalog_problems(md: ModelDeployment, environment: Environment, at: Located) -> list[Problem]:
    """The model, and every table a document names, must be in catalogs the environment may
    use: its own for what it writes, its own or its readCatalogs for what it only reads.

    The tables no field names are derived from written ones, so they stay in the own catalog:
    monitoring reads batchInference.output or serving.inferenceTable and writes its metric
    tables (``<table>_drift``, ``_profile``, ``_quality``) next to it; another environment
    reads those through a read field and its readCatalogs."""
    own = environment.spec.catalog
    problems = []
    parts = md.spec.model.split(".")
    if len(parts) == 3 and parts[0] != own:
        problems.append(
            at.problem(
                "spec.model",
                f"catalog {parts[0]!r} is outside environment {environment.metadata.name!r} "
                f"(catalog {own!r})",
            )
        )
    readable = {own, *environment.spec.read_catalogs}
    spec = md.spec
    tables: list[tuple[str, str, str]] = []  # (field, table, read or write)
    if spec.batch_inference is not None:
        tables.append(("spec.batchInference.input", spec.batch_inference.input, "read"))
        tables.append(("spec.batchInference.output", spec.batch_inference.output, "write"))
    if spec.monitoring is not None:
        tables.append(("spec.monitoring.baseline", spec.monitoring.baseline, "read"))
        if spec.monitoring.labels is not None:
            tables.append(("spec.monitoring.labels.table", spec.monitoring.labels.table, "read"))
    if spec.validation is not None:
        tables.append(("spec.validation.data.uri", spec.validation.data.uri, "read"))
    if spec.serving.inference_table is not None:
        tables.append(("spec.serving.inferenceTable", spec.serving.inference_table, "write"))
    for where, table, may in tables:
        catalog = table.split("/", 1)[0]
        allowed = readable if may == "read" else {own}
        if catalog not in allowed:
            problems.append(
                at.problem(
                    where,
                    f"table {table!r} is in catalog {catalog!r}, which environment "
                    f"{environment.metadata.name!r} may not {may} (allowed: "
                    f"{', '.join(sorted(allowed))})",
                )
            )
    return problems


def load_deployment(
    data: Mapping[str, Any], *, environment: Environment, source: str, revision: str
) -> DesiredState:
    """One ModelDeployment object (e.g. from the Kubernetes API) in ``environment``.

    Same checks as a document in a folder; problems name ``source`` and the field, without a
    line, since an API object has none.
    """
    at = Located(source, 0)
    problems: list[Problem] = []
    md = _validate(ModelDeployment, data, at, problems)
    if md is not None:
        problems.extend(_catalog_problems(md, environment, at))
    if problems or md is None:
        raise InvalidInput(problems, revision)
    full = registered_name(catalog=environment.spec.catalog, model=md.spec.model)
    env_at = Located(f"environment/{environment.metadata.name}", 0)
    return DesiredState(
        environment.metadata.name, revision, environment, env_at, (DeploymentDoc(md, at, full),)
    )


def load_environment(
    files: Mapping[str, str | bytes], *, env_name: str, revision: str, folder: str
) -> DesiredState:
    """Validate the files of ``folder`` (path -> content) as environment ``env_name``.

    Raises ``InvalidInput`` carrying every problem found; returns the desired state otherwise.
    """
    problems: list[Problem] = []
    environments: list[tuple[Environment, Located]] = []
    deployments: list[tuple[ModelDeployment, Located]] = []
    declared_environment = False  # an Environment document was there, valid or not
    for path in sorted(files):
        name = path.rsplit("/", 1)[-1]
        if not name.endswith((".yaml", ".yml")) or name in _IGNORED:
            continue
        docs, file_problems = parse_documents(path, files[path])
        problems.extend(file_problems)
        for data, at in docs:
            if not isinstance(data, dict):
                problems.append(Problem(path, at.line, None, "a document must be a mapping"))
                continue
            kind = data.get("kind")
            if kind == "Environment":
                declared_environment = True
                env = _validate(Environment, data, at, problems)
                if env is not None:
                    environments.append((env, at))
            elif kind == "ModelDeployment":
                md = _validate(ModelDeployment, data, at, problems)
                if md is not None:
                    deployments.append((md, at))
            else:
                problems.append(
                    at.problem("kind", f"must be one of {', '.join(_KINDS)}, got {kind!r}")
                )

    if not files or (not problems and not environments and not deployments):
        raise InvalidInput(
            [Problem(folder, None, None, "no YAML documents in the environment folder")], revision
        )

    environment: Environment | None = None
    environment_at: Located | None = None
    if not declared_environment and not any(p.field == "kind" for p in problems):
        problems.append(Problem(folder, None, "kind", "no Environment document in the folder"))
    for _env, at in environments[1:]:
        first = environments[0][1]
        problems.append(
            at.problem("kind", f"second Environment document (first at {first.file}:{first.line})")
        )
    if environments:
        environment, environment_at = environments[0]
        if environment.metadata.name != env_name:
            problems.append(
                environment_at.problem(
                    "metadata.name",
                    f"Environment is named {environment.metadata.name!r} but lives in folder {env_name!r}",
                )
            )

    resolved: list[DeploymentDoc] = []
    by_model: dict[str, Located] = {}
    by_name: dict[str, Located] = {}
    for md, at in deployments:
        if md.metadata.name in by_name:
            first = by_name[md.metadata.name]
            problems.append(
                at.problem("metadata.name", f"duplicate name (first at {first.file}:{first.line})")
            )
        by_name.setdefault(md.metadata.name, at)
        if environment is None:
            continue
        outside = _catalog_problems(md, environment, at)
        if outside:
            problems.extend(outside)
            continue
        full = registered_name(catalog=environment.spec.catalog, model=md.spec.model)
        if full in by_model:
            first = by_model[full]
            problems.append(
                at.problem("spec.model", f"{full} is already deployed by {first.file}:{first.line}")
            )
            continue
        by_model[full] = at
        resolved.append(DeploymentDoc(md, at, full))

    if problems or environment is None or environment_at is None:
        raise InvalidInput(problems, revision)
    return DesiredState(env_name, revision, environment, environment_at, tuple(resolved))
