//! `GET /openapi.json`: an OpenAPI 3.0 document derived with `utoipa` from the code that
//! serves the API, so that the two cannot disagree: the operations from the handlers'
//! `#[utoipa::path]` attributes, registered on the router by the same calls that route them
//! ([`crate::api`]); the bodies from the request types of [`crate::validate`] and the answer
//! types of [`crate::model`]; the problem answers of each operation from its list of
//! [`Code`]s below.
//!
//! What JSON Schema cannot say is said in words: `payee` ≠ `payer` (400 `invalid_request`
//! naming `payee`), and which problem codes each status carries.
//!
//! Why 3.0 and not 3.1: an amount is a JSON integer written without a fraction or exponent
//! (`5`, never `5.0` or `5e0`, so that money is never rounded), which is what `integer`
//! means in the JSON Schema of OpenAPI 3.0 (draft 4's "a JSON number without a fraction or
//! exponent part"); in 3.1's JSON Schema 2020-12, `5.0` is an integer too, and the document
//! would promise what the server refuses. The document uses nothing that 3.0 lacks (a test
//! checks it), so `utoipa`'s 3.1 output is served as 3.0.3.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, LicenseBuilder, OpenApi, Ref, RefOr, Required, Response,
    ResponseBuilder,
};
use utoipa::{IntoParams, IntoResponses, Modify, PartialSchema, ToSchema};

use crate::problem::{Code, Problem, PROBLEM_JSON};

/// The OpenAPI version served (see the module's doc for why not 3.1).
pub const OPENAPI_VERSION: &str = "3.0.3";

/// The OpenAPI document of the API, as served: [`crate::api`]'s routes, each with its
/// operation.
pub fn document() -> Value {
    served(crate::api::routes().1)
}

/// `document` as JSON, under [`OPENAPI_VERSION`].
pub(crate) fn served(document: OpenApi) -> Value {
    // The document is plain structs and string-keyed maps: serializing it cannot fail.
    let mut json = serde_json::to_value(document).unwrap_or_default();
    json["openapi"] = Value::String(OPENAPI_VERSION.to_owned());
    json
}

/// The document's root: everything but the paths, which the router adds.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "idem payment service",
        description = "Moves money exactly once per order_id (DESIGN §5). Money is an integer number of minor units. Errors are application/problem+json (RFC 9457) with a stable `code`; each operation lists the codes each status carries. The links of each 201 answer lead to the resource it made."
    ),
    components(schemas(Problem, Code, Replayed)),
    modifiers(&ApiKeyScheme)
)]
pub(crate) struct Root;

/// The security scheme the `/v1` operations name.
pub(crate) const API_KEY: &str = "apiKey";

/// What the attributes cannot say: the security scheme, and a license in 3.0's terms.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        // `utoipa` writes the crate's license with an SPDX `identifier`, which 3.0 lacks.
        openapi.info.license = Some(
            LicenseBuilder::new()
                .name(env!("CARGO_PKG_LICENSE"))
                .build(),
        );
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "`Authorization: Bearer <key>`, a key of `idem keys create` (idem_sk_…); it names the tenant every id lives in (DESIGN §5a). Required with `idem serve --auth api-keys` (the default on a non-loopback address): a missing, malformed, unknown or revoked key is 401 `unauthorized` and nothing is read or changed. With `--auth none` the header is not read.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(API_KEY, SecurityScheme::Http(scheme));
    }
}

/// The `Idempotent-Replayed` answer header: present, and `true`, on a replay only.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replayed;

impl PartialSchema for Replayed {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["true"]))
            .into()
    }
}

impl ToSchema for Replayed {}

/// The optional `Idempotency-Key` request header of the `POST` operations (DESIGN §4):
/// `order_id` and `refund_id` are the keys here, whatever it says, but a key that is sent
/// must be one that `idem` reads ([`idem::key_from_header`]) or the call is 400.
pub(crate) struct KeyHeader;

