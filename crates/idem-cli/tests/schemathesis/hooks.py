"""What schemathesis is told beyond /openapi.json, for the `openapi_schemathesis` test.

A payment's payee must differ from its payer. JSON Schema cannot compare two members, so the
document says it in words, and schemathesis, generating valid bodies, sometimes sends an
equal pair. The server must then answer what the document says: 400 `invalid_request`
naming `payee`. Exactly that answer to exactly such a body is not taken for a valid request
refused; any other answer still is, and every other check still runs on it.
"""

import schemathesis


@schemathesis.hook("filter_failure").apply_to(path="/v1/payments", method="POST")
def equal_parties_refused_as_documented(context, failure, case, response):
    body = case.body
    # ST202: a schema-valid request refused; every other check still counts.
    if getattr(failure, "code", None) != "ST202":
        return True
    if not isinstance(body, dict) or "payer" not in body or body.get("payer") != body.get("payee"):
        return True
    try:
        problem = response.json()
    except ValueError:
        return True
    documented = (
        response.status_code == 400
        and response.headers.get("content-type", [""])[0] == "application/problem+json"
        and problem.get("code") == "invalid_request"
        and problem.get("field") == "payee"
    )
    return not documented
