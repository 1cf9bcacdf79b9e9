"""The same operator scenarios as tests/integration/test_operator.py, on a real cluster.

Importing the test functions here makes pytest run them with this package's ``cluster`` fixture
(tests/e2e/conftest.py), so both tiers assert exactly the same things.
"""

from tests.integration.test_operator import (
    operator,
    test_git_sync_applies_prunes_restores_and_rejects_bad_revisions,
    test_invalid_document_is_stalled_with_the_field_named,
    test_modeldeployment_lifecycle,
)

__all__ = [
    "operator",
    "test_git_sync_applies_prunes_restores_and_rejects_bad_revisions",
    "test_invalid_document_is_stalled_with_the_field_named",
    "test_modeldeployment_lifecycle",
]
