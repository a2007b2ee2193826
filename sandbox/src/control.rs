//! `/_sandbox/*`: the control API for tests and the CLI. Not part of KCP's surface, so it uses
//! plain HTTP semantics (status codes, JSON errors) rather than KCP's envelope.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::batch::BatchKey;
use crate::escrow::EscrowShipment;
use crate::faults::FaultRule;
use crate::ledger::LedgerEntry;
use crate::point::PointAccount;
use crate::Shared;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/_sandbox/faults",
            post(add_fault).delete(clear_faults).get(list_faults),
        )
        .route("/_sandbox/gates/{gate}/open", post(open_gate))
        .route("/_sandbox/settings", get(settings).post(change_settings))
        .route("/_sandbox/ledger", get(ledger))
        .route("/_sandbox/batch-keys", get(batch_keys))
        .route("/_sandbox/points", get(points))
        .route("/_sandbox/escrow-shipments", get(escrow_shipments))
        .route("/_sandbox/certificates", post(issue_certificate))
        .route("/_sandbox/notify-url", post(set_notify_url))
        .route("/_sandbox/vbank/deposit", post(deposit))
        .route("/_sandbox/notifications", get(notifications))
        .route("/_sandbox/notifications/flush", post(flush))
}

/// Arms a rule; one naming a path the sandbox does not serve is refused (400, naming the paths),
/// since it could never fire and the test relying on it would pass for the wrong reason.
async fn add_fault(
    State(shared): State<Arc<Shared>>,
    Json(rule): Json<FaultRule>,
) -> Result<StatusCode, (StatusCode, String)> {
    if !crate::paths::ALL.contains(&rule.path.as_str()) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "no KCP path {:?} in this sandbox; one of: {}",
                rule.path,
                crate::paths::ALL.join(", ")
            ),
        ));
    }
    shared.faults().add(rule);
    Ok(StatusCode::NO_CONTENT)
}

/// Disarms every rule and forgets every gate, releasing what is held on one
/// ([`crate::faults::FaultBook::clear`]): a clean fault state for the next scenario.
async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.faults().clear();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(shared): State<Arc<Shared>>) -> Json<Vec<FaultRule>> {
    Json(shared.faults().rules())
}

/// Lets the answer (or request) held on `gate` by a `hold_answer` / `hold_request` rule go, as
/// [`crate::Sandbox::open_gate`] does: a script arming those over HTTP would otherwise wait out
/// [`crate::faults::HOLD_AT_MOST`]. Opening a gate nothing is held on yet lets the next one
/// through at once; the rule's disappearing from `GET /_sandbox/faults` shows it has matched.
async fn open_gate(State(shared): State<Arc<Shared>>, Path(gate): Path<String>) -> StatusCode {
    shared.faults().gate(&gate).open.notify_one();
    StatusCode::NO_CONTENT
}

/// The switches of how the sandbox behaves that can change while it serves.
#[derive(Serialize)]
struct Settings {
    /// [`crate::SandboxConfig::refuse_duplicate_orders`].
    refuse_duplicate_orders: bool,
    /// [`crate::SandboxConfig::stra_keeps_original`].
    stra_keeps_original: bool,
    /// [`crate::SandboxConfig::stra_same_tno`].
    stra_same_tno: bool,
}

/// What [`change_settings`] is posted: the switches to change, the others left as they are.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsChange {
    refuse_duplicate_orders: Option<bool>,
    stra_keeps_original: Option<bool>,
    stra_same_tno: Option<bool>,
}

fn current_settings(shared: &Shared) -> Settings {
    Settings {
        refuse_duplicate_orders: shared.refuses_duplicate_orders(),
        stra_keeps_original: shared.stra_keeps_original(),
        stra_same_tno: shared.stra_same_tno(),
    }
}

async fn settings(State(shared): State<Arc<Shared>>) -> Json<Settings> {
    Json(current_settings(&shared))
}

