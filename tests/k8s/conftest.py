"""Registers the ``k8s`` fixture (a running API emulator) for the tests in this package."""

from tests.k8s.fixtures import k8s

__all__ = ["k8s"]
