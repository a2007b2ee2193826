mod common;

use std::time::{Duration, Instant};

use common::*;
use kcp_sandbox::{paths, test_cards, Fault, FaultRule, TransactionState};
use serde_json::json;

/// Sends a key-in and reports whether the client got a parseable answer.
async fn try_pay(harness: &Harness, order_no: &str) -> Result<serde_json::Value, String> {
    let body = key_in(SITE, test_cards::SHINHAN_CREDIT, order_no, "1000");
    let response = harness
        .client
        .post(harness.url(paths::HUB_PAYMENT))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    response
        .json::<serde_json::Value>()
        .await
        .map_err(|e| format!("body: {e}"))
}

#[tokio::test]
async fn a_delay_holds_the_answer_then_approves() {
    let harness = spawn().await;
    harness
        .sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Delay { ms: 300 }));

    let started = Instant::now();
    let reply = try_pay(&harness, "delay1").await.unwrap();

    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply["res_cd"], "0000");
    assert_eq!(harness.sandbox.ledger().len(), 1);
}

#[tokio::test]
async fn an_http_status_fault_answers_an_html_page_and_approves_nothing() {
    let harness = spawn().await;
    harness.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::HttpStatus { status: 503 },
    ));

    let body = key_in(SITE, test_cards::SHINHAN_CREDIT, "http1", "1000");
    let response = harness
        .client
        .post(harness.url(paths::HUB_PAYMENT))
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("<html>"));
    assert!(harness.sandbox.ledger().is_empty());
    // Used up: the next request goes through.
    assert_eq!(try_pay(&harness, "http1").await.unwrap()["res_cd"], "0000");
}

/// A 502/504 typically comes from KCP's front timing out while its backend completes the call:
/// `http_status_after` plays that, the request processed and its answer replaced by the page.
#[tokio::test]
async fn an_http_status_after_fault_answers_an_html_page_but_the_approval_happened() {
    let harness = spawn().await;
    let armed = harness
        .arm_fault(
            &json!({"path": paths::HUB_PAYMENT, "when": {"field": "ordr_idxx", "value": "after1"},
                           "fault": {"kind": "http_status_after", "status": 504}}),
        )
        .await;
    assert_eq!(armed.status(), 204);
    assert_eq!(
        harness.sandbox.armed_faults(),
        [
            FaultRule::new(paths::HUB_PAYMENT, Fault::HttpStatusAfter { status: 504 })
                .when("ordr_idxx", "after1")
        ]
    );

    let body = key_in(SITE, test_cards::SHINHAN_CREDIT, "after1", "1000");
    let response = harness
        .client
        .post(harness.url(paths::HUB_PAYMENT))
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 504);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("<html>") && !page.contains("res_cd"),
        "{page}"
    );
    let ledger = harness.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "KCP approved it");
    assert_eq!(ledger[0].state, TransactionState::Approved);
    let found = harness.inquire_order("after1").await;
    assert_eq!(found["tno"], ledger[0].tno.as_str(), "{found}");
}

#[tokio::test]
async fn a_dropped_connection_is_an_error_and_approves_nothing() {
    let harness = spawn().await;
    harness
        .sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop));

    let outcome = try_pay(&harness, "drop1").await;

    // Not even a status line: the request itself fails.
    assert!(
        outcome.as_ref().is_err_and(|e| e.starts_with("send:")),
        "{outcome:?}"
    );
    assert!(harness.sandbox.ledger().is_empty());
}

#[tokio::test]
async fn a_lost_response_is_an_error_but_the_approval_happened() {
    let harness = spawn().await;
    harness
        .sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse));

    let outcome = try_pay(&harness, "lost1").await;

    assert!(outcome.is_err(), "{outcome:?}");
    let ledger = harness.sandbox.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].order_no, "lost1");
    // The caller that lost the answer finds the approval by its order number.
    let found = harness.inquire_order("lost1").await;
    assert_eq!(found["res_cd"], "0000");
    assert_eq!(found["tno"], ledger[0].tno.as_str());
}

#[tokio::test]
async fn a_lost_cancel_response_still_cancels() {
    let harness = spawn().await;
    let tno = harness.approved("lostcancel", "1000").await;
    harness
        .sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::LoseResponse).when("tno", tno.as_str()));

    let merchant = merchant(SITE);
    let outcome = async {
        harness
            .client
            .post(harness.url(paths::CANCEL))
            .json(&json!({
                "site_cd": SITE, "kcp_cert_info": merchant.cert_info, "tno": tno,
                "mod_type": "STSC", "kcp_sign_data": merchant.sign(&format!("{SITE}^{tno}^STSC")),
            }))
            .send()
            .await?
            .json::<serde_json::Value>()
            .await
    }
    .await;

    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(
        harness.sandbox.ledger()[0].state,
        TransactionState::Cancelled
    );
}