/// Changes the switches named and answers them all. A name the sandbox does not know is refused
/// (422), so a script that misspells one finds out instead of testing the default.
async fn change_settings(
    State(shared): State<Arc<Shared>>,
    Json(change): Json<SettingsChange>,
) -> Json<Settings> {
    if let Some(refuse) = change.refuse_duplicate_orders {
        shared.set_refuse_duplicate_orders(refuse);
        tracing::info!(refuse, "kcp sandbox refuse_duplicate_orders switched");
    }
    if let Some(keeps) = change.stra_keeps_original {
        shared.set_stra_keeps_original(keeps);
        tracing::info!(keeps, "kcp sandbox stra_keeps_original switched");
    }
    if let Some(same) = change.stra_same_tno {
        shared.set_stra_same_tno(same);
        tracing::info!(same, "kcp sandbox stra_same_tno switched");
    }
    Json(current_settings(&shared))
}

async fn ledger(State(shared): State<Arc<Shared>>) -> Json<Vec<LedgerEntry>> {
    Json(shared.ledger().snapshot())
}

/// Batch key states with a digest of each key, never the key.
async fn batch_keys(State(shared): State<Arc<Shared>>) -> Json<Vec<BatchKey>> {
    Json(shared.batch_keys().snapshot())
}

/// Benepia balances, without passwords.
async fn points(State(shared): State<Arc<Shared>>) -> Json<Vec<PointAccount>> {
    Json(shared.points().snapshot())
}

/// The escrow shipping starts (`STE1`) registered: carrier and waybill by tno.
async fn escrow_shipments(State(shared): State<Arc<Shared>>) -> Json<Vec<EscrowShipment>> {
    Json(crate::escrow::shipments(&shared))
}

#[derive(Deserialize)]
struct CertificateRequest {
    site_cd: String,
    passphrase: String,
}

/// Issues a merchant certificate and encrypted key, e.g. for a local gateway's config.
async fn issue_certificate(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<CertificateRequest>,
) -> Response {
    let issued =
        tokio::task::spawn_blocking(move || shared.ca.issue(&request.site_cd, &request.passphrase))
            .await;
    match issued {
        Ok(Ok(issued)) => Json(issued).into_response(),
        Ok(Err(error)) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": error.to_string() })),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[derive(Deserialize)]
struct NotifyUrl {
    site_cd: String,
    url: String,
}

async fn set_notify_url(State(shared): State<Arc<Shared>>, Json(r): Json<NotifyUrl>) -> StatusCode {
    crate::notify::set_url(&shared, &r.site_cd, &r.url);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Deposit {
    tno: String,
    /// Defaults to the account's amount for a deposit, to the last deposit for a reversal
    /// (`op_cd` 13).
    amount: Option<i64>,
    op_cd: Option<String>,
}

/// Records a deposit or a reversal and sends its `TX00`: 404 for no such account, 400 for one the
/// bank would not take (closed, past its deadline, a reversal of more than was deposited).
async fn deposit(State(shared): State<Arc<Shared>>, Json(d): Json<Deposit>) -> Response {
    let op_cd = d.op_cd.as_deref().unwrap_or(crate::notify::OP_CD_DEPOSIT);
    let Some(account_amount) = shared.ledger().get(&d.tno).map(|e| e.amount) else {
        return (StatusCode::NOT_FOUND, "no such virtual account").into_response();
    };
    let amount = match d.amount {
        Some(a) => a,
        None if op_cd == crate::notify::OP_CD_REVERSAL => {
            match crate::notify::last_deposit(&shared, &d.tno) {
                Some(last) => last,
                None => {
                    return (
                        StatusCode::BAD_REQUEST,
                        "nothing was deposited on the account: no deposit to reverse",
                    )
                        .into_response()
                }
            }
        }
        None => account_amount,
    };
    match crate::notify::deposit(&shared, &d.tno, amount, op_cd) {
        Ok(record) => {
            crate::notify::deliver(shared.clone(), record.clone());
            Json(record).into_response()
        }
        Err(e @ crate::notify::DepositError::NoSuchAccount) => {
            (StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn notifications(State(shared): State<Arc<Shared>>) -> Response {
    Json(crate::notify::log(&shared)).into_response()
}

async fn flush(State(shared): State<Arc<Shared>>) -> Response {
    Json(serde_json::json!({"acknowledged": crate::notify::flush(&shared).await})).into_response()
}
