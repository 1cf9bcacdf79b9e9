"""MLflow's models, as the model server and the jobs use them: resolve, load, read, score.

The registry package is the one place that imports MLflow, and that includes what happens to a
model after it is registered. The server (``controller.serving``) and the jobs
(``controller.jobs``) get from here:

- ``resolve``: ``models:/name@alias`` to the concrete version it names now (an alias is resolved
  once and that version is what runs, so a response or a batch names the version that produced
  it even if the alias moves meanwhile);
- ``load_pyfunc``: the model as ``mlflow.pyfunc`` loads it; ``signature_inputs``: its input
  column names, read from the MLmodel file without loading it;
- the pieces of MLflow's scoring server our server reuses so that it answers exactly as
  ``mlflow models serve`` does (its parsers and serializers, its schema types and its exception).
  Those functions are private to MLflow and carry no annotations: they are typed ``Any`` here,
  and ``tests/integration/test_serving.py`` runs the two servers side by side to catch a change.

Importing this module imports mlflow (seconds, ~125 MiB), which only processes that load models
pay; ``controller.registry`` itself does not import it.
"""

from __future__ import annotations

from typing import Any

import mlflow
import mlflow.models
import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server as _scoring_server
from mlflow.pyfunc.utils.serving_data_parser import is_unified_llm_input
from mlflow.types import ColSpec, DataType, Schema

from controller.registry.client import resolve_model_uri

__all__ = [
    "MLFLOW_VERSION",
    "ColSpec",
    "DataType",
    "MlflowException",
    "Schema",
    "is_unified_llm_input",
    "load_pyfunc",
    "resolve",
    "scoring_server",
    "signature_inputs",
    "use_tracking_uri",
]

MLFLOW_VERSION: str = mlflow.__version__

# MLflow's scoring server module: _parse_json_data, parse_csv_input, parse_parquet_input,
# predictions_to_json, unwrapped_predictions_to_json.
scoring_server: Any = _scoring_server


def use_tracking_uri(uri: str | None) -> None:
    """Make ``uri`` this process's MLflow tracking and registry URI (None: MLflow's default)."""
    if uri is not None:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)


def resolve(uri: str) -> tuple[str, str, str]:
    """``(resolved_uri, name, version)``: ``models:/name/version`` for a registry URI (an alias or
    ``latest`` resolved now); any other URI (a path, ``runs:/``) is returned as all three."""
    if not uri.startswith("models:/"):
        return uri, uri, uri
    return resolve_model_uri(uri)


def load_pyfunc(uri: str) -> Any:
    """The model at ``uri`` (resolve it first), loaded by ``mlflow.pyfunc``.

    Raises whatever MLflow raises when the model cannot be found or loaded.
    """
    return mlflow.pyfunc.load_model(uri)


def signature_inputs(uri: str) -> list[str] | None:
    """The input column names of the model's signature, read from its MLmodel file; None when it
    has no signature. Raises whatever MLflow raises when the model cannot be read."""
    signature = mlflow.models.get_model_info(uri).signature
    if signature is None or signature.inputs is None:
        return None
    return [n for n in signature.inputs.input_names() if isinstance(n, str)]
