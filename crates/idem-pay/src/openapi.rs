//! `GET /openapi.json`: an OpenAPI 3.1 document built from the code: the route table below
//! (checked against the router by a test), the field rules of [`crate::validate`], and the
//! problem codes of [`crate::problem::Code`].

use serde_json::{json, Value};

use crate::problem::Code;
use crate::validate::ID_LEN_MAX;

/// One operation of the API.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// `get` or `post`.
    pub method: &'static str,
    /// The path template, as routed.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// The request body's schema name, if any.
    pub request: Option<&'static str>,
    /// The success status and its body's schema name.
    pub success: (u16, &'static str),
    /// The problem codes it may answer.
    pub problems: &'static [Code],
}

const ID_PROBLEMS: &[Code] = &[Code::InvalidRequest, Code::Unavailable, Code::Internal];

/// Every operation served (DESIGN §5), in the order of the table there.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "post",
        path: "/v1/accounts",
        summary: "Open an account; the same call again replays the first answer.",
        request: Some("NewAccount"),
        success: (201, "Account"),
        problems: &[
            Code::InvalidRequest,
            Code::UnsupportedMediaType,
            Code::PayloadTooLarge,
            Code::RequestTimeout,
            Code::AccountConflict,
        ],
    },
    Operation {
        method: "get",
        path: "/v1/accounts/{account_id}",
        summary: "Read an account.",
        request: None,
        success: (200, "Account"),
        problems: &[Code::InvalidRequest, Code::AccountNotFound],
    },
    Operation {
        method: "post",
        path: "/v1/payments",
        summary: "Move amount from payer to payee, once per order_id; an equal request replays the first answer byte for byte with Idempotent-Replayed: true.",
        request: Some("NewPayment"),
        success: (201, "Payment"),
        problems: &[
            Code::InvalidRequest,
            Code::UnsupportedMediaType,
            Code::PayloadTooLarge,
            Code::RequestTimeout,
            Code::AccountNotFound,
            Code::OrderIdConflict,
            Code::InsufficientFunds,
        ],
    },
    Operation {
        method: "get",
        path: "/v1/payments/{order_id}",
        summary: "Read a payment by its order id.",
        request: None,
        success: (200, "Payment"),
        problems: &[Code::InvalidRequest, Code::PaymentNotFound],
    },
    Operation {
        method: "post",
        path: "/v1/payments/{order_id}/refunds",
        summary: "Move money back from payee to payer, once per refund_id (unique within the payment), never more in total than the payment.",
        request: Some("NewRefund"),
        success: (201, "Refund"),
        problems: &[
            Code::InvalidRequest,
            Code::UnsupportedMediaType,
            Code::PayloadTooLarge,
            Code::RequestTimeout,
            Code::PaymentNotFound,
            Code::RefundIdConflict,
            Code::RefundExceedsPayment,
            Code::InsufficientFunds,
        ],
    },
    Operation {
        method: "get",
        path: "/healthz",
        summary: "Liveness.",
        request: None,
        success: (200, "Text"),
        problems: &[],
    },
    Operation {
        method: "get",
        path: "/metrics",
        summary: "Prometheus text: requests by route and outcome, latency, retries.",
        request: None,
        success: (200, "Text"),
        problems: &[],
    },
    Operation {
        method: "get",
        path: "/openapi.json",
        summary: "This document.",
        request: None,
        success: (200, "Object"),
        problems: &[],
    },
];

fn id_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": ID_LEN_MAX,
        "pattern": "^[A-Za-z0-9._:-]+$"
    })
}

fn integer(minimum: i64) -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": minimum, "maximum": i64::MAX })
}

fn object(properties: Value, closed: bool) -> Value {
    let required: Vec<&String> = properties
        .as_object()
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    json!({
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": !closed
    })
}

