"""Where models run: ``kubernetes`` (objects in a cluster) and, later, ``local`` (processes)."""
