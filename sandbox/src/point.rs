//! Benepia welfare points on `POST /gw/hub/v1/payment` (`pay_method` POINT, spec/kcp.md §2.8,
//! seed 003): balance (`pt_txtype` 97000000) and payment (91200000), plus the point side of
//! cancel (`STSC` gives the points back) and of the partial cancel by re-approval (`STRA`: the
//! live trade cancelled and the rest approved anew, an assumption described at [`reapprove`]; or,
//! switched, the rest approved anew and the live trade left approved) on `/gw/mod/v1/cancel`.
//!
//! A point payment is a ledger entry with `pay_method` PAPT; balances live in [`PointBook`],
//! seeded from [`crate::test_points`].

use serde::{Deserialize, Serialize};

use crate::codes;
use crate::ledger::{self, Ledger, PointSummary, TransactionState};
use crate::test_points::{self, BenepiaAccount};
use crate::wire::{self, Fields, Refusal, Reply};
use crate::Shared;

/// `pt_txtype` of a balance inquiry (seed 003 §2.2).
const BALANCE: &str = "97000000";
/// `pt_txtype` of a payment (seed 003 §2.3).
const PAY: &str = "91200000";
/// `pt_issue` of Benepia, the only point issuer emulated.
const BENEPIA: &str = "SCWB";
/// `pt_paycode` 04: points only (seed 003 §2.3).
const POINTS_ONLY: &str = "04";
/// A balance inquiry's `amount` is fixed to 1004 (seed 003 §2.2).
const BALANCE_AMOUNT: i64 = 1004;
/// `pt_memcorp_cd` is `String 4` (seed 003 §2.2, §2.3): a longer code is refused as any field
/// over its length is (9503).
const MEMBER_COMPANY_MAX: usize = 4;

/// A Benepia account as `GET /_sandbox/points` shows it: no password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointAccount {
    pub pt_idno: String,
    pub pt_memcorp_cd: String,
    pub balance: i64,
}

struct Account {
    known: BenepiaAccount,
    balance: i64,
}

/// Every Benepia account's balance.
pub(crate) struct PointBook {
    accounts: Vec<Account>,
}

impl Default for PointBook {
    fn default() -> Self {
        Self {
            accounts: test_points::ACCOUNTS
                .iter()
                .map(|known| Account {
                    known: *known,
                    balance: known.balance,
                })
                .collect(),
        }
    }
}

impl PointBook {
    pub fn balance(&self, id: &str) -> Option<i64> {
        self.accounts
            .iter()
            .find(|account| account.known.id == id)
            .map(|account| account.balance)
    }

    pub fn snapshot(&self) -> Vec<PointAccount> {
        self.accounts
            .iter()
            .map(|account| PointAccount {
                pt_idno: account.known.id.to_owned(),
                pt_memcorp_cd: account.known.memcorp_cd.to_owned(),
                balance: account.balance,
            })
            .collect()
    }

    /// The book with a state file's balances (as [`PointBook::snapshot`] gave them); accounts the
    /// file does not name keep their test balance. An account this sandbox does not know is
    /// refused: the file belongs to other test accounts. A file saved before the test accounts'
    /// member company was cut to KCP's 4 characters names them by the former one, which is
    /// still theirs.
    pub fn restore(kept: &[PointAccount]) -> Result<Self, String> {
        let mut book = Self::default();
        for saved in kept {
            let account = book
                .accounts
                .iter_mut()
                .find(|account| {
                    account.known.id == saved.pt_idno
                        && (account.known.memcorp_cd == saved.pt_memcorp_cd
                            || saved.pt_memcorp_cd == test_points::FORMER_MEMBER_COMPANY)
                })
                .ok_or_else(|| {
                    format!(
                        "Benepia account of member company {} is not one of this sandbox's test accounts",
                        saved.pt_memcorp_cd
                    )
                })?;
            account.balance = saved.balance;
        }
        Ok(book)
    }

    fn account_mut(&mut self, id: &str) -> Option<&mut Account> {
        self.accounts
            .iter_mut()
            .find(|account| account.known.id == id)
    }

    /// The member `pt_idno` of `pt_memcorp_cd`, if `pt_pwd` is theirs.
    fn log_in(&mut self, credentials: &Credentials<'_>) -> Result<&mut Account, Refusal> {
        let account = self
            .account_mut(credentials.id)
            .filter(|account| account.known.memcorp_cd == credentials.memcorp_cd)
            .ok_or_else(|| {
                Refusal::new(
                    codes::POINT_ACCOUNT_NOT_FOUND,
                    "베네피아 회원 정보가 존재하지 않습니다.",
                )
            })?;
        if account.known.password != credentials.password {
            return Err(Refusal::new(
                codes::POINT_PASSWORD_MISMATCH,
                "베네피아 비밀번호가 일치하지 않습니다.",
            ));
        }
        Ok(account)
    }

