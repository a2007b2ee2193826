//! Escrow trades and their shipping start: `mod_type STE1` on `gw/mod/v1/cancel` with the
//! carrier (`deli_corp`) and waybill (`deli_numb`) — documented assumption, spec §2.11 has only
//! legacy socket evidence. KCP publishes no call that changes a registered shipment, so the
//! sandbox keeps the first one it accepted and refuses another (`8502`) — what a merchant whose
//! answer was lost meets when it sends the shipping start again. An escrow trade is cancelled
//! with `STE2` (before the shipping start), `STE4` (after it) or `STE5` (an unpaid virtual
//! account), whole, never with `STSC`/`STPC` (`check_cancel`; same assumption).

use serde::{Deserialize, Serialize};

use crate::clock::kcp_time;
use crate::ledger::TransactionState;
use crate::wire::{self, Fields, Refusal, Reply};
use crate::{codes, Shared};

/// The shipping start KCP holds for an escrow transaction: what a test compares with what the
/// gateway claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowShipment {
    pub tno: String,
    pub deli_corp: String,
    pub deli_numb: String,
    /// When it was accepted, `yyyyMMddHHmmss` KST.
    pub registered_at: String,
}

/// Marks `tno` as an escrow approval, with no shipping start yet.
pub(crate) fn open(s: &Shared, tno: &str) {
    s.windows().escrow.insert(tno.to_owned(), None);
}

/// `STE1`: carrier and waybill are required; once per transaction, on an escrow payment that
/// stands (not cancelled; a virtual account paid in full).
///
/// The ledger stays held from the state check to the shipment write (ledger before windows, the
/// documented lock order): a cancel holds the ledger while it asks whether the trade has shipped,
/// so a concurrent `STE2` comes wholly before or after, as KCP serialises calls on one trade.
/// Released in between, both could answer `0000` and leave a cancelled trade with a shipment.
pub(crate) fn ship(
    s: &Shared,
    site_cd: &str,
    tno: &str,
    fields: &Fields,
) -> Result<Reply, Refusal> {
    let deli_numb = fields.required("deli_numb")?;
    wire::check_text("deli_numb", deli_numb, 100)?;
    let deli_corp = fields.required("deli_corp")?;
    wire::check_text("deli_corp", deli_corp, 100)?;
    let ledger = s.ledger();
    let state = ledger
        .get(tno)
        .filter(|e| e.site_cd == site_cd)
        .map(|e| e.state)
        .ok_or_else(|| Refusal::new(codes::NO_SUCH_TRANSACTION, codes::NO_SUCH_TRANSACTION_MSG))?;
    let mut book = s.windows();
    let Some(shipment) = book.escrow.get_mut(tno) else {
        return Err(Refusal::new(codes::NOT_ESCROW, "에스크로 거래가 아닙니다."));
    };
    match state {
        TransactionState::Cancelled => Err(Refusal::new(
            codes::ALREADY_CANCELLED,
            "이미 취소된 거래입니다.",
        )),
        TransactionState::Issued => Err(Refusal::new(
            codes::VBANK_NOT_DEPOSITED,
            "입금이 완료되지 않은 가상계좌입니다.",
        )),
        _ if shipment.is_some() => Err(Refusal::new(
            codes::ESCROW_ALREADY_SHIPPED,
            "이미 배송시작이 등록된 거래입니다.",
        )),
        _ => {
            *shipment = Some(EscrowShipment {
                tno: tno.to_owned(),
                deli_corp: deli_corp.to_owned(),
                deli_numb: deli_numb.to_owned(),
                registered_at: kcp_time(s.now()),
            });
            tracing::info!(
                tno,
                site_cd,
                "kcp sandbox registered escrow shipping (STE1)"
            );
            let mut reply = Reply::ok();
            reply.set("tno", tno);
            Ok(reply)
        }
    }
}

/// Where an escrow trade stands, for its cancel: `None` for a trade that is not an escrow
/// payment, else whether a shipping start (`STE1`) is held.
pub(crate) fn shipped(s: &Shared, tno: &str) -> Option<bool> {
    s.windows().escrow.get(tno).map(Option::is_some)
}