/// What [`idem::key_from_header`] accepts: a bare token of visible ASCII without `"` and
/// `,`, or an RFC 8941 sf-string of printable ASCII with `\"` and `\\` escapes; 1 to 255
/// characters once read.
const KEY_PATTERN: &str = r#"^(?:[!#-+\x2d-~]{1,255}|"(?:[ !#-\[\]-~]|\\["\\]){1,255}")$"#;

impl IntoParams for KeyHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(KEY_PATTERN));
        vec![ParameterBuilder::new()
            .name(idem::KEY_HEADER)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Optional: the order_id (refund_id, account_id) is the key of this call whatever this header says, but a key that is sent must be valid (`\"abc\"` as an sf-string, or a bare token), else 400 `invalid_request` naming Idempotency-Key.",
            ))
            .schema(Some(schema))
            .build()]
    }
}

/// The codes every `/v1` operation may answer besides its own: a bad path, header or body
/// (400), no live API key (401), a database that is down or busy (503), a bug (500).
const V1_PROBLEMS: &[Code] = &[
    Code::InvalidRequest,
    Code::Unauthorized,
    Code::Unavailable,
    Code::Internal,
];

/// The problem answers of an operation that may answer `codes` and [`V1_PROBLEMS`]: one
/// response per status, naming its codes, whose body is a [`Problem`] with that status and
/// one of those codes.
fn problem_responses(codes: &[Code]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
    for &code in codes.iter().chain(V1_PROBLEMS) {
        let of_status = by_status.entry(code.status().as_u16()).or_default();
        if !of_status.contains(&code) {
            of_status.push(code);
        }
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
            let narrowed = ObjectBuilder::new()
                .property(
                    "status",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .enum_values(Some([status])),
                )
                .property(
                    "code",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(names.clone())),
                );
            let schema = AllOfBuilder::new()
                .item(Ref::from_schema_name(Problem::name()))
                .item(narrowed);
            let mut response = ResponseBuilder::new()
                .description(names.join(", "))
                .content(
                    PROBLEM_JSON,
                    ContentBuilder::new().schema(Some(schema)).build(),
                );
            if codes.contains(&Code::Unauthorized) {
                response = response.header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(Some(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .enum_values(Some(["Bearer"])),
                        ))
                        .description(Some("The scheme to authenticate with."))
                        .build(),
                );
            }
            if codes.contains(&Code::Unavailable) {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .pattern(Some("^[0-9]+$")),
                        ))
                        .description(Some("Seconds to wait before trying again."))
                        .build(),
                );
            }
            (status.to_string(), response.build().into())
        })
        .collect()
}

/// Declares the problem answers of one operation, from its codes (DESIGN §5).
macro_rules! problems {
    ($($(#[$doc:meta])* $name:ident: [$($code:ident),* $(,)?];)+) => {$(
        $(#[$doc])*
        pub(crate) struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                problem_responses(&[$(Code::$code),*])
            }
        }
    )+};
}

/// The codes that reading a request body may answer.
macro_rules! body_problems {
    ($name:ident: [$($code:ident),* $(,)?]) => {
        problems! {
            /// The problem answers of an operation that reads a JSON body.
            $name: [UnsupportedMediaType, PayloadTooLarge, RequestTimeout, $($code),*];
        }
    };
}

body_problems!(OpenAccountProblems: [AccountConflict]);
body_problems!(PayProblems: [AccountNotFound, OrderIdConflict, InsufficientFunds]);
body_problems!(RefundProblems: [
    PaymentNotFound,
    RefundIdConflict,
    RefundExceedsPayment,
    InsufficientFunds,
]);