    /// Gives the points of a cancelled payment back.
    pub fn refund(&mut self, id: &str, amount: i64) {
        if let Some(account) = self.account_mut(id) {
            account.balance += amount;
        }
    }

    /// Takes back the points of a [`PointBook::refund`] whose call was refused after all.
    fn undo_refund(&mut self, id: &str, amount: i64) {
        self.refund(id, -amount);
    }
}

/// `pt_idno`, `pt_pwd`, `pt_memcorp_cd`.
struct Credentials<'a> {
    id: &'a str,
    password: &'a str,
    memcorp_cd: &'a str,
}

/// What balance and payment requests share, format-checked.
struct PointRequest<'a> {
    amount: i64,
    order_no: &'a str,
    credentials: Credentials<'a>,
}

/// `pay_method` POINT: balance or payment, by `pt_txtype`.
pub(crate) fn hub(shared: &Shared, fields: &Fields, site_cd: &str) -> Result<Reply, Refusal> {
    let pay = match fields.required("pt_txtype")? {
        BALANCE => false,
        PAY => true,
        other => {
            return Err(Refusal::new(
                codes::TX_TYPE_ERROR,
                format!("샌드박스가 지원하지 않는 pt_txtype 입니다: {other}"),
            ))
        }
    };
    let request = parse_common(fields)?;
    if pay {
        pay_with_points(shared, fields, site_cd, &request)
    } else {
        balance(shared, &request)
    }
}

fn parse_common(fields: &Fields) -> Result<PointRequest<'_>, Refusal> {
    if fields.required("pt_issue")? != BENEPIA {
        return Err(Refusal::new(
            codes::INVALID_FIELD,
            "샌드박스는 베네피아(pt_issue SCWB) 포인트만 지원합니다.",
        ));
    }
    let amount = wire::amount("amount", fields.required("amount")?)?;
    if fields.required("currency")? != "410" {
        return Err(Refusal::new(
            codes::AMOUNT_ERROR,
            "샌드박스는 원화(410)만 지원합니다.",
        ));
    }
    let order_no = fields.required("ordr_idxx")?;
    wire::check_order_no("ordr_idxx", order_no)?;
    let id = fields.required("pt_idno")?;
    wire::check_text("pt_idno", id, 16)?;
    let password = fields.required("pt_pwd")?;
    // In bytes, as every other length (`wire::check_text`); not checked for KCP's forbidden
    // characters, which a password may hold.
    if password.len() > 16 {
        return Err(Refusal::new(
            codes::INVALID_FIELD,
            "pt_pwd 은(는) 최대 16바이트입니다.",
        ));
    }
    let memcorp_cd = fields.required("pt_memcorp_cd")?;
    wire::check_text("pt_memcorp_cd", memcorp_cd, MEMBER_COMPANY_MAX)?;
    Ok(PointRequest {
        amount,
        order_no,
        credentials: Credentials {
            id,
            password,
            memcorp_cd,
        },
    })
}

fn balance(shared: &Shared, request: &PointRequest<'_>) -> Result<Reply, Refusal> {
    if request.amount != BALANCE_AMOUNT {
        return Err(Refusal::new(
            codes::AMOUNT_ERROR,
            "포인트 조회 시 amount 는 1004 고정입니다.",
        ));
    }
    let mut points = shared.points();
    let account = points.log_in(&request.credentials)?;
    let mut reply = Reply::ok();
    reply.set("rsv_pnt", account.balance.to_string());
    Ok(reply)
}

