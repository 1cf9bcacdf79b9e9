"""The Kubernetes runtime: the engine as a kopf operator, Kubernetes as the distributed engine.

``operator`` holds the kopf handlers (the only importer of kopf) and the operator's per-run
state; ``deployment`` is one ModelDeployment's pass (aliases, children, prune, status);
``gitsync`` applies an environment folder from Git as objects; ``training`` and ``validation``
run training and validation as Jobs; ``client`` is the only importer of the Kubernetes client;
``http`` serves metrics, probes and the webhook; ``metrics`` holds them.
"""
