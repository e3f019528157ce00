"""The OpenAPI document tells the truth: every status documented, and fuzzing finds no lie.

Fuzzing: schemathesis 4 against app.openapi(), in process (its ASGI transport, lifespan run),
with the Ollama double behind the app. Positive cases (schema-valid bodies) and negative ones
(schema-invalid bodies) for every operation; hypothesis is derandomized (fixed seed, no example
database) so a CI run does not depend on an earlier one.
Checks run on every response:

  not_a_server_error           no 5xx at all (the double is healthy, so even the documented
                               upstream 502/503/504 must not occur)
  status_code_conformance      the status is documented for the operation
  content_type_conformance     the Content-Type is documented for that status
  response_schema_conformance  JSON bodies match the documented schema
  response_headers_conformance documented headers (Retry-After on 429) are present and valid
  ignored_auth                 positive cases: the same request without a key, and with a wrong
                               one, is refused (401)
  negative_data_rejection      negative cases: a schema-invalid request is refused with 4xx
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.factory import create_app
from tests.app.harness import AUTH, figure, gateway_settings

COMMON = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
POSITIVE_CHECKS = [*COMMON, ignored_auth]
NEGATIVE_CHECKS = [*COMMON, negative_data_rejection]
POSITIVE_EXAMPLES = 100
NEGATIVE_EXAMPLES = 80
MIN_CASES = 1000

# Every status each route can answer (from the code), to hold the document to.
GENERATION_STATUSES = {"200", "400", "401", "404", "408", "413", "429", "502", "503", "504"}
LISTING_STATUSES = {"200", "400", "401", "404", "408", "413", "502", "503", "504"}


def test_every_status_a_route_can_return_is_documented():
    app = create_app(gateway_settings("http://127.0.0.1:9"))
    paths = app.openapi()["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            documented = set(operation["responses"])
            if path in ("/healthz",):
                assert documented == {"200"}  # no body is read on a public path: no 413
                assert operation["security"] == []
            elif path == "/readyz":
                assert documented == {"200", "503"}
                assert operation["security"] == []
            elif path == "/api/show":  # a question about a model: no slot, no 429
                assert documented == LISTING_STATUSES, path
                assert operation["requestBody"]["required"] is True
            elif method == "post":
                assert documented == GENERATION_STATUSES, path
                assert operation["responses"]["429"]["headers"]["Retry-After"]["required"]
                assert operation["security"] == [{"bearerAuth": []}]
                assert operation["requestBody"]["required"] is True
            else:
                assert documented == LISTING_STATUSES, path
                assert operation["security"] == [{"bearerAuth": []}]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fuzz_the_api_against_its_own_document(double):
    app = create_app(gateway_settings(double.url))
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    cases = {"positive": 0, "negative": 0}
    statuses: dict[int, int] = {}

    def run(operation, mode: GenerationMode, examples: int, checks) -> None:
        strategy = operation.as_strategy(generation_mode=mode)

        @hypothesis.settings(max_examples=examples, deadline=None, derandomize=True,
                             database=None, suppress_health_check=list(HealthCheck),
                             phases=[hypothesis.Phase.generate])
        @hypothesis.given(case=strategy)
        def check(case) -> None:
            response = case.call(headers=AUTH)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            case.validate_response(response, checks=checks, headers=AUTH)
            cases[mode.value] += 1

        check()

    for result in schema.get_all_operations():
        operation = result.ok()
        run(operation, GenerationMode.POSITIVE, POSITIVE_EXAMPLES, POSITIVE_CHECKS)
        if operation.method.upper() == "POST":
            run(operation, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, NEGATIVE_CHECKS)

    total = cases["positive"] + cases["negative"]
    figure("schemathesis cases", f"{total} ({cases['positive']} positive, "
           f"{cases['negative']} negative); statuses {dict(sorted(statuses.items()))}")
    assert total >= MIN_CASES
    assert not [s for s in statuses if s >= 500]
    assert statuses.get(200, 0) > 300  # the fuzz reached Ollama, not only the refusals
