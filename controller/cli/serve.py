"""``mlgitops serve``: the model server, as the serving Deployment and ``mlgitops run`` start it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller.cli.options import DataRootOpt, err, fail


def serve(
    champion: Annotated[
        str | None,
        typer.Option(
            "--champion",
            help="Model URI of the champion: models:/<name>/<version>, models:/<name>@<alias> "
            "(resolved at load and on SIGHUP), runs:/..., or a local path. Resolved against "
            "$MLFLOW_TRACKING_URI. Required unless --config is given.",
            envvar="MLGITOPS_SERVE_CHAMPION",
            show_default=False,
        ),
    ] = None,
    challenger: Annotated[
        str | None,
        typer.Option(
            "--challenger",
            help="Model URI of the challenger (optional).",
            envvar="MLGITOPS_SERVE_CHALLENGER",
            show_default=False,
        ),
    ] = None,
    challenger_traffic: Annotated[
        int,
        typer.Option(
            "--challenger-traffic",
            help="Percent of requests (0-100) sent to the challenger. A request with an "
            "X-Routing-Key header always goes to the same model for the same key.",
            envvar="MLGITOPS_SERVE_CHALLENGER_TRAFFIC",
        ),
    ] = 0,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on. Loopback by default, as `mlflow models serve`; the "
            "serving pods pass 0.0.0.0.",
            envvar="MLGITOPS_SERVE_HOST",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on.", envvar="MLGITOPS_SERVE_PORT")
    ] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Server processes sharing the port (each loads the models).",
            envvar="MLGITOPS_SERVE_WORKERS",
        ),
    ] = 1,
    inference_log: Annotated[
        str | None,
        typer.Option(
            "--inference-log",
            help="Delta table to append every request to, one row per input row (the inputs "
            "as columns named by the model's signature, the prediction, version, role, routing "
            "key, latency), in batches; never blocks or fails a prediction. A name under "
            "--data-root (what serving.inferenceTable renders), a path or a URI.",
            envvar="MLGITOPS_SERVE_INFERENCE_LOG",
            show_default=False,
        ),
    ] = None,
    data_root: DataRootOpt = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help='JSON file {"champion": URI, "challenger": URI or null, "challengerTraffic": '
            "PERCENT} that overrides the model flags. Re-read on SIGHUP and when its mtime "
            "changes (checked every second): the new models are loaded, then swapped in without "
            "failing a request; a bad file or a failed load keeps the models in service.",
            envvar="MLGITOPS_SERVE_CONFIG",
            show_default=False,
        ),
    ] = None,
    max_request_bytes: Annotated[
        int,
        typer.Option(
            "--max-request-bytes",
            help="Largest request body accepted; larger ones get 413.",
            envvar="MLGITOPS_SERVE_MAX_REQUEST_BYTES",
        ),
    ] = 10 * 1024 * 1024,
    predict: Annotated[
        str,
        typer.Option(
            "--predict",
            help="Where predictions run: auto (on the event loop for models measured fast at "
            "load, else in a thread pool), inline, or thread.",
            envvar="MLGITOPS_SERVE_PREDICT",
        ),
    ] = "auto",
) -> None:
    """Serve a champion (and optionally a challenger) over MLflow's scoring protocol.

    POST /invocations takes what `mlflow models serve` takes (JSON dataframe_split,
    dataframe_records, instances, inputs, with params; CSV) and answers the same
    {"predictions": ...}. Every response names the model that answered in X-Model-Version and
    X-Model-Role, and carries X-Request-Id. GET /ping is 200 once every model is loaded (503
    before), /health is liveness, /version lists the models served, /metrics is Prometheus.
    SIGHUP re-reads the configuration and swaps models with zero failed requests.
    """
    from controller.serving.config import (
        ConfigError,
        ServeSettings,
        ServingConfig,
        load_config_file,
    )

    if inference_log is not None:
        inference_log = _table(inference_log, data_root)
    try:
        if config is not None:
            initial = load_config_file(config)
            if champion is not None:
                err.print(f"note: --config {config} overrides --champion and --challenger")
        elif champion is None:
            fail(["--champion: required (or --config FILE)"])
        else:
            initial = ServingConfig(
                champion=champion,
                challenger=challenger,
                challenger_traffic=challenger_traffic,
            )
        settings = ServeSettings(
            config=initial,
            config_file=config.resolve() if config is not None else None,
            host=host,
            port=port,
            workers=workers,
            inference_log=inference_log,
            max_request_bytes=max_request_bytes,
            predict=predict,
        )
    except ConfigError as exc:
        message = str(exc)
        if config is None:  # name the flags, not the config file's keys
            for key, flag in (
                ("challengerTraffic", "--challenger-traffic"),
                ("challenger:", "--challenger:"),
                ("champion:", "--champion:"),
            ):
                message = message.replace(key, flag, 1) if message.startswith(key) else message
        fail([message])
    from controller.serving.process import run as run_server

    raise typer.Exit(run_server(settings))


def _table(name: str, data_root: str | None) -> str:
    """The inference table's URI: a relative name under the data root, as the batch job does."""
    from controller.cli.options import state_for
    from controller.errors import JobError
    from controller.lake.tables import table_uri

    try:
        return table_uri(name, data_root or str(state_for(None).tables))
    except JobError as exc:
        fail([f"--inference-log: {exc}"])