fn pay_with_points(
    shared: &Shared,
    fields: &Fields,
    site_cd: &str,
    request: &PointRequest<'_>,
) -> Result<Reply, Refusal> {
    if fields.required("pt_paycode")? != POINTS_ONLY {
        return Err(Refusal::new(
            codes::INVALID_FIELD,
            "pt_paycode 는 04(포인트 단일결제)만 지원합니다.",
        ));
    }
    let pt_mny = wire::amount("pt_mny", fields.required("pt_mny")?)?;
    if request.amount == 0 {
        return Err(Refusal::new(
            codes::AMOUNT_ERROR,
            "결제금액은 0보다 커야 합니다.",
        ));
    }
    if pt_mny != request.amount {
        return Err(Refusal::new(codes::AMOUNT_MISMATCH, "결제금액 불일치"));
    }
    for (name, max) in [
        ("good_name", 100),
        ("buyr_name", 30),
        ("buyr_mail", 50),
        ("buyr_tel2", 20),
    ] {
        if let Some(value) = fields.optional(name) {
            wire::check_text(name, value, max)?;
        }
    }

    let mut ledger = shared.ledger();
    let mut points = shared.points();
    let account = points.log_in(&request.credentials)?;
    let point = PointSummary {
        pt_issue: BENEPIA.to_owned(),
        account_id: account.known.id.to_owned(),
        memcorp_cd: account.known.memcorp_cd.to_owned(),
    };
    let charge = Charge {
        site_cd,
        order_no: request.order_no,
        amount: request.amount,
        point,
        reapproval_of: None,
        refuse_duplicate: shared.refuses_duplicate_orders(),
    };
    let (tno, reply) = charge.record(shared, &mut ledger, &mut points)?;
    tracing::info!(%tno, site_cd, order_no = request.order_no, amount = request.amount, "kcp sandbox approved point payment");
    Ok(reply)
}

/// Points taken from an account and recorded as a PAPT approval: a payment or a re-approval.
struct Charge<'a> {
    site_cd: &'a str,
    order_no: &'a str,
    amount: i64,
    point: PointSummary,
    reapproval_of: Option<String>,
    /// Whether a standing approval of `order_no` refuses this one (`9520`): the sandbox's
    /// `refuse_duplicate_orders`, except for KCP's own second trade on an order (a re-approval
    /// keeping the original's number beside it, [`reapprove_keeping_original`]).
    refuse_duplicate: bool,
}

impl Charge<'_> {
    /// Checks the order and the balance, takes the points and answers `tno, pnt_amount,
    /// pnt_app_time, pnt_app_no, rsv_pnt` (seed 003 §2.3), a re-approval `tno, pnt_amount,
    /// pnt_app_no` only (§2.4).
    fn record(
        self,
        shared: &Shared,
        ledger: &mut Ledger,
        points: &mut PointBook,
    ) -> Result<(String, Reply), Refusal> {
        let mut entry = ledger.new_approval(
            self.site_cd,
            self.order_no,
            "PAPT",
            self.amount,
            shared.now(),
            self.refuse_duplicate,
        )?;
        let account = points.account_mut(&self.point.account_id).ok_or_else(|| {
            Refusal::new(
                codes::POINT_ACCOUNT_NOT_FOUND,
                "베네피아 회원 정보가 존재하지 않습니다.",
            )
        })?;
        if account.balance < self.amount {
            return Err(Refusal::new(
                codes::POINT_INSUFFICIENT,
                "잔여 포인트가 부족합니다.",
            ));
        }
        account.balance -= self.amount;
        let rsv_pnt = account.balance.to_string();

        entry.app_no = ledger::new_point_app_no();
        entry.point = Some(self.point);
        entry.reapproval_of = self.reapproval_of;
        let mut reply = Reply::ok();
        reply
            .set("tno", entry.tno.as_str())
            .set("pnt_amount", entry.amount.to_string())
            .set("pnt_app_no", entry.app_no.as_str());
        // KCP's re-approval answer (seed 003) has tno, pnt_app_no and pnt_amount only.
        if entry.reapproval_of.is_none() {
            reply
                .set("pnt_app_time", entry.app_time.as_str())
                .set("rsv_pnt", rsv_pnt);
        }
        let tno = entry.tno.clone();
        ledger.insert(entry);
        Ok((tno, reply))
    }
}

/// An `STRA` request: the partial cancel of a live point payment, which keeps `mod_mny` of it
/// (seed 003 §2.4, read as in [`reapprove`]).
pub(crate) struct Reapproval<'a> {
    pub mod_mny: i64,
    /// The new approval's order number; the cancelled payment's when absent.
    pub order_no: Option<&'a str>,
    pub mod_desc: Option<&'a str>,
}

/// A re-approval that leaves its original standing ([`reapprove_keeping_original`]).
struct KeptOriginal<'a> {
    /// The original point payment.
    tno: &'a str,
    point: PointSummary,
    /// The re-approval's order number.
    order_no: &'a str,
    /// Whether `order_no` is the original's own.
    keeps_order_no: bool,
}

