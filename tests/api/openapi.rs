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
    ("post", "/subscribe/payments/foreign"),
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
    // A delivery being sent right now is not queued again (review r2: documented as code 0 only).
    ("post", "/admin/webhooks/{id}/resend"),
];

/// Paths that are not iamport's API and answer without the envelope: a load balancer's check.
const OUTSIDE_THE_ENVELOPE: &[&str] = &["/health"];

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
        if OUTSIDE_THE_ENVELOPE.contains(&path.as_str()) {
            continue;
        }
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
        if OUTSIDE_THE_ENVELOPE.contains(&path.as_str()) {
            continue;
        }
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

/// `GET /health` answers 200 or 503 with `{"status": …}`, takes no token and never answers 500
/// (tests/api/health.rs); the document says so, and what it answers is valid against it.
#[tokio::test]
async fn the_health_check_is_documented_as_what_it_answers_outside_the_envelope() {
    let app = spawn_app().await;
    let (_, doc) = app.get("/openapi.json", None).await;
    let op = &doc["paths"]["/health"]["get"];
    let mut statuses: Vec<&String> = op["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .collect();
    statuses.sort();
    // 400: a control character in the query is refused before any route (`ControlCharacters`).
    assert_eq!(statuses, ["200", "400", "503"], "{op}");
    assert!(op.get("security").is_none(), "{op}");
    assert!(op.get("requestBody").is_none(), "{op}");
    let (status, body) = app.get("/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        valid(&doc, json_schema(&doc, &op["responses"]["200"]), &body),
        "{body}"
    );
    let unavailable = serde_json::json!({"status": "unavailable"});
    assert!(valid(
        &doc,
        json_schema(&doc, &op["responses"]["503"]),
        &unavailable
    ));
    assert!(!valid(
        &doc,
        json_schema(&doc, &op["responses"]["503"]),
        &serde_json::json!({"status": "down"})
    ));
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

/// Whether `value` is valid against `schema` (JSON Schema 2020-12, as far as the document uses
/// it). Every keyword is checked; one this does not know fails the test, so a schema it cannot
/// read is never taken for valid.
fn valid(doc: &Value, schema: &Value, value: &Value) -> bool {
    if schema.get("$ref").is_some() {
        return valid(doc, resolve(doc, schema), value);
    }
    let Some(keywords) = schema.as_object() else {
        return schema
            .as_bool()
            .expect("a schema is an object or a boolean");
    };
    let count = |v: &Value| v.as_u64().expect("a count") as usize;
    let number = |v: &Value| v.as_f64().expect("a number");
    keywords.iter().all(|(keyword, v)| match keyword.as_str() {
        "type" => match v {
            Value::Array(types) => types.iter().any(|t| is_of_type(t, value)),
            t => is_of_type(t, value),
        },
        "enum" => v.as_array().expect("enum").contains(value),
        "pattern" => value
            .as_str()
            .is_none_or(|s| matches(v.as_str().expect("pattern"), s)),
        "minLength" => value.as_str().is_none_or(|s| s.chars().count() >= count(v)),
        "maxLength" => value.as_str().is_none_or(|s| s.chars().count() <= count(v)),
        "minimum" => value.as_f64().is_none_or(|n| n >= number(v)),
        "maximum" => value.as_f64().is_none_or(|n| n <= number(v)),
        "minItems" => value.as_array().is_none_or(|a| a.len() >= count(v)),
        "maxItems" => value.as_array().is_none_or(|a| a.len() <= count(v)),
        "items" => value
            .as_array()
            .is_none_or(|a| a.iter().all(|item| valid(doc, v, item))),
        "required" => value.as_object().is_none_or(|o| {
            v.as_array()
                .expect("required")
                .iter()
                .all(|name| o.contains_key(name.as_str().expect("a name")))
        }),
        "properties" => value.as_object().is_none_or(|o| {
            v.as_object()
                .expect("properties")
                .iter()
                .all(|(name, s)| o.get(name).is_none_or(|field| valid(doc, s, field)))
        }),
        "additionalProperties" => value.as_object().is_none_or(|o| {
            let named = |name: &str| schema["properties"].get(name).is_some();
            o.iter()
                .filter(|(name, _)| !named(name))
                .all(|(_, field)| valid(doc, v, field))
        }),
        "propertyNames" => value.as_object().is_none_or(|o| {
            o.keys()
                .all(|name| valid(doc, v, &Value::from(name.as_str())))
        }),
        "allOf" => v
            .as_array()
            .expect("allOf")
            .iter()
            .all(|s| valid(doc, s, value)),
        "anyOf" => v
            .as_array()
            .expect("anyOf")
            .iter()
            .any(|s| valid(doc, s, value)),
        "oneOf" => {
            v.as_array()
                .expect("oneOf")
                .iter()
                .filter(|s| valid(doc, s, value))
                .count()
                == 1
        }
        "description" | "format" | "title" | "default" | "example" | "examples" => true,
        other => panic!("the test's validator does not know `{other}`: {schema}"),
    })
}

fn is_of_type(t: &Value, value: &Value) -> bool {
    match t.as_str().expect("a type name") {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        "integer" => value.as_f64().is_some_and(|n| n.fract() == 0.0),
        other => panic!("unknown type {other}"),
    }
}

/// ECMA-262's `pattern` as the `regex` crate reads it: the document's patterns are plain classes
/// and groups that both read alike (white space is spelt out, never `\s` where it decides).
fn matches(pattern: &str, s: &str) -> bool {
    thread_local! {
        static COMPILED: std::cell::RefCell<std::collections::HashMap<String, regex::Regex>> =
            Default::default();
    }
    COMPILED.with(|compiled| {
        compiled
            .borrow_mut()
            .entry(pattern.to_string())
            .or_insert_with(|| regex::Regex::new(pattern).expect("the pattern compiles"))
            .is_match(s)
    })
}

fn post_body_schema<'a>(doc: &'a Value, path: &str) -> &'a Value {
    &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
}

