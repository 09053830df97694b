"""schemathesis against a running gateway: every described operation gets a bounded, seeded set of
generated requests (derandomized, so CI sees the same ones) — valid ones, then ones that break the
description (wrong types, missing fields, out-of-range values) — each answer checked against the
description: not a 5xx, a documented status, its content type and its schema."""

from __future__ import annotations

import requests
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

# Routes the description leaves out: the admin UI's HTML pages and forms (decision 0018) and the
# stylesheet of /docs.
ADMIN_UI = "/admin"
UNDESCRIBED = {"/docs/static/docs.css"}
# Values that make a described path concrete when checking that the gateway routes it.
SAMPLE_VALUES = {"model": "gpt-4o-mini", "outcome": "success", "path": "page", "user_id": "1"}
EXAMPLES_PER_OPERATION = 20
NEGATIVE_EXAMPLES_PER_OPERATION = 8
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# The metered routes run first, while the test's API key is as it was made; operations that may
# revoke or change that key, end the admin's own login or lock the admin out run last.
RUN_FIRST = ("/openai/", "/anthropic/", "/gemini/", "/api/v1/generate", "/api/v1/balance")
RUN_LAST = ("PATCH /api/v1/keys/{key_id}", "POST /api/v1/keys/{key_id}/rotate", "DELETE /api/v1/keys/{key_id}",
            "POST /api/v1/admin/keys/{key_id}/revoke", "PATCH /api/v1/admin/users/{user_id}",
            "POST /api/v1/auth/password", "POST /api/v1/auth/logout")
REQUEST_TIMEOUT_S = 15


def _headers(operation, auth: dict[str, dict[str, str]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for requirement in operation.definition.raw.get("security", []):
        for name in requirement:
            headers.update(auth.get(name, {}))
    return headers


def _check(operation, base_url: str, session: requests.Session, headers: dict[str, str],
           mode: GenerationMode, examples: int) -> None:
    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate], print_blob=False)
    @given(case=operation.as_strategy(mode))
    def run(case) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT_S)
        case.validate_response(response, checks=CHECKS)

    run()


def run_schemathesis(spec: dict, base_url: str, auth: dict[str, dict[str, str]]) -> list[str]:
    """The failures found (empty: none), one text per operation that failed."""
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    last = list(reversed(RUN_LAST))  # the session's own logout is the very last
    operations.sort(key=lambda operation: (not operation.path.startswith(RUN_FIRST),
                                           -last.index(operation.label) if operation.label in last else -99))
    failures = []
    with requests.Session() as session:
        for mode, examples in ((GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES_PER_OPERATION),
                               (GenerationMode.POSITIVE, EXAMPLES_PER_OPERATION)):
            for operation in operations:
                try:
                    _check(operation, base_url, session, _headers(operation, auth), mode, examples)
                except Unsatisfiable:  # an operation without inputs has nothing to break
                    assert mode is GenerationMode.NEGATIVE, operation.label
                except (Exception, BaseExceptionGroup) as error:  # a failed check, reported with its operation
                    failures.append(f"{mode.value} {operation.label}: {type(error).__name__}: {str(error)[:2000]}")
    return failures
