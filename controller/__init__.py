"""mlgitops: Git folders are the desired state of ML models; this package makes the world match.

The public surface is the ``mlgitops`` command (``controller.cli``) and the document models in
``controller.api``. Everything else is internal and may change.
"""

__version__ = "0.1.0"
