//! Fault injection: the network failures the gateway's reliability is proven against
//! (design.md §3) — a slow KCP, an HTTP error page (with or without the call processed behind
//! it), a dropped connection, and the worst one, "approved but the answer never arrived"
//! (spec/kcp.md §5).
//!
//! Rules are armed from tests ([`crate::Sandbox::inject`]) or over HTTP (`POST /_sandbox/faults`)
//! and consumed by matching requests, `times` at most; the gates of the hold faults are opened
//! from tests ([`crate::Sandbox::open_gate`]) or over HTTP (`POST /_sandbox/gates/{gate}/open`).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::Shared;

/// Largest request body the sandbox reads (KCP requests are a few kilobytes).
const BODY_LIMIT: usize = 1024 * 1024;

/// The longest a [`Fault::HoldAnswer`] holds its answer when nobody opens its gate: a test that
/// fails before opening it does not leave the request waiting for ever.
pub const HOLD_AT_MOST: Duration = Duration::from_secs(30);

/// The longest [`crate::Sandbox::until_held`] waits for a request to be held before it fails the
/// test: a request that reaches KCP in a test comes within milliseconds (a background task's
/// within a tick), and one that never comes would otherwise hang the test.
pub const UNTIL_HELD_AT_MOST: Duration = Duration::from_secs(10);

/// What happens to a matching request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Wait, then process normally.
    Delay { ms: u64 },
    /// Process fully (the ledger changes), then wait before answering: an answer that is already
    /// stale when it arrives, e.g. an inquiry that says "approved" of an approval cancelled
    /// meanwhile. What a gateway must not act on without checking it still owns the outcome.
    SlowAnswer { ms: u64 },
    /// Answer this status with an HTML error page without processing, like a proxy in front of KCP.
    HttpStatus { status: u16 },
    /// Process fully (the ledger changes), then answer this status with the HTML error page in
    /// place of KCP's answer: KCP's front timing out (502/504) while its backend completes the
    /// approval or cancel. A 5xx is no proof that nothing happened; this is the fault that shows a
    /// gateway treating it as one (spec/kcp.md §5).
    HttpStatusAfter { status: u16 },
    /// Do not process; close the connection without a usable response.
    Drop,
    /// Process fully (the ledger changes), then abort the connection instead of answering.
    LoseResponse,
    /// Process fully, then answer with one field of the JSON answer replaced: a KCP whose answer
    /// disagrees with what was asked (e.g. an approval `amount` other than the order's), which
    /// a gateway must net-cancel rather than record.
    AnswerField { field: String, value: String },
    /// [`Fault::AnswerField`] for several fields at once: an answer naming another trade whole
    /// (its `tno` and its `order_no`), which one field cannot make.
    AnswerFields {
        fields: std::collections::BTreeMap<String, String>,
    },
    /// Process fully (the ledger changes), then hold the answer until the test opens `gate`
    /// ([`crate::Sandbox::open_gate`]), at most [`HOLD_AT_MOST`]: an answer made stale by what
    /// the test does meanwhile, in an order no timer decides ([`crate::Sandbox::until_held`]
    /// waits until the request is held). Over HTTP, `POST /_sandbox/gates/{gate}/open` opens it.
    HoldAnswer { gate: String },
    /// Hold the request unprocessed until the test opens `gate`, at most [`HOLD_AT_MOST`], then
    /// process it (the ledger changes) and answer: a request KCP applies only after the gateway
    /// gave up waiting for it (its answer then goes to a closed connection), or one still on its
    /// way while something else reaches KCP first. [`crate::Sandbox::until_held`] waits until the
    /// request is held; unlike [`Fault::Delay`], no timer decides what happens meanwhile. Opened
    /// over HTTP as [`Fault::HoldAnswer`]'s gate is.
    HoldRequest { gate: String },
    /// Do not process; refuse with KCP's failure shape (HTTP 200, `{"res_cd","res_msg"}`), as KCP
    /// refuses what it will not do for reasons a test cannot otherwise arrange (an issuer's or
    /// Benepia's refusal of a re-approval, say).
    Refuse { code: String, message: String },
}

/// A fault armed for requests to `path`, optionally only those whose JSON `field == value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "FaultRuleJson", into = "FaultRuleJson")]
pub struct FaultRule {
    /// A KCP path, e.g. `/gw/hub/v1/payment` ([`crate::paths`]).
    pub path: String,
    /// `(field, value)`: match only requests whose string field has this value.
    pub when: Option<(String, String)>,
    pub fault: Fault,
    /// How many matching requests the rule applies to; 0 never matches.
    pub times: u32,
}