problems! {
    /// The problem answers of `GET /v1/accounts/{account_id}`.
    AccountProblems: [AccountNotFound];
    /// The problem answers of `GET /v1/payments/{order_id}`.
    PaymentProblems: [PaymentNotFound];
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_operation_is_documented_with_its_problems() {
        let doc = document();
        assert_eq!(doc["openapi"], OPENAPI_VERSION);
        let pay = &doc["paths"]["/v1/payments"]["post"];
        assert_eq!(
            pay["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/NewPayment"
        );
        let conflicts = &pay["responses"]["422"];
        assert_eq!(conflicts["description"], "order_id_conflict");
        let narrowed = &conflicts["content"][PROBLEM_JSON]["schema"]["allOf"][1];
        assert_eq!(
            narrowed["properties"]["code"]["enum"],
            json!(["order_id_conflict"])
        );
        assert_eq!(narrowed["properties"]["status"]["enum"], json!([422]));
        assert!(pay["responses"]["402"].is_object());
        assert_eq!(pay["responses"]["401"]["description"], "unauthorized");
        assert_eq!(pay["security"], json!([{ API_KEY: [] }]));
        assert_eq!(
            pay["responses"]["201"]["links"]["GetPayment"],
            json!({"operationId": "get_payment", "parameters": {"order_id": "$response.body#/order_id"}})
        );
        assert!(doc["paths"]["/healthz"]["get"].get("security").is_none());
        assert_eq!(
            doc["components"]["securitySchemes"][API_KEY]["scheme"],
            "bearer"
        );
        let refund = &doc["paths"]["/v1/payments/{order_id}/refunds"]["post"];
        let names: Vec<&str> = refund["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, ["order_id", idem::KEY_HEADER]);
        let codes: Vec<Value> = Code::ALL.iter().map(|c| json!(c.as_str())).collect();
        assert_eq!(doc["components"]["schemas"]["Code"]["enum"], json!(codes));
        let new_payment = &doc["components"]["schemas"]["NewPayment"];
        assert_eq!(new_payment["additionalProperties"], false);
        assert!(new_payment["description"]
            .as_str()
            .expect("description")
            .contains("`payee` must differ from `payer`"));
    }

    #[test]
    fn codes_serialize_as_their_names() {
        for code in Code::ALL {
            assert_eq!(json!(code), json!(code.as_str()));
        }
    }

    /// Keywords of OpenAPI 3.1 (JSON Schema 2020-12) that 3.0 does not have, wherever they
    /// appear: the document is served as 3.0.3.
    fn assert_openapi_30(value: &Value, at: &str) {
        match value {
            Value::Object(members) => {
                for (name, member) in members {
                    let here = format!("{at}/{name}");
                    assert!(
                        !matches!(
                            name.as_str(),
                            "const"
                                | "$defs"
                                | "prefixItems"
                                | "unevaluatedProperties"
                                | "dependentRequired"
                                | "jsonSchemaDialect"
                                | "webhooks"
                                | "identifier"
                        ),
                        "{here}: not OpenAPI 3.0"
                    );
                    if name == "type" {
                        assert!(member.is_string(), "{here}: a type list is not OpenAPI 3.0");
                        assert_ne!(member, "null", "{here}: type null is not OpenAPI 3.0");
                    }
                    if matches!(name.as_str(), "exclusiveMinimum" | "exclusiveMaximum") {
                        assert!(member.is_boolean(), "{here}: 3.0 takes a boolean");
                    }
                    assert_openapi_30_named(name, member, &here);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    assert_openapi_30(item, &format!("{at}/{i}"));
                }
            }
            _ => {}
        }
    }

    /// The member `name` of an object: a map whose keys are names (of properties, paths,
    /// responses…) holds no keywords, only values to check.
    fn assert_openapi_30_named(name: &str, member: &Value, at: &str) {
        let named = matches!(
            name,
            "properties"
                | "paths"
                | "schemas"
                | "responses"
                | "headers"
                | "links"
                | "securitySchemes"
                | "content"
                | "examples"
        );
        match member {
            Value::Object(entries) if named => {
                for (key, entry) in entries {
                    assert_openapi_30(entry, &format!("{at}/{key}"));
                }
            }
            _ => assert_openapi_30(member, at),
        }
    }

    #[test]
    fn the_document_is_openapi_30() {
        let doc = document();
        for member in ["openapi", "info", "paths", "components"] {
            assert!(doc.get(member).is_some(), "{member} missing");
        }
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        assert_openapi_30(&doc, "#");
        // Schema-level `examples` (a list) is 3.1 only; 3.0 has `example`.
        for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
            assert!(schema.get("examples").is_none(), "{name}: examples is 3.1");
        }
    }
}
