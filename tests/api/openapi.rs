//! The OpenAPI document describes what openport answers: the iamport envelope on every status, the
//! error statuses each operation can return, and `response: null` where HTTP 200 carries a refusal.
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

/// Operations that answer a business refusal with HTTP 200, code ≠ 0 and `response: null`
/// (`ApiError::refused`, card data refusals), as iamport does.
const REFUSING_WITH_200: &[(&str, &str)] = &[
    ("post", "/payments/cancel"),
    ("post", "/payments/prepare"),
    ("post", "/subscribe/payments/onetime"),
    ("post", "/subscribe/payments/again"),
    ("post", "/subscribe/payments/schedule"),
    ("post", "/subscribe/payments/unschedule"),
    ("post", "/subscribe/payments/schedule/{merchant_uid}/retry"),
    ("post", "/subscribe/customers/{customer_uid}"),
    ("get", "/subscribe/customers/{customer_uid}"),
    ("delete", "/subscribe/customers/{customer_uid}"),
    ("post", "/benepia/point"),
    ("post", "/benepia/payment"),
    ("post", "/escrows/logis/{imp_uid}"),
    ("put", "/escrows/logis/{imp_uid}"),
    ("post", "/vbanks"),
    ("delete", "/vbanks/{imp_uid}"),
];

async fn document() -> Value {
    let app = spawn_app().await;
    let (status, doc) = app.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    doc
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            ops.push((method.clone(), path.clone(), op));
        }
    }
    ops
}

/// The schema a `$ref` names, or the schema itself.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local ref");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn json_schema<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
    resolve(doc, &response["content"]["application/json"]["schema"])
}

fn allows_null(doc: &Value, schema: &Value) -> bool {
    let schema = resolve(doc, schema);
    schema["type"] == "null"
        || schema["type"]
            .as_array()
            .is_some_and(|t| t.contains(&Value::from("null")))
        || schema["oneOf"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| allows_null(doc, s)))
}

#[tokio::test]
async fn every_openapi_operation_documents_its_error_statuses_with_the_error_envelope() {
    let doc = document().await;
    let envelope = &doc["components"]["schemas"]["ErrorEnvelope"];
    assert_eq!(
        envelope["properties"]["code"]["enum"],
        serde_json::json!([-1])
    );
    assert_eq!(envelope["properties"]["response"]["type"], "null");

    let ops = operations(&doc);
    assert!(ops.len() >= 40, "{} operations", ops.len());
    for (method, path, op) in ops {
        let responses = &op["responses"];
        // 400 everywhere: a control character in the path or the query is refused before routing.
        let mut errors = vec!["400", "500"];
        if path != "/users/getToken" {
            errors.push("401");
        }
        for status in errors {
            assert_eq!(
                responses[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorEnvelope",
                "{method} {path} does not document {status}"
            );
        }
        if op.get("requestBody").is_some() {
            assert!(
                responses.get("413").is_some(),
                "{method} {path}: the body limit"
            );
        }
    }
}

#[tokio::test]
async fn every_openapi_http_200_is_the_envelope_and_nullable_where_a_refusal_answers_200() {
    let doc = document().await;
    for (method, path, op) in operations(&doc) {
        let ok = json_schema(&doc, &op["responses"]["200"]);
        assert_eq!(
            ok["required"],
            serde_json::json!(["code", "message", "response"]),
            "{method} {path}: 200 is not the envelope"
        );
        let refuses = REFUSING_WITH_200.contains(&(method.as_str(), path.as_str()));
        let codes = ok["properties"]["code"]["enum"].as_array().expect("codes");
        assert_eq!(
            codes.contains(&Value::from(1)),
            refuses,
            "{method} {path}: code 1 with HTTP 200"
        );
        if refuses {
            assert!(
                allows_null(&doc, &ok["properties"]["response"]),
                "{method} {path}: response must be nullable"
            );
            assert!(allows_null(&doc, &ok["properties"]["message"]));
        }
    }
}

#[tokio::test]
async fn a_refusal_with_http_200_is_what_the_openapi_document_says() {
    let app = spawn_app().await;
    let token = app.token().await;
    let res = app
        .http
        .delete(app.url("/subscribe/customers/nobody"))
        .header("Authorization", &token)
        .send()
        .await
        .expect("request");
    let (status, body) = crate::helpers::TestApp::read(res).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["code"], 1, "{body}");
    assert!(body["response"].is_null(), "{body}");

    let (_, doc) = app.get("/openapi.json", None).await;
    let ok = json_schema(
        &doc,
        &doc["paths"]["/subscribe/customers/{customer_uid}"]["delete"]["responses"]["200"],
    );
    assert!(ok["properties"]["code"]["enum"]
        .as_array()
        .expect("codes")
        .contains(&body["code"]));
    assert!(allows_null(&doc, &ok["properties"]["response"]));
}

/// The class every request string of the document is kept to (`api::doc::NO_CONTROL`).
const NO_CONTROL: &str = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F]*$";