fn schemas() -> Value {
    let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    let timestamp = json!({ "type": "string", "format": "date-time" });
    let succeeded = json!({ "type": "string", "enum": ["succeeded"] });
    json!({
        "NewAccount": object(json!({ "account_id": id_schema(), "balance": integer(0) }), true),
        "Account": object(json!({ "account_id": id_schema(), "balance": integer(0) }), false),
        "NewPayment": object(json!({
            "order_id": id_schema(), "payer": id_schema(), "payee": id_schema(), "amount": integer(1)
        }), true),
        "Payment": object(json!({
            "payment_id": { "type": "string" }, "order_id": id_schema(), "payer": id_schema(),
            "payee": id_schema(), "amount": integer(1), "status": succeeded, "created_at": timestamp
        }), false),
        "NewRefund": object(json!({ "refund_id": id_schema(), "amount": integer(1) }), true),
        "Refund": object(json!({
            "refund_id": id_schema(), "payment_id": { "type": "string" }, "order_id": id_schema(),
            "amount": integer(1), "status": succeeded, "created_at": timestamp
        }), false),
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail", "code"],
            "properties": {
                "type": { "type": "string", "format": "uri" },
                "title": { "type": "string" },
                "status": { "type": "integer" },
                "detail": { "type": "string" },
                "code": { "type": "string", "enum": codes },
                "field": { "type": "string", "description": "The field at fault (invalid_request)." }
            }
        },
        "Text": { "type": "string" },
        "Object": { "type": "object" }
    })
}

fn operation(op: &Operation) -> Value {
    let schema_ref = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let (media, body_schema) = match op.success.1 {
        "Text" => ("text/plain", schema_ref("Text")),
        name => ("application/json", schema_ref(name)),
    };
    let mut responses = serde_json::Map::new();
    let mut success =
        json!({ "description": "Success", "content": { media: { "schema": body_schema } } });
    if op.request.is_some() {
        success["headers"] = json!({ "Idempotent-Replayed": {
            "description": "true when this is the first answer replayed",
            "schema": { "type": "string", "enum": ["true"] }
        }});
    }
    responses.insert(op.success.0.to_string(), success);
    let guarded = op.path.starts_with("/v1/");
    let auth_problems: &[Code] = if guarded { &[Code::Unauthorized] } else { &[] };
    for code in op.problems.iter().chain(auth_problems).chain(ID_PROBLEMS) {
        let status = code.status().as_u16().to_string();
        let entry = responses.entry(status).or_insert_with(|| {
            json!({ "description": "", "content": { "application/problem+json": { "schema": schema_ref("Problem") } } })
        });
        let described = entry["description"].as_str().unwrap_or_default();
        let joined = if described.is_empty() {
            code.as_str().to_owned()
        } else if described.split(", ").any(|d| d == code.as_str()) {
            described.to_owned()
        } else {
            format!("{described}, {}", code.as_str())
        };
        entry["description"] = Value::String(joined);
    }
    let mut out = json!({ "summary": op.summary, "responses": responses });
    if guarded {
        // A key is required with `--auth api-keys`, and not read with `--auth none`.
        out["security"] = json!([{ "apiKey": [] }, {}]);
    }
    let params: Vec<Value> = op
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": id_schema() }))
        .collect();
    if !params.is_empty() {
        out["parameters"] = Value::Array(params);
    }
    if let Some(request) = op.request {
        out["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": schema_ref(request) } }
        });
    }
    out
}

/// The OpenAPI 3.1 document of the API.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for op in OPERATIONS {
        let item = paths.entry(op.path).or_insert_with(|| json!({}));
        item[op.method] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "idem payment service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Moves money exactly once per order_id. Money is an integer number of minor units. Errors are application/problem+json with a stable code."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": { "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key of `idem keys create` (idem_sk_…), required on /v1 when the server runs with --auth api-keys; it names the tenant every id lives in."
            }}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_documented_with_its_problems() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let pay = &doc["paths"]["/v1/payments"]["post"];
        assert_eq!(
            pay["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/NewPayment"
        );
        assert!(pay["responses"]["422"]["description"]
            .as_str()
            .expect("422")
            .contains("order_id_conflict"));
        assert!(pay["responses"]["402"].is_object());
        assert_eq!(pay["responses"]["401"]["description"], "unauthorized");
        assert_eq!(pay["security"][0]["apiKey"], json!([]));
        assert!(doc["paths"]["/healthz"]["get"].get("security").is_none());
        assert_eq!(
            doc["components"]["securitySchemes"]["apiKey"]["scheme"],
            "bearer"
        );
        let refund = &doc["paths"]["/v1/payments/{order_id}/refunds"]["post"];
        assert_eq!(refund["parameters"][0]["name"], "order_id");
        let codes = doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_array()
            .expect("codes")
            .len();
        assert_eq!(codes, Code::ALL.len());
        assert_eq!(
            doc["components"]["schemas"]["NewPayment"]["additionalProperties"],
            false
        );
    }
}
