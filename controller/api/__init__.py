"""The documents (spec) and their status: the contract every other module builds on."""

from controller.api.documents import (
    API_VERSION,
    GROUP,
    Environment,
    EnvironmentSpec,
    ModelDeployment,
    ModelDeploymentSpec,
    registered_name,
)
from controller.api.status import Condition, HistoryEntry, ModelDeploymentStatus, VersionStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "Condition",
    "Environment",
    "EnvironmentSpec",
    "HistoryEntry",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "VersionStatus",
    "registered_name",
]
