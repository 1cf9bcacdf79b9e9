"""Pure parts of the Kubernetes side: drift detection, API paths, webhook signatures."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from controller.kubernetes.client import path_for
from controller.planning.children import contains


@pytest.mark.parametrize(
    ("desired", "live", "same"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, True),  # fields others set (defaults) are not drift
        ({"a": {"b": [1, 2]}}, {"a": {"b": [1, 2], "c": 0}}, True),
        ({"a": 1}, {"a": 2}, False),
        ({"a": 1}, {}, False),
        ({"l": [{"x": 1}]}, {"l": [{"x": 1, "y": 2}]}, True),
        ({"l": [1, 2]}, {"l": [1]}, False),  # a list is atomic: same length, item by item
        ({"l": [1]}, {"l": [1, 2]}, False),
        ({"port": 8000}, {"port": "8000"}, True),
        ({"enabled": False}, {"enabled": None}, False),
    ],
)
def test_contains(desired: object, live: object, same: bool) -> None:
    assert contains(desired, live) is same


def test_paths() -> None:
    assert (
        path_for("apps/v1", "Deployment", "ns", "x") == "/apis/apps/v1/namespaces/ns/deployments/x"
    )
    assert path_for("v1", "Service", "ns", None) == "/api/v1/namespaces/ns/services"
    assert path_for("mlgitops.io/v1alpha1", "ModelDeployment", "ns", "m") == (
        "/apis/mlgitops.io/v1alpha1/namespaces/ns/modeldeployments/m"
    )
    assert path_for("v1", "Namespace", None, "ml-prod") == "/api/v1/namespaces/ml-prod"
    # A namespaced kind in no namespace: the list across every namespace.
    assert path_for("batch/v1", "CronJob", None) == "/apis/batch/v1/cronjobs"


def test_webhook_signature() -> None:
    from controller.sources.webhook import verify_signature

    body = b'{"ref": "refs/heads/main"}'
    good = "sha256=" + hmac.new(b"tok", body, hashlib.sha256).hexdigest()
    assert verify_signature("tok", body, good)
    assert not verify_signature("other", body, good)
    assert not verify_signature("tok", body + b" ", good)
    assert not verify_signature("tok", body, None)
    assert not verify_signature("tok", body, good.replace("sha256=", "sha1="))


def _apply_merge_patch(target: object, patch: object) -> object:
    """RFC 7386, as the API server applies a merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _apply_merge_patch(out.get(key), value)
    return out


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"promotion": {"validating": "3", "waiting": "validating"}}, {"promotion": {}}),
        ({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 2}}),
        ({"conditions": [{"type": "Ready"}, {"type": "Training"}]}, {"conditions": []}),
        ({}, {"training": {"lastRun": {"state": "Succeeded"}}}),
        ({"x": {"y": 1}}, {"x": 5}),
    ],
)
def test_status_merge_patch_turns_the_old_status_into_the_new(
    old: dict[str, object], new: dict[str, object]
) -> None:
    from controller.kubernetes.operator import merge_patch

    assert _apply_merge_patch(old, merge_patch(old, new)) == new
