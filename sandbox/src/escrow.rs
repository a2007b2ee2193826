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
    let state = s
        .ledger()
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
/// partial escrow cancel before the purchase is confirmed).
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
