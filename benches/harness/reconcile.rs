//! After a level that takes payments (`onetime`, `again`): KCP's side and openport's side must agree.
//! Every successful request is one approval in the embedded sandbox's ledger and one `paid` payment
//! in the gateway's database, and nothing else was approved or recorded: a fast benchmark that lost
//! or doubled payments would be worthless.
use anyhow::bail;
use serde_json::Value;

use crate::load::{read, Target};

/// Counts at one moment: approvals standing in the sandbox ledger (this gateway process) and paid
/// payments of the merchant in the database.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    approvals: u64,
    paid: u64,
}

pub async fn counts(target: &Target) -> anyhow::Result<Counts> {
    let res = target
        .client
        .get(format!("{}/_sandbox/ledger", target.sandbox_base))
        .send()
        .await?;
    let (status, ledger) = read(res).await?;
    let Value::Array(entries) = ledger else {
        bail!("GET /_sandbox/ledger answered HTTP {status}");
    };
    let approvals = entries.iter().filter(|e| e["state"] == "STSR").count() as u64;
    let res = target
        .client
        .get(format!("{}/payments/status/paid?limit=1", target.base))
        .header("Authorization", &target.token)
        .send()
        .await?;
    let (status, body) = read(res).await?;
    let Some(paid) = body["response"]["total"].as_u64() else {
        bail!("GET /payments/status/paid answered HTTP {status}: {body}");
    };
    Ok(Counts { approvals, paid })
}

/// Checks that `successes` requests made exactly `successes` approvals and paid payments between
/// `before` and `after`; the summary line for the report.
pub fn check(before: Counts, after: Counts, successes: u64) -> anyhow::Result<String> {
    let approvals = after.approvals.saturating_sub(before.approvals);
    let paid = after.paid.saturating_sub(before.paid);
    if approvals != successes || paid != successes {
        bail!(
            "ledger and database disagree: {successes} successful requests, {approvals} new \
             approvals in the sandbox ledger, {paid} new paid payments"
        );
    }
    Ok(format!(
        "reconciled: {successes} successful requests = {approvals} new KCP approvals = {paid} new paid payments"
    ))
}
