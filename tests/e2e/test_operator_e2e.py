"""The same operator scenarios as tests/integration/test_operator.py, on a real cluster.

Importing the test functions here makes pytest run them with this package's ``cluster`` fixture
(tests/e2e/conftest.py), so both tiers assert exactly the same things; there they also prove
what an emulator cannot: admission by the CRD's schema, garbage collection, the deployment
controller reporting a rollout, and the shipped Role (the operator runs with its
ServiceAccount's token).
"""

from tests.integration.test_operator import (
    operator,
    rollouts,
    test_a_delete_never_waits_for_the_operator,
    test_git_sync_applies_prunes_restores_and_rejects_bad_revisions,
    test_invalid_document_is_stalled_with_the_field_named,
    test_modeldeployment_lifecycle,
)
from tests.integration.test_operator_dashboard import (
    test_the_operator_serves_the_dashboard_from_its_objects_git_and_the_registry,
    test_without_a_config_repository_the_dashboard_reads_the_objects,
)
from tests.integration.test_operator_monitoring import (
    test_the_monitoring_job_alerts_reach_events_and_notifications_once_per_window,
)
from tests.integration.test_operator_promotion import (
    test_a_trained_version_is_validated_by_a_job_then_proposed_and_promoted_through_git,
    test_without_a_config_repository_versions_are_validated_and_a_failed_job_is_reported,
)
from tests.integration.test_operator_training import (
    code,
    server,
    test_a_commit_trains_once_as_a_job_and_its_model_becomes_a_pending_version,
    test_a_failed_job_is_reported,
    test_an_image_without_commit_blocks_training_with_the_field_named,
)

__all__ = [
    "code",
    "operator",
    "rollouts",
    "server",
    "test_a_commit_trains_once_as_a_job_and_its_model_becomes_a_pending_version",
    "test_a_delete_never_waits_for_the_operator",
    "test_a_failed_job_is_reported",
    "test_a_trained_version_is_validated_by_a_job_then_proposed_and_promoted_through_git",
    "test_an_image_without_commit_blocks_training_with_the_field_named",
    "test_git_sync_applies_prunes_restores_and_rejects_bad_revisions",
    "test_invalid_document_is_stalled_with_the_field_named",
    "test_modeldeployment_lifecycle",
    "test_the_monitoring_job_alerts_reach_events_and_notifications_once_per_window",
    "test_the_operator_serves_the_dashboard_from_its_objects_git_and_the_registry",
    "test_without_a_config_repository_the_dashboard_reads_the_objects",
    "test_without_a_config_repository_versions_are_validated_and_a_failed_job_is_reported",
]