#[tokio::test]
async fn a_rule_with_a_condition_only_hits_the_matching_request() {
    let harness = spawn().await;
    harness
        .sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop).when("ordr_idxx", "victim"));

    assert_eq!(
        try_pay(&harness, "bystander").await.unwrap()["res_cd"],
        "0000"
    );
    assert!(try_pay(&harness, "victim").await.is_err());
    assert_eq!(try_pay(&harness, "victim").await.unwrap()["res_cd"], "0000");
}

#[tokio::test]
async fn clearing_faults_disarms_them() {
    let harness = spawn().await;
    harness
        .sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop).times(5));
    harness.sandbox.clear_faults();

    assert_eq!(try_pay(&harness, "clear1").await.unwrap()["res_cd"], "0000");
}

#[tokio::test]
async fn the_control_api_arms_lists_and_clears_faults_and_shows_the_ledger() {
    let harness = spawn().await;
    let faults = harness.url("/_sandbox/faults");

    let armed = harness
        .client
        .post(&faults)
        .json(
            &json!({"path": paths::HUB_PAYMENT, "when": {"field": "ordr_idxx", "value": "ctl1"},
                      "fault": {"kind": "http_status", "status": 502}, "times": 2}),
        )
        .send()
        .await
        .unwrap();
    assert!(armed.status().is_success());
    let listed: serde_json::Value = harness
        .client
        .get(&faults)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["fault"]["kind"], "http_status");
    assert_eq!(listed[0]["when"]["field"], "ordr_idxx");

    let body = key_in(SITE, test_cards::SHINHAN_CREDIT, "ctl1", "1000");
    let refused = harness
        .client
        .post(harness.url(paths::HUB_PAYMENT))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);

    let cleared = harness.client.delete(&faults).send().await.unwrap();
    assert!(cleared.status().is_success());
    assert_eq!(try_pay(&harness, "ctl1").await.unwrap()["res_cd"], "0000");

    let ledger = harness.get_json("/_sandbox/ledger").await;
    assert_eq!(ledger[0]["order_no"], "ctl1");
    assert_eq!(ledger[0]["state"], "STSR");
    assert_eq!(ledger[0]["card"]["masked_card_no"], "411111******1111");
}

#[tokio::test]
async fn a_malformed_fault_rule_is_a_client_error() {
    let harness = spawn().await;
    let response = harness
        .arm_fault(&json!({"path": paths::HUB_PAYMENT, "fault": {"kind": "explode"}}))
        .await;
    assert!(response.status().is_client_error());
}

/// A rule for a path the sandbox does not serve could never fire: refused, naming the paths.
#[tokio::test]
async fn a_fault_rule_for_a_path_the_sandbox_does_not_serve_is_refused() {
    let harness = spawn().await;
    let response = harness
        .arm_fault(&json!({"path": "/nope", "fault": {"kind": "drop"}}))
        .await;
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(body.contains(paths::HUB_PAYMENT), "{body}");
    let armed = harness.get_json("/_sandbox/faults").await;
    assert_eq!(armed, json!([]));
    // Every path the sandbox serves takes one, the window's own form too.
    for path in paths::ALL {
        let response = harness
            .arm_fault(&json!({"path": path, "fault": {"kind": "drop"}}))
            .await;
        assert_eq!(response.status(), 204, "{path}");
    }
}

/// Polls `done` (every 25 ms, at most 5 s): how a script over HTTP sees what the sandbox did.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never happened: {what}");
}