impl FaultRule {
    /// A rule for the next request to `path`.
    pub fn new(path: impl Into<String>, fault: Fault) -> Self {
        Self {
            path: path.into(),
            when: None,
            fault,
            times: 1,
        }
    }

    /// Restricts the rule to requests whose `field` equals `value`.
    pub fn when(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.when = Some((field.into(), value.into()));
        self
    }

    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }

    fn matches(&self, path: &str, body: Option<&serde_json::Value>) -> bool {
        if self.times == 0 || self.path != path {
            return false;
        }
        match &self.when {
            None => true,
            Some((field, value)) => {
                body.and_then(|body| body.get(field))
                    .and_then(serde_json::Value::as_str)
                    == Some(value.as_str())
            }
        }
    }
}

/// The control API's JSON shape: `when` is `{"field":..,"value":..}`; `times` defaults to 1.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRuleJson {
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    when: Option<FieldMatch>,
    fault: Fault,
    #[serde(default = "one")]
    times: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldMatch {
    field: String,
    value: String,
}

fn one() -> u32 {
    1
}

impl From<FaultRuleJson> for FaultRule {
    fn from(json: FaultRuleJson) -> Self {
        Self {
            path: json.path,
            when: json.when.map(|m| (m.field, m.value)),
            fault: json.fault,
            times: json.times,
        }
    }
}

impl From<FaultRule> for FaultRuleJson {
    fn from(rule: FaultRule) -> Self {
        Self {
            path: rule.path,
            when: rule.when.map(|(field, value)| FieldMatch { field, value }),
            fault: rule.fault,
            times: rule.times,
        }
    }
}

/// The armed rules, in the order they were added, and the gates of [`Fault::HoldAnswer`].
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    rules: Vec<FaultRule>,
    gates: std::collections::HashMap<String, Arc<Gate>>,
}

/// Where a [`Fault::HoldAnswer`] or a [`Fault::HoldRequest`] waits. Neither side has to come first:
/// opening keeps a permit for a request not held yet ([`tokio::sync::Notify::notify_one`]), and
/// the holds are counted, so [`crate::Sandbox::until_held`] returns for a request held before it
/// was called (one return per hold).
#[derive(Debug, Default)]
pub(crate) struct Gate {
    holds: std::sync::Mutex<Holds>,
    /// Woken (`notify_waiters`) at every change of `holds`; a waiter makes its `notified()`
    /// before it looks at `holds`, so no change falls between its look and its wait.
    changed: tokio::sync::Notify,
    /// Notified by the test to let the answer go; `notify_waiters` when the faults are cleared.
    pub open: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Holds {
    /// Requests held on the gate so far (for [`Fault::HoldAnswer`], processed and their answer
    /// held; for [`Fault::HoldRequest`], not processed yet).
    held: u64,
    /// Of those, how many an `until_held` has returned for.
    seen: u64,
    /// The faults were cleared: the gate's rules are gone, and nothing held here waits any more.
    cleared: bool,
}

/// Why [`Gate::next_hold`] returned without a hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct GateCleared;

impl Gate {
    /// Holds a request here until the gate is opened (or was, before it came), or the faults are
    /// cleared (or were, between its rule matching and its coming here), at most [`HOLD_AT_MOST`].
    async fn hold(&self) {
        // Made before the look at `cleared`: the clear's `notify_waiters` reaches it from now on.
        let opened = self.open.notified();
        let cleared = {
            let mut holds = self.holds.lock().expect("gate lock");
            holds.held += 1;
            holds.cleared
        };
        self.changed.notify_waiters();
        if !cleared {
            let _ = tokio::time::timeout(HOLD_AT_MOST, opened).await;
        }
    }

    /// Waits for a request held here that no earlier call returned for, however long ago it was
    /// held; [`GateCleared`] once the faults are cleared with none.
    pub(crate) async fn next_hold(&self) -> Result<(), GateCleared> {
        loop {
            let changed = self.changed.notified();
            {
                let mut holds = self.holds.lock().expect("gate lock");
                if holds.held > holds.seen {
                    holds.seen += 1;
                    return Ok(());
                }
                if holds.cleared {
                    return Err(GateCleared);
                }
            }
            changed.await;
        }
    }