/// Every string schema and object schema reachable from a request (parameters, bodies), with
/// where it is.
fn request_schemas(doc: &Value) -> Vec<(String, &Value)> {
    fn walk<'a>(
        doc: &'a Value,
        s: &'a Value,
        at: String,
        seen: &mut Vec<String>,
        out: &mut Vec<(String, &'a Value)>,
    ) {
        if let Some(r) = s["$ref"].as_str() {
            if !seen.contains(&r.to_string()) {
                seen.push(r.to_string());
                walk(doc, resolve(doc, s), r.to_string(), seen, out);
            }
            return;
        }
        out.push((at.clone(), s));
        for key in ["oneOf", "allOf", "anyOf"] {
            for (i, item) in s[key].as_array().into_iter().flatten().enumerate() {
                walk(doc, item, format!("{at}/{key}/{i}"), seen, out);
            }
        }
        for (name, p) in s["properties"].as_object().into_iter().flatten() {
            walk(doc, p, format!("{at}.{name}"), seen, out);
        }
        for key in ["items", "additionalProperties"] {
            if s[key].is_object() {
                walk(doc, &s[key], format!("{at}/{key}"), seen, out);
            }
        }
    }
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for (method, path, op) in operations(doc) {
        for p in op["parameters"].as_array().into_iter().flatten() {
            let at = format!("{method} {path} {}", p["name"]);
            walk(doc, &p["schema"], at, &mut seen, &mut out);
        }
        if let Some(body) = op["requestBody"]["content"].as_object() {
            for content in body.values() {
                walk(
                    doc,
                    &content["schema"],
                    format!("{method} {path} body"),
                    &mut seen,
                    &mut out,
                );
            }
        }
    }
    out
}

fn takes(schema: &Value, t: &str) -> bool {
    match &schema["type"] {
        Value::String(s) => s == t,
        Value::Array(types) => types.contains(&Value::from(t)),
        _ => false,
    }
}

#[tokio::test]
async fn every_string_a_request_carries_is_documented_without_the_control_characters_refused() {
    let doc = document().await;
    let schemas = request_schemas(&doc);
    assert!(schemas.len() > 100, "{} schemas", schemas.len());
    for (at, s) in schemas {
        if takes(s, "string") && s.get("enum").is_none() {
            let pattern = s["pattern"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: no pattern"));
            // Either the class itself, or an anchored pattern that names what it allows: no `.`,
            // `\S`, `\W` or `\D`, and every negated class leaves the controls out.
            assert!(
                pattern.starts_with('^') && pattern.ends_with('$'),
                "{at}: {pattern}"
            );
            if pattern != NO_CONTROL {
                for wide in [".", r"\S", r"\W", r"\D"] {
                    assert!(
                        !pattern.replace(r"\.", "").contains(wide),
                        "{at}: {pattern}"
                    );
                }
                for negated in pattern.split("[^").skip(1) {
                    assert!(
                        negated.contains(r"\x00-\x08") || negated.contains(r"\x00-\x1F"),
                        "{at}: a negated class lets controls through: {pattern}"
                    );
                }
            }
        }
        if takes(s, "object") {
            assert_eq!(
                s["propertyNames"]["pattern"], NO_CONTROL,
                "{at}: field names"
            );
            assert!(
                s.get("additionalProperties").is_some(),
                "{at}: unknown fields"
            );
        }
    }
}

#[tokio::test]
async fn a_control_character_in_a_field_name_is_refused_as_the_document_says() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (status, body) = app
        .post(
            "/payments/prepare",
            Some(&token),
            serde_json::json!({"merchant_uid": "m-1", "amount": 1000, "note\u{1}": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], -1, "{body}");
    assert!(body["response"].is_null(), "{body}");

    let (status, body) = app
        .post(
            "/payments/prepare",
            Some(&token),
            serde_json::json!({"merchant_uid": "m-1", "amount": 1000, "note": {"any": [1, "x"]}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an unknown field is ignored: {body}"
    );
    assert_eq!(body["code"], 0, "{body}");
}

#[tokio::test]
async fn every_optional_query_parameter_is_documented_as_taking_an_empty_value_for_absent() {
    // extract::query_value reads `?sorting=` as no `sorting`: the document says so (allowEmptyValue).
    let doc = document().await;
    let mut seen = 0;
    for (method, path, op) in operations(&doc) {
        for param in op["parameters"].as_array().into_iter().flatten() {
            if param["in"] == "query" && param["required"] != true {
                seen += 1;
                assert_eq!(
                    param["allowEmptyValue"], true,
                    "{method} {path} {}",
                    param["name"]
                );
            }
        }
    }
    assert!(seen > 20, "{seen} query parameters");
    let app = spawn_app().await;
    let token = app.token().await;
    for path in [
        "/payments/status/paid?sorting=&page=&limit=&from=&to=",
        "/payments/status?sorting=",
    ] {
        let (status, body) = app.get(path, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["code"], 0, "{path}: {body}");
    }
}

#[tokio::test]
async fn the_find_by_status_operation_says_its_sorting_does_not_pick_the_payment() {
    // With a status the newest attempt by `started` is taken whatever `sorting` says (spec
    // §4.1, tests/api/lookups.rs); the document must not promise a `sorting` it ignores.
    let doc = document().await;
    let op = &doc["paths"]["/payments/find/{merchant_uid}/{payment_status}"]["get"];
    let text = format!("{} {}", op["summary"], op["description"]);
    assert!(!text.contains("(by `sorting`)"), "{text}");
    assert!(text.contains("newest by `started`"), "{text}");
    let sorting = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "sorting")
        .expect("sorting is still read");
    assert!(
        sorting["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("ignored")),
        "{sorting}"
    );
}