/// The hold faults armed over `POST /_sandbox/faults` are released over
/// `POST /_sandbox/gates/{gate}/open`, as `Sandbox::open_gate` releases them from Rust: a script
/// need not wait out the 30 s a held request otherwise waits. `hold_answer` approves at once and
/// holds the answer; `hold_request` holds the approval itself until the gate opens.
#[tokio::test]
async fn a_hold_armed_over_http_is_released_over_http_by_opening_its_gate() {
    let harness = spawn().await;
    let started = Instant::now();
    for (kind, order_no) in [
        ("hold_answer", "heldanswer"),
        ("hold_request", "heldrequest"),
    ] {
        let gate = format!("gate-{kind}");
        let armed = harness
            .arm_fault(&json!({"path": paths::HUB_PAYMENT,
                               "when": {"field": "ordr_idxx", "value": order_no},
                               "fault": {"kind": kind, "gate": gate}}))
            .await;
        assert_eq!(armed.status(), 204, "{kind}");
        let paying = pay_in_background(&harness, order_no);
        until(&format!("{kind} matched"), async || {
            harness.get_json("/_sandbox/faults").await == json!([])
        })
        .await;
        let approved = |harness: &Harness| {
            harness
                .sandbox
                .ledger()
                .iter()
                .any(|e| e.order_no == order_no)
        };
        if kind == "hold_answer" {
            until("the approval made", async || approved(&harness)).await;
        } else {
            assert!(!approved(&harness), "hold_request: nothing approved yet");
        }
        assert!(!paying.is_finished(), "{kind}: the answer is held");

        let opened = harness
            .client
            .post(harness.url(&format!("/_sandbox/gates/{gate}/open")))
            .send()
            .await
            .unwrap();
        assert_eq!(opened.status(), 204, "{kind}");
        let answer = paying.await.unwrap();

        assert_eq!(answer["res_cd"], "0000", "{kind}: {answer}");
        assert!(approved(&harness), "{kind}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "released by the gates, not after 30 s: {:?}",
        started.elapsed()
    );
}

/// A key-in for `order_no` sent in its own task, as a gateway's call that the sandbox may hold.
fn pay_in_background(
    harness: &Harness,
    order_no: &str,
) -> tokio::task::JoinHandle<serde_json::Value> {
    let (client, url) = (harness.client.clone(), harness.url(paths::HUB_PAYMENT));
    let body = key_in(SITE, test_cards::SHINHAN_CREDIT, order_no, "1000");
    tokio::spawn(async move {
        client
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    })
}

/// `DELETE /_sandbox/faults` returns a shared sandbox to a clean fault state: the permits its
/// gates kept for a side that never came go with the rules. A gate opened while nothing was held
/// on it (a script's cleanup) must not let the next run's hold on that name through at once, and
/// a hold nobody waited for must not make the next `until_held` return before anything is held;
/// either would silently lose the order the scenario exists to force.
#[tokio::test]
async fn a_gate_opened_before_its_rule_was_cleared_does_not_let_a_hold_armed_afterwards_through() {
    let harness = spawn().await;
    let open = |gate: &'static str| {
        let request = harness
            .client
            .post(harness.url(&format!("/_sandbox/gates/{gate}/open")));
        async move { assert_eq!(request.send().await.unwrap().status(), 204) }
    };
    let clear = || async {
        let cleared = harness
            .client
            .delete(harness.url("/_sandbox/faults"))
            .send()
            .await
            .unwrap();
        assert_eq!(cleared.status(), 204);
    };
    let hold = |order_no: &str| {
        json!({"path": paths::HUB_PAYMENT, "when": {"field": "ordr_idxx", "value": order_no},
               "fault": {"kind": "hold_request", "gate": "close"}})
    };

    // A hold that went through (its gate opened) with nobody in until_held leaves a `held`
    // permit; after the clear, until_held waits for a request held anew.
    assert_eq!(harness.arm_fault(&hold("before")).await.status(), 204);
    let paying = pay_in_background(&harness, "before");
    open("close").await;
    assert_eq!(paying.await.unwrap()["res_cd"], "0000");
    clear().await;
    assert!(
        tokio::time::timeout(Duration::ZERO, harness.sandbox.until_held("close"))
            .await
            .is_err(),
        "until_held returned although nothing is held"
    );

    // A gate opened with nothing held on it (cleanup), then the faults cleared: the next run's
    // hold on that name holds until its gate is opened again.
    open("close").await;
    clear().await;
    assert_eq!(harness.arm_fault(&hold("after")).await.status(), 204);
    let mut paying = pay_in_background(&harness, "after");
    harness.sandbox.until_held("close").await;
    // Nothing opens the gate here: an answer within this bound came through a stale permit.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut paying)
            .await
            .is_err(),
        "the hold armed after the clear let its request through"
    );
    assert!(
        !harness
            .sandbox
            .ledger()
            .iter()
            .any(|e| e.order_no == "after"),
        "held unprocessed"
    );
    open("close").await;
    assert_eq!(paying.await.unwrap()["res_cd"], "0000");
}

