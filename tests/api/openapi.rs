//! The OpenAPI document describes what openport answers: the iamport envelope on every status, the
//! error statuses each operation can return, and `response: null` where HTTP 200 carries a refusal.
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

/// Operations that cannot answer HTTP 400: no body, and no parameter their handler checks.
const WITHOUT_BAD_REQUEST: &[(&str, &str)] = &[
    ("get", "/payments/{imp_uid}"),
    ("get", "/payments/prepare/{merchant_uid}"),
    ("get", "/subscribe/payments/schedule/{merchant_uid}"),
    ("get", "/subscribe/customers/{customer_uid}"),
    ("delete", "/subscribe/customers/{customer_uid}"),
    ("get", "/subscribe/customers/{customer_uid}/payments"),
    ("get", "/admin/merchants"),
    ("get", "/banks"),
    ("get", "/banks/{bank_standard_code}"),
    ("get", "/cards"),
    ("get", "/cards/{card_standard_code}"),
    ("get", "/users/pg"),
];

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
        let mut errors = vec!["500"];
        if path != "/users/getToken" {
            errors.push("401");
        }
        if !WITHOUT_BAD_REQUEST.contains(&(method.as_str(), path.as_str())) {
            errors.push("400");
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