/// Whether `mod_type` may cancel an escrow trade that stands as `state` (not cancelled), shipped
/// or not (documented assumption, spec §2.11, docs/sandbox.md): `STE2` before the shipping
/// start, `STE4` after it, `STE5` for an unpaid virtual account; never `STSC`/`STPC` (KCP has no
/// partial escrow cancel before the purchase is confirmed). An unpaid account holding deposits
/// short of its amount is then refused by the rule every account holding deposits meets
/// (cancel.rs: `8508` without a refund account), not here: `STE5` closes it as `STSC` does.
pub(crate) fn check_cancel(
    mod_type: &str,
    state: TransactionState,
    shipped: bool,
) -> Result<(), Refusal> {
    let unpaid = state == TransactionState::Issued;
    let refuse = |msg: &str| Err(Refusal::new(codes::ESCROW_STAGE_MISMATCH, msg));
    match mod_type {
        "STSC" | "STPC" => Err(Refusal::new(
            codes::ESCROW_CANCEL_TYPE,
            "에스크로 거래는 STSC/STPC로 취소할 수 없습니다. 배송 전 STE2, 배송 후 STE4, 미입금 가상계좌는 STE5로 요청하십시오.",
        )),
        "STE5" if !unpaid => refuse("STE5는 입금 전 에스크로 가상계좌에만 사용할 수 있습니다."),
        "STE2" | "STE4" if unpaid => {
            refuse("입금 전 에스크로 가상계좌는 STE5로 발급취소하십시오.")
        }
        "STE2" if shipped => refuse("배송시작이 등록된 거래는 STE4로 취소하십시오."),
        "STE4" if !shipped => refuse("배송시작이 등록되지 않은 거래는 STE2로 취소하십시오."),
        _ => Ok(()),
    }
}

/// The shipping start KCP holds for `tno`, if any.
pub(crate) fn shipment(s: &Shared, tno: &str) -> Option<EscrowShipment> {
    s.windows().escrow.get(tno).cloned().flatten()
}

/// Every shipping start registered, in no particular order.
pub(crate) fn shipments(s: &Shared) -> Vec<EscrowShipment> {
    s.windows().escrow.values().flatten().cloned().collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use axum::body::Bytes;

    use super::*;
    use crate::{Sandbox, SandboxConfig};

    /// `STE1` reads where the trade stands and registers its shipment under one hold of the ledger,
    /// which every cancel takes first too (lock order: ledger, then windows). A before-shipping
    /// cancel (`STE2`) at the same moment therefore comes wholly before the shipping start or
    /// wholly after it: never between the read and the write, where both would answer `0000` and
    /// leave a cancelled trade with a shipment KCP would never hold. Here the window book is held
    /// while `STE1` runs, and a cancel of the trade's ledger entry must wait for the shipment.
    #[test]
    fn a_cancel_cannot_come_between_a_shipping_starts_check_and_its_shipment() {
        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        let shared = sandbox.shared.clone();
        let tno = {
            let mut ledger = shared.ledger();
            let entry = ledger
                .new_approval("T0000", "ESC1", "PACA", 20_000, shared.now(), true)
                .unwrap();
            let tno = entry.tno.clone();
            ledger.insert(entry);
            tno
        };
        open(&shared, &tno);

        let windows = shared.windows();
        let ste1 = {
            let (shared, tno) = (shared.clone(), tno.clone());
            std::thread::spawn(move || {
                let body = Bytes::from_static(br#"{"deli_numb":"1234","deli_corp":"CJ"}"#);
                let fields = Fields::parse(&body).unwrap();
                ship(&shared, "T0000", &tno, &fields).map_err(|refusal| refusal.code)
            })
        };
        // STE1 has read the trade and waits for the window book.
        let deadline = Instant::now() + Duration::from_secs(2);
        while shared.ledger.try_lock().is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let cancel = {
            let (shared, tno) = (shared.clone(), tno.clone());
            std::thread::spawn(move || {
                let mut ledger = shared.ledger();
                let entry = ledger.get_mut(&tno).unwrap();
                let balance = entry.balance;
                entry.record_cancel("STE2", balance, kcp_time(shared.now()), None);
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let cancelled_meanwhile = cancel.is_finished();
        drop(windows);

        let shipped = ste1.join().unwrap();
        cancel.join().unwrap();
        assert!(
            !cancelled_meanwhile,
            "the cancel went through between STE1's check and its shipment"
        );
        assert_eq!(shipped.map(|_| ()), Ok(()), "STE1 came first");
    }
}
