"""The model server: MLflow's scoring protocol, champion/challenger split, zero-downtime swaps.

Started by ``mlgitops serve`` (``controller.serving.process.run``). The pieces, lightest first:
``config`` (what is served, the routing hash; no MLflow), ``protocol`` (MLflow's scoring protocol
on one model), ``models`` (loading, through ``controller.registry.models``), ``app`` (the ASGI
app and live swaps), ``process`` (one process or a supervisor of workers), ``metrics``, and
``inference_log`` (the request log, written through ``controller.lake``) with ``inference_rows``
(how a request becomes typed rows of that table, on the log's thread). This package imports
nothing heavy itself, so ``import controller.serving.config`` stays cheap.
"""