/// `STRA` on the point payment `tno`: cancels it and approves `mod_mny` (what is left after the
/// partial cancel) from the same account under a new tno and ledger entry, in one call.
///
/// *Assumption* (docs/kcp.md §8.3): seed 003 §2.4 lists STSC "전체 취소" and STRA "재승인" and
/// says a same-day cancel of the whole amount must be STSC, which only makes sense if STRA acts on
/// the live trade (a cancel of part of it). The other reading, STSC first and STRA on the cancelled
/// trade, is refused here as any call on a cancelled trade is (`8133`): of the two, it is the one
/// whose failure loses money (every partial cancel a full refund), while this one's failure (KCP
/// refusing STRA on a live trade) moves nothing. A re-approval of nothing or of the whole amount
/// or more is refused (`8105`): a full cancel is STSC.
///
/// With [`crate::SandboxConfig::stra_keeps_original`] the call follows a third reading instead
/// ([`reapprove_keeping_original`]): the same checks, then `mod_mny` approved under a new tno
/// while the original stays approved. With [`crate::SandboxConfig::stra_same_tno`] (which takes
/// precedence) it follows a fourth, the one seed 003's examples show ([`reapprove_in_place`]):
/// the same checks, then the trade itself keeps `mod_mny` and the answer names its own tno.
pub(crate) fn reapprove(
    shared: &Shared,
    ledger: &mut Ledger,
    site_cd: &str,
    tno: &str,
    canc_time: String,
    request: &Reapproval<'_>,
) -> Result<Reply, Refusal> {
    let original = ledger
        .get(tno)
        .filter(|entry| entry.site_cd == site_cd)
        .ok_or_else(|| Refusal::new(codes::NO_SUCH_TRANSACTION, codes::NO_SUCH_TRANSACTION_MSG))?;
    let Some(point) = original.point.clone() else {
        return Err(Refusal::new(
            codes::REAPPROVAL_NOT_POINT,
            "재승인(STRA)은 포인트 거래만 가능합니다.",
        ));
    };
    if original.state == TransactionState::Cancelled {
        return Err(Refusal::new(
            codes::ALREADY_CANCELLED,
            "이미 취소된 거래입니다.",
        ));
    }
    if request.mod_mny >= original.balance {
        return Err(Refusal::new(
            codes::AMOUNT_ERROR,
            "재승인 금액은 원거래 금액보다 작아야 합니다. 전체취소는 STSC로 요청하십시오.",
        ));
    }
    let order_no = request
        .order_no
        .unwrap_or(original.order_no.as_str())
        .to_owned();
    if shared.stra_same_tno() {
        return Ok(reapprove_in_place(
            shared, ledger, site_cd, tno, canc_time, request,
        ));
    }
    if shared.stra_keeps_original() {
        let keeps_order_no = order_no == original.order_no;
        let reapproval = KeptOriginal {
            tno,
            point,
            order_no: &order_no,
            keeps_order_no,
        };
        return reapprove_keeping_original(shared, ledger, site_cd, &reapproval, request);
    }
    let before = original.clone();
    let balance = original.balance;

    // Cancelled first, so that the re-approval may keep the original's order number; undone
    // when the re-approval is refused: KCP does both or neither.
    let mut points = shared.points();
    if let Some(entry) = ledger.get_mut(tno) {
        entry.record_cancel(
            "STRA",
            balance,
            canc_time,
            request.mod_desc.map(str::to_owned),
        );
    }
    points.refund(&point.account_id, balance);
    let charge = Charge {
        site_cd,
        order_no: &order_no,
        amount: request.mod_mny,
        point: point.clone(),
        reapproval_of: Some(tno.to_owned()),
        refuse_duplicate: shared.refuses_duplicate_orders(),
    };
    let (new_tno, reply) = match charge.record(shared, ledger, &mut points) {
        Ok(recorded) => recorded,
        Err(refusal) => {
            points.undo_refund(&point.account_id, balance);
            if let Some(entry) = ledger.get_mut(tno) {
                *entry = before;
            }
            return Err(refusal);
        }
    };
    if let Some(original) = ledger.get_mut(tno) {
        original.reapproved_by = Some(new_tno.clone());
    }
    tracing::info!(tno, %new_tno, site_cd, order_no, amount = request.mod_mny, "kcp sandbox re-approved part of a point payment");
    Ok(reply)
}