/// A request held on a gate when the faults are cleared goes on at once (processed and
/// answered), instead of waiting out the 30 s for a gate the clear forgot.
#[tokio::test]
async fn clearing_the_faults_releases_a_request_held_on_a_gate() {
    let harness = spawn().await;
    let armed = harness
        .arm_fault(&json!({"path": paths::HUB_PAYMENT,
                           "fault": {"kind": "hold_request", "gate": "close"}}))
        .await;
    assert_eq!(armed.status(), 204);
    let paying = pay_in_background(&harness, "heldthencleared");
    harness.sandbox.until_held("close").await;

    let cleared = harness
        .client
        .delete(harness.url("/_sandbox/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    let answer = tokio::time::timeout(Duration::from_secs(10), paying)
        .await
        .expect("released by the clear, not after 30 s")
        .unwrap();

    assert_eq!(answer["res_cd"], "0000", "{answer}");
    assert!(harness
        .sandbox
        .ledger()
        .iter()
        .any(|e| e.order_no == "heldthencleared"));
}

/// What `until_held` panicked with, or None when it returned; the test fails if it took longer
/// than `bound` either way (an `until_held` that hangs).
async fn until_held_outcome(
    waiting: impl std::future::Future<Output = ()>,
    bound: Duration,
) -> Option<String> {
    use futures_util::FutureExt;
    let outcome = tokio::time::timeout(bound, std::panic::AssertUnwindSafe(waiting).catch_unwind())
        .await
        .expect("until_held hung");
    outcome.err().map(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// A test waiting in `until_held` when the faults are cleared (its scenario's cleanup, another
/// test's `DELETE /_sandbox/faults` on a shared sandbox) fails at once, naming the gate: nothing
/// can be held on a forgotten gate any more. It used to wait for ever.
#[tokio::test]
async fn until_held_fails_at_once_when_the_faults_are_cleared_while_it_waits() {
    let harness = spawn().await;
    harness.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::HoldRequest {
            gate: "close".into(),
        },
    ));
    let mut waiting = Box::pin(harness.sandbox.until_held("close"));
    assert!(
        tokio::time::timeout(Duration::ZERO, &mut waiting)
            .await
            .is_err(),
        "nothing is held yet"
    );

    let cleared = harness
        .client
        .delete(harness.url("/_sandbox/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);

    let panic = until_held_outcome(waiting, Duration::from_secs(5))
        .await
        .expect("until_held fails");
    assert!(
        panic.contains("\"close\"") && panic.contains("cleared"),
        "{panic}"
    );
}

/// A request that never reaches its gate (its rule never matched: a wrong path, another rule
/// first, a flow that stopped earlier) fails the test after a bounded wait, naming the gate,
/// where `until_held` used to wait for ever.
#[tokio::test]
async fn until_held_fails_naming_the_gate_when_nothing_is_held_on_it_within_ten_seconds() {
    let harness = spawn().await;
    harness.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::HoldRequest {
            gate: "never".into(),
        },
    ));
    let started = Instant::now();

    let panic = until_held_outcome(
        harness.sandbox.until_held("never"),
        kcp_sandbox::faults::UNTIL_HELD_AT_MOST + Duration::from_secs(5),
    )
    .await
    .expect("until_held fails");

    assert!(started.elapsed() >= kcp_sandbox::faults::UNTIL_HELD_AT_MOST);
    assert!(
        panic.contains("\"never\"") && panic.contains("no request was held"),
        "{panic}"
    );
}

/// Two requests held on one gate before the test looked: `until_held` returns once for each,
/// however long before the call they were held. A gate used to keep one "held" permit, so the
/// second call waited for a third request.
#[tokio::test]
async fn until_held_returns_once_for_each_request_held_before_it_was_called() {
    let harness = spawn().await;
    harness.sandbox.inject(
        FaultRule::new(
            paths::HUB_PAYMENT,
            Fault::HoldRequest {
                gate: "close".into(),
            },
        )
        .times(2),
    );
    let first = pay_in_background(&harness, "held1");
    let second = pay_in_background(&harness, "held2");
    while !harness.sandbox.armed_faults().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Both matched; let them reach the gate before anyone waits.
    tokio::time::sleep(Duration::from_millis(200)).await;

    for n in 1..=2 {
        assert_eq!(
            until_held_outcome(harness.sandbox.until_held("close"), Duration::from_secs(5)).await,
            None,
            "hold {n}"
        );
    }
    assert!(harness.sandbox.ledger().is_empty(), "held unprocessed");
    harness.sandbox.open_gate("close");
    harness.sandbox.open_gate("close");
    for paying in [first, second] {
        let answer = tokio::time::timeout(Duration::from_secs(5), paying)
            .await
            .expect("let go")
            .unwrap();
        assert_eq!(answer["res_cd"], "0000", "{answer}");
    }
}