/// Sends each body to `POST path` and checks that the handler refuses it with HTTP 400 exactly
/// when the document's request schema does not take it (and that `accepted` says which).
async fn document_and_handler_agree(path: &str, cases: Vec<(Value, bool)>) {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, doc) = app.get("/openapi.json", None).await;
    let schema = post_body_schema(&doc, path);
    assert!(schema.get("$ref").is_some(), "{path}: {schema}");
    for (body, accepted) in cases {
        let (status, answer) = app.post(path, Some(&token), body.clone()).await;
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{body}: {answer}"
        );
        assert_eq!(
            status != StatusCode::BAD_REQUEST,
            accepted,
            "the handler, {body}: {status} {answer}"
        );
        assert_eq!(
            valid(&doc, schema, &body),
            accepted,
            "the document, {body}: the handler answered {status} {answer}"
        );
    }
}

#[tokio::test]
async fn the_unschedule_body_the_document_describes_is_exactly_what_the_handler_takes() {
    use serde_json::json;
    let most: Vec<String> = (0..1000).map(|i| format!("m-{i}")).collect();
    let too_many: Vec<String> = (0..1001).map(|i| format!("m-{i}")).collect();
    document_and_handler_agree(
        "/subscribe/payments/unschedule",
        vec![
            // All of the customer's: merchant_uid absent, null, or the Java client's `[]`.
            (json!({"customer_uid": "c-1"}), true),
            (json!({"customer_uid": "c-1", "merchant_uid": null}), true),
            (json!({"customer_uid": "c-1", "merchant_uid": []}), true),
            // Some of the customer's, or those named whoever's they are.
            (json!({"customer_uid": "c-1", "merchant_uid": "m-1"}), true),
            (
                json!({"customer_uid": "c-1", "merchant_uid": ["m-1", "m-2"]}),
                true,
            ),
            (json!({"customer_uid": "c-1", "merchant_uid": most}), true),
            (json!({"merchant_uid": "m-1"}), true),
            (json!({"merchant_uid": ["m-1"]}), true),
            (json!({"customer_uid": " ", "merchant_uid": "m-1"}), true),
            (json!({"customer_uid": null, "merchant_uid": ["m-1"]}), true),
            // Nothing named.
            (json!({}), false),
            (json!({"merchant_uid": null}), false),
            (json!({"merchant_uid": []}), false),
            (json!({"customer_uid": "", "merchant_uid": []}), false),
            (json!({"customer_uid": "\u{3000}"}), false),
            // A blank merchant_uid or item is never "all".
            (json!({"customer_uid": "c-1", "merchant_uid": ""}), false),
            (json!({"customer_uid": "c-1", "merchant_uid": " \t"}), false),
            (
                json!({"customer_uid": "c-1", "merchant_uid": "\u{3000}"}),
                false,
            ),
            (
                json!({"customer_uid": "c-1", "merchant_uid": "\u{85}"}),
                false,
            ),
            (
                json!({"customer_uid": "c-1", "merchant_uid": ["m-1", ""]}),
                false,
            ),
            (json!({"merchant_uid": ["\u{a0}"]}), false),
            (
                json!({"customer_uid": "c-1", "merchant_uid": too_many}),
                false,
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_schedule_body_the_document_describes_is_exactly_what_the_handler_takes() {
    use crate::helpers::{future_expiry, test_cards};
    use serde_json::json;
    let at = chrono::Utc::now().timestamp() + 86_400;
    // A request for a customer_uid without a billing key (each case its own), with `card`'s
    // fields; its schedule's merchant_uid is its own too.
    let mut n = 0;
    let mut body = |customer_uid: Option<&str>, card: Value| {
        n += 1;
        let mut body = json!({
            "customer_uid": customer_uid.map_or_else(|| format!("sched-doc-{n}"), str::to_string),
            "schedules": [{"merchant_uid": format!("sched-doc-m-{n}"), "schedule_at": at, "amount": 1000}],
        });
        for (field, value) in card.as_object().unwrap() {
            body[field] = value.clone();
        }
        body
    };
    let card = test_cards::SHINHAN_CREDIT;
    let expiry = future_expiry();
    let cases = vec![
        // No card: answered code 1 (HTTP 200) for a customer_uid without a key.
        (body(None, json!({})), true),
        (
            body(None, json!({"card_number": null, "expiry": null})),
            true,
        ),
        (body(None, json!({"card_number": "", "expiry": ""})), true),
        (body(None, json!({"card_number": " "})), true),
        (body(None, json!({"expiry": ""})), true),
        (
            body(
                None,
                json!({"card_number": "\u{3000}", "expiry": "\t", "birth": "800101"}),
            ),
            true,
        ),
        (
            body(None, json!({"birth": "800101", "pwd_2digit": "00"})),
            true,
        ),
        // The card: a key is issued, or card data that does not parse is code -1 (HTTP 200).
        (
            body(
                None,
                json!({"card_number": card, "expiry": expiry, "birth": "800101", "pwd_2digit": "00"}),
            ),
            true,
        ),
        (
            body(
                None,
                json!({"card_number": card, "expiry": expiry, "birth": "800101"}),
            ),
            true,
        ),
        (
            body(
                None,
                json!({"card_number": card, "expiry": expiry, "pwd_2digit": "00"}),
            ),
            true,
        ),
        (
            body(None, json!({"card_number": "1234", "expiry": expiry})),
            true,
        ),
        (
            body(None, json!({"card_number": card, "expiry": "13/99"})),
            true,
        ),
        // One of card_number and expiry without the other (blank counts as missing).
        (body(None, json!({"card_number": card})), false),
        (
            body(None, json!({"card_number": card, "expiry": ""})),
            false,
        ),
        (
            body(None, json!({"card_number": card, "expiry": null})),
            false,
        ),
        (body(None, json!({"expiry": expiry})), false),
        (
            body(None, json!({"card_number": "", "expiry": expiry})),
            false,
        ),
        (
            body(
                None,
                json!({"card_number": "\u{3000}", "expiry": expiry, "birth": "800101"}),
            ),
            false,
        ),
        // The customer_uid a key would be issued under.
        (body(Some(" "), json!({})), false),
        (body(Some(&"c".repeat(80)), json!({})), true),
        (body(Some(&"c".repeat(81)), json!({})), false),
    ];
    let mut no_schedules = body(None, json!({}));
    no_schedules["schedules"] = json!([]);
    let mut cases = cases;
    cases.push((no_schedules, false));
    document_and_handler_agree("/subscribe/payments/schedule", cases).await;
}

#[tokio::test]
async fn the_document_lists_every_shape_of_an_unschedules_merchant_uid_and_of_a_schedules_card() {
    let doc = document().await;
    let schemas = &doc["components"]["schemas"];
    // merchant_uid: null, one non-blank string, or a list (empty included) of at most 1,000.
    let shapes = schemas["UnscheduleRequest"]["properties"]["merchant_uid"]["oneOf"]
        .as_array()
        .expect("merchant_uid's shapes");
    assert_eq!(shapes.len(), 3, "{shapes:?}");
    assert_eq!(shapes[0]["type"], "null");
    assert_eq!(shapes[1]["$ref"], "#/components/schemas/NonBlank");
    assert_eq!(shapes[2]["type"], "array");
    assert_eq!(shapes[2]["items"]["$ref"], "#/components/schemas/NonBlank");
    assert_eq!(shapes[2]["maxItems"], 1000);
    assert!(
        shapes[2].get("minItems").is_none(),
        "[] is taken: {shapes:?}"
    );
    // Beside no customer_uid it must name one at least.
    let named = &schemas["UnscheduleBody"]["allOf"][1]["anyOf"];
    assert_eq!(named[0]["required"], serde_json::json!(["customer_uid"]));
    assert_eq!(named[1]["required"], serde_json::json!(["merchant_uid"]));
    assert_eq!(
        named[1]["properties"]["merchant_uid"]["oneOf"][1]["minItems"],
        1
    );
    let text = schemas["UnscheduleBody"]["description"].as_str().unwrap();
    assert!(text.contains("`[]`"), "{text}");

    // The card: both card_number and expiry not blank, or both absent (null or blank).
    let card = schemas["ScheduleBody"]["allOf"][1]["anyOf"]
        .as_array()
        .expect("the card's shapes");
    assert_eq!(card.len(), 2, "{card:?}");
    assert_eq!(
        card[0]["required"],
        serde_json::json!(["card_number", "expiry"])
    );
    for field in ["card_number", "expiry"] {
        assert_eq!(
            card[0]["properties"][field]["$ref"],
            "#/components/schemas/NonBlank"
        );
        let absent = &card[1]["properties"][field]["oneOf"];
        assert_eq!(absent[0]["type"], "null", "{field}");
        assert_eq!(absent[1]["pattern"], openport::api::doc::BLANK, "{field}");
    }
    let text = schemas["ScheduleBody"]["description"].as_str().unwrap();
    for rule in ["`pwd_2digit` needs `birth`", "code -1", "HTTP 400"] {
        assert!(text.contains(rule), "{rule}: {text}");
    }
}