/// `STRA` read as "approve `mod_mny` anew from the member of `tno`" and nothing more
/// ([`crate::SandboxConfig::stra_keeps_original`]): seed 003 §2.4 calls STRA "재승인" with
/// `mod_mny` "재승인 요청 금액" and its examples do not show whether the original is cancelled
/// (nor whether the answer's tno is new). The re-approval is a new `PAPT` entry (`reapproval_of` =
/// `tno`) taking `mod_mny` from the account; the original keeps its state and balance, and stays
/// open to `STSC` and to further re-approvals. The member has then paid the original and the
/// re-approval: what a gateway recording a partial cancel must notice.
///
/// A re-approval under the original's order number (`mod_ordr_idxx` absent, as seed 003 allows,
/// or the same) is KCP's own second trade on that order, beside the original it leaves standing:
/// the duplicate-order refusal (`9520`) is the sandbox's guard against a merchant charging an order
/// twice, and no source gives it here, so it is not applied (the default reading approves the
/// same request, having cancelled the original first). Another order's standing number still is.
fn reapprove_keeping_original(
    shared: &Shared,
    ledger: &mut Ledger,
    site_cd: &str,
    reapproval: &KeptOriginal<'_>,
    request: &Reapproval<'_>,
) -> Result<Reply, Refusal> {
    let tno = reapproval.tno;
    let order_no = reapproval.order_no;
    let mut points = shared.points();
    let charge = Charge {
        site_cd,
        order_no,
        amount: request.mod_mny,
        point: reapproval.point.clone(),
        reapproval_of: Some(tno.to_owned()),
        refuse_duplicate: shared.refuses_duplicate_orders() && !reapproval.keeps_order_no,
    };
    let (new_tno, reply) = charge.record(shared, ledger, &mut points)?;
    tracing::info!(tno, %new_tno, site_cd, order_no, amount = request.mod_mny, "kcp sandbox re-approved points from a point payment and left it approved (stra_keeps_original)");
    Ok(reply)
}

/// `STRA` read as "re-approve `mod_mny` in place" ([`crate::SandboxConfig::stra_same_tno`]):
/// seed 003 §2.4's payment, STSC and STRA answers all carry the same tno (and the same
/// `pnt_app_no`), which can be read as KCP keeping the trade and lowering what it holds. The
/// trade records a cancel `STRA` of its balance less `mod_mny` (state `STPC`, balance =
/// `mod_mny`, its order number and approval number unchanged: `mod_ordr_idxx` names nothing
/// here), that difference goes back to the account, and the answer is a re-approval's (`tno`,
/// `pnt_amount` = `mod_mny`, `pnt_app_no`) naming the trade's own tno. No new ledger entry, so
/// the trade stays open to STSC and to further re-approvals. The caller made the checks
/// (live point trade, `0 < mod_mny < balance`).
fn reapprove_in_place(
    shared: &Shared,
    ledger: &mut Ledger,
    site_cd: &str,
    tno: &str,
    canc_time: String,
    request: &Reapproval<'_>,
) -> Reply {
    let mut points = shared.points();
    let mut reply = Reply::ok();
    if let Some(entry) = ledger.get_mut(tno) {
        let returned = entry.balance - request.mod_mny;
        entry.record_cancel(
            "STRA",
            returned,
            canc_time,
            request.mod_desc.map(str::to_owned),
        );
        if let Some(point) = &entry.point {
            points.refund(&point.account_id, returned);
        }
        reply
            .set("tno", entry.tno.as_str())
            .set("pnt_amount", entry.balance.to_string())
            .set("pnt_app_no", entry.app_no.as_str());
    }
    tracing::info!(
        tno,
        site_cd,
        amount = request.mod_mny,
        "kcp sandbox re-approved part of a point payment in place (stra_same_tno)"
    );
    reply
}

#[cfg(test)]
mod tests {
    use super::{PointAccount, PointBook};
    use crate::test_points::{BENEPIA_01, BENEPIA_02, FORMER_MEMBER_COMPANY};

    #[test]
    fn a_state_file_naming_the_former_member_company_restores_the_test_accounts() {
        let saved = |memcorp: &str, balance| PointAccount {
            pt_idno: BENEPIA_01.id.into(),
            pt_memcorp_cd: memcorp.into(),
            balance,
        };
        let book = PointBook::restore(&[saved(FORMER_MEMBER_COMPANY, 1_234)]).unwrap();
        assert_eq!(book.balance(BENEPIA_01.id), Some(1_234));
        assert_eq!(book.balance(BENEPIA_02.id), Some(BENEPIA_02.balance));
        assert_eq!(book.snapshot()[0].pt_memcorp_cd, BENEPIA_01.memcorp_cd);
        assert!(PointBook::restore(&[saved("B999", 1)]).is_err());
    }
}