    /// Lets everything held here go, now and later, and tells those waiting in `until_held`.
    fn clear(&self) {
        self.holds.lock().expect("gate lock").cleared = true;
        self.open.notify_waiters();
        self.changed.notify_waiters();
    }
}

impl FaultBook {
    pub fn add(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    /// Disarms every rule and forgets every gate: a permit left on one (a gate opened before
    /// its request came, a hold nobody waited for with `until_held`) belongs to the rules it was
    /// meant for, and would otherwise let the next hold armed on that name through at once (or
    /// make `until_held` return before anything is held). A request held on a gate now goes on,
    /// as if its gate opened, rather than waiting out [`HOLD_AT_MOST`] for a gate nobody can
    /// open any more; so does a request whose rule matched before the clear and that reaches its
    /// gate after it (it holds on the gate its rule named then, not on the next scenario's), and
    /// an `until_held` waiting on a forgotten gate gives up.
    pub fn clear(&mut self) {
        self.rules.clear();
        for (_, gate) in self.gates.drain() {
            gate.clear();
        }
    }

    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules.clone()
    }

    /// The gate named `name`, made on first use by either side.
    pub fn gate(&mut self, name: &str) -> Arc<Gate> {
        self.gates.entry(name.to_owned()).or_default().clone()
    }

    /// Consumes one use of the first rule matching the request, if any: its fault, and for a hold
    /// the gate it holds on, taken now, with the rule, so that a clear from here on releases it.
    fn take(&mut self, path: &str, body: &Bytes) -> Option<(Fault, Option<Arc<Gate>>)> {
        if self.rules.is_empty() {
            return None;
        }
        let json = serde_json::from_slice::<serde_json::Value>(body).ok();
        let index = self
            .rules
            .iter()
            .position(|rule| rule.matches(path, json.as_ref()))?;
        let rule = &mut self.rules[index];
        rule.times -= 1;
        let fault = rule.fault.clone();
        if rule.times == 0 {
            self.rules.remove(index);
        }
        let gate = match &fault {
            Fault::HoldAnswer { gate } | Fault::HoldRequest { gate } => Some(self.gate(gate)),
            _ => None,
        };
        Some((fault, gate))
    }
}

/// Middleware on KCP's routes that applies the first matching rule.
///
/// The request is processed in its own task: like the real KCP, the sandbox finishes what it
/// started even when the client gives up (times out) and closes the connection, which is exactly
/// the case a gateway must resolve by inquiry.
pub(crate) async fn apply(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::spawn(apply_detached(shared, request, next)).await {
        Ok(response) => response,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn apply_detached(shared: Arc<Shared>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let fault = shared.faults().take(parts.uri.path(), &bytes);
    let request = Request::from_parts(parts, Body::from(bytes));
    let Some((fault, gate)) = fault else {
        return next.run(request).await;
    };
    tracing::info!(?fault, "kcp sandbox injecting fault");
    match fault {
        Fault::Delay { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(request).await
        }
        Fault::SlowAnswer { ms } => {
            let answer = next.run(request).await;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            answer
        }
        Fault::HoldAnswer { .. } => {
            let answer = next.run(request).await;
            if let Some(gate) = gate {
                gate.hold().await;
            }
            answer
        }
        Fault::HoldRequest { .. } => {
            if let Some(gate) = gate {
                gate.hold().await;
            }
            next.run(request).await
        }
        Fault::HttpStatus { status } => error_page(status),
        Fault::HttpStatusAfter { status } => {
            let _processed = next.run(request).await;
            error_page(status)
        }
        Fault::Drop => aborted(),
        Fault::LoseResponse => {
            let _processed = next.run(request).await;
            aborted()
        }
        Fault::AnswerField { field, value } => {
            rewrite_fields(next.run(request).await, [(field, value)]).await
        }
        Fault::AnswerFields { fields } => rewrite_fields(next.run(request).await, fields).await,
        Fault::Refuse { code, message } => {
            axum::Json(serde_json::json!({ "res_cd": code, "res_msg": message })).into_response()
        }
    }
}

/// The answer with each `(field, value)` set, when it is a JSON object; anything else unchanged.
async fn rewrite_fields(
    response: Response,
    fields: impl IntoIterator<Item = (String, String)>,
) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return aborted();
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut answer)) => {
            for (field, value) in fields {
                answer.insert(field, serde_json::Value::String(value));
            }
            parts.headers.remove(header::CONTENT_LENGTH);
            Bytes::from(serde_json::Value::Object(answer).to_string())
        }
        _ => bytes,
    };
    Response::from_parts(parts, Body::from(body))
}

fn error_page(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let html =
        format!("<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>");
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        html,
    )
        .into_response()
}

/// A response whose body fails on the first read: hyper then aborts the connection, so the
/// client sees a broken connection rather than an answer it could parse.
fn aborted() -> Response {
    let failure = std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "kcp sandbox fault: connection dropped",
    );
    let body = Body::from_stream(futures_util::stream::iter([Err::<Bytes, _>(failure)]));
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hold whose rule matched just before the faults were cleared (a `hold_answer` whose
    /// request was still being processed) reaches its gate after the clear. It goes on at once,
    /// rather than waiting out [`HOLD_AT_MOST`] on a gate nobody can open any more, and it is
    /// not counted on the next scenario's gate of that name, where `until_held` would take it for
    /// that scenario's request. It used to look its gate up by name after processing: a fresh
    /// gate, made after the clear.
    #[tokio::test]
    async fn a_hold_whose_rule_matched_before_the_clear_goes_on_and_leaves_the_next_gate_alone() {
        let mut book = FaultBook::default();
        book.add(FaultRule::new(
            "/gw/mod/v1/cancel",
            Fault::HoldAnswer { gate: "g".into() },
        ));
        let (_, gate) = book.take("/gw/mod/v1/cancel", &Bytes::new()).unwrap();
        book.clear();

        tokio::time::timeout(Duration::from_secs(5), gate.expect("a hold's gate").hold())
            .await
            .expect("released by the clear, not after HOLD_AT_MOST");
        let next = book.gate("g");
        assert!(
            tokio::time::timeout(Duration::ZERO, next.next_hold())
                .await
                .is_err(),
            "the next scenario's gate holds nothing yet"
        );
    }

    #[test]
    fn fault_rules_read_the_control_api_json() {
        let rule: FaultRule = serde_json::from_str(
            r#"{"path":"/gw/hub/v1/payment","when":{"field":"ordr_idxx","value":"o1"},
                "fault":{"kind":"http_status","status":503},"times":2}"#,
        )
        .unwrap();
        assert_eq!(
            rule,
            FaultRule::new("/gw/hub/v1/payment", Fault::HttpStatus { status: 503 })
                .when("ordr_idxx", "o1")
                .times(2)
        );
        let rule: FaultRule = serde_json::from_str(
            r#"{"path":"/gw/mod/v1/cancel","fault":{"kind":"http_status_after","status":504}}"#,
        )
        .unwrap();
        assert_eq!(rule.fault, Fault::HttpStatusAfter { status: 504 });
        let rule: FaultRule =
            serde_json::from_str(r#"{"path":"/std/inquery","fault":{"kind":"lose_response"}}"#)
                .unwrap();
        assert_eq!(rule, FaultRule::new("/std/inquery", Fault::LoseResponse));
        let rule: FaultRule = serde_json::from_str(
            r#"{"path":"/gw/enc/v1/payment","fault":{"kind":"answer_field","field":"amount","value":"1"}}"#,
        )
        .unwrap();
        assert_eq!(
            rule.fault,
            Fault::AnswerField {
                field: "amount".into(),
                value: "1".into()
            }
        );
        let rule: FaultRule = serde_json::from_str(
            r#"{"path":"/std/inquery","fault":{"kind":"slow_answer","ms":800}}"#,
        )
        .unwrap();
        assert_eq!(rule.fault, Fault::SlowAnswer { ms: 800 });
        let rule: FaultRule = serde_json::from_str(
            r#"{"path":"/std/inquery","fault":{"kind":"hold_answer","gate":"deposit"}}"#,
        )
        .unwrap();
        assert_eq!(
            rule.fault,
            Fault::HoldAnswer {
                gate: "deposit".into()
            }
        );
        let rule: FaultRule = serde_json::from_str(
            r#"{"path":"/gw/mod/v1/cancel","fault":{"kind":"hold_request","gate":"close"}}"#,
        )
        .unwrap();
        assert_eq!(
            rule.fault,
            Fault::HoldRequest {
                gate: "close".into()
            }
        );
        let rule: FaultRule = serde_json::from_str(
            r#"{"path":"/gw/hub/v1/payment","fault":{"kind":"answer_fields","fields":{"tno":"1","order_no":"o2"}}}"#,
        )
        .unwrap();
        assert_eq!(
            rule.fault,
            Fault::AnswerFields {
                fields: [
                    ("tno".to_string(), "1".to_string()),
                    ("order_no".to_string(), "o2".to_string())
                ]
                .into()
            }
        );
    }

    #[test]
    fn a_rule_is_used_up_after_its_times() {
        let mut book = FaultBook::default();
        book.add(FaultRule::new("/p", Fault::Drop).when("tno", "1").times(2));
        let other = Bytes::from_static(br#"{"tno":"2"}"#);
        let matching = Bytes::from_static(br#"{"tno":"1"}"#);
        let mut take = |path, body| book.take(path, body).map(|(fault, _gate)| fault);
        assert_eq!(take("/p", &other), None);
        assert_eq!(take("/q", &matching), None);
        assert_eq!(take("/p", &matching), Some(Fault::Drop));
        assert_eq!(take("/p", &matching), Some(Fault::Drop));
        assert_eq!(take("/p", &matching), None);
    }
}
