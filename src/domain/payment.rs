//! Payment status machine and the cancel rules of spec/iamport-v1.md §4.2.

/// The largest amount of an order: KCP's `good_mny` has 12 digits (spec/kcp.md §6).
pub const MAX_AMOUNT: i64 = 999_999_999_999;

/// The longest merchant_uid openport takes, in characters. iamport documents 40 (its OAS), but
/// nothing here is bound by it: KCP's `ordr_idxx` is openport's own order number
/// (`ids::order_no_for`), never the merchant_uid, and longer ones have been accepted since the
/// first release.
pub const MERCHANT_UID_MAX_CHARS: usize = 80;

/// Internal status. `Pending` is an attempt whose outcome openport does not know yet (sent to KCP,
/// answer lost or not yet recorded); iamport has no such word, so it is shown as `ready` and is
/// never shown as `paid` or `failed` on a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    Pending,
    Ready,
    Paid,
    Failed,
    Cancelled,
}

impl PaymentStatus {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn from_db(s: &str) -> Self {
        match s {
            "ready" => Self::Ready,
            "paid" => Self::Paid,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => Self::Pending,
        }
    }

    /// The word iamport clients see.
    pub fn as_iamport(self) -> &'static str {
        match self {
            Self::Pending | Self::Ready => "ready",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A status filter of the lookup endpoints: `all` (also `undefined` and empty, which [NODETS]
/// sends) or one iamport status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    All,
    Only(PaymentStatus),
}

impl StatusFilter {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "all" | "undefined" => Self::All,
            "ready" => Self::Only(PaymentStatus::Ready),
            "paid" => Self::Only(PaymentStatus::Paid),
            "failed" => Self::Only(PaymentStatus::Failed),
            "cancelled" => Self::Only(PaymentStatus::Cancelled),
            _ => return None,
        })
    }

    /// Database status words this filter matches (`ready` includes pending attempts).
    pub fn db_statuses(self) -> Vec<&'static str> {
        match self {
            Self::All => vec![],
            Self::Only(PaymentStatus::Ready | PaymentStatus::Pending) => vec!["ready", "pending"],
            Self::Only(s) => vec![s.as_db()],
        }
    }
}

/// Why a cancel request is refused before anything is sent to KCP. Messages are iamport's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefusal {
    #[error("이미 전액취소된 주문입니다.")]
    AlreadyFullyCancelled,
    #[error("결제완료 상태의 결제건만 취소할 수 있습니다.")]
    NotPaid,
    #[error("취소 가능 잔액이 일치하지 않습니다. (checksum: {given}, 취소가능잔액: {balance})")]
    ChecksumMismatch { given: i64, balance: i64 },
    #[error("취소요청금액({requested})이 취소가능잔액({balance})보다 큽니다.")]
    OverBalance { requested: i64, balance: i64 },
    #[error("취소요청금액은 0보다 커야 합니다.")]
    NegativeAmount,
}

/// What to ask KCP for, once the request passed the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelPlan {
    /// Amount cancelled by this request.
    pub amount: i64,
    /// Balance before this cancel (KCP `rem_mny`).
    pub balance_before: i64,
    /// True when this cancel takes the balance to zero.
    pub is_full: bool,
}

/// Applies spec/iamport-v1.md §4.2 in order: the checksum is compared before anything else
/// happens; an omitted or zero amount means the whole remaining balance; more than the balance is
/// refused.
pub fn plan_cancel(
    status: PaymentStatus,
    amount: i64,
    cancel_amount: i64,
    requested: Option<i64>,
    checksum: Option<i64>,
) -> Result<CancelPlan, CancelRefusal> {
    let balance = amount - cancel_amount;
    match status {
        PaymentStatus::Paid => {}
        PaymentStatus::Cancelled if balance > 0 => {}
        PaymentStatus::Cancelled => return Err(CancelRefusal::AlreadyFullyCancelled),
        _ => return Err(CancelRefusal::NotPaid),
    }
    if let Some(given) = checksum {
        if given != balance {
            return Err(CancelRefusal::ChecksumMismatch { given, balance });
        }
    }
    let requested = match requested {
        None | Some(0) => balance,
        Some(n) if n < 0 => return Err(CancelRefusal::NegativeAmount),
        Some(n) => n,
    };
    if requested > balance {
        return Err(CancelRefusal::OverBalance { requested, balance });
    }
    Ok(CancelPlan {
        amount: requested,
        balance_before: balance,
        is_full: requested == balance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentStatus::*;

    #[test]
    fn an_omitted_amount_cancels_the_whole_remaining_balance() {
        let p = plan_cancel(Cancelled, 1000, 300, None, None).unwrap();
        assert_eq!(
            p,
            CancelPlan {
                amount: 700,
                balance_before: 700,
                is_full: true
            }
        );
    }

    #[test]
    fn the_checksum_is_compared_before_the_amount() {
        assert_eq!(
            plan_cancel(Paid, 1000, 0, Some(5000), Some(999)),
            Err(CancelRefusal::ChecksumMismatch {
                given: 999,
                balance: 1000
            })
        );
    }

    #[test]
    fn more_than_the_balance_and_a_zero_balance_are_refused() {
        assert_eq!(
            plan_cancel(Paid, 1000, 0, Some(1001), None),
            Err(CancelRefusal::OverBalance {
                requested: 1001,
                balance: 1000
            })
        );
        assert_eq!(
            plan_cancel(Cancelled, 1000, 1000, None, None),
            Err(CancelRefusal::AlreadyFullyCancelled)
        );
        assert_eq!(
            plan_cancel(Failed, 1000, 0, None, None),
            Err(CancelRefusal::NotPaid)
        );
    }

    #[test]
    fn status_filters_accept_what_clients_send() {
        assert_eq!(StatusFilter::parse("undefined"), Some(StatusFilter::All));
        assert_eq!(StatusFilter::parse(""), Some(StatusFilter::All));
        assert_eq!(StatusFilter::parse("paid"), Some(StatusFilter::Only(Paid)));
        assert_eq!(StatusFilter::parse("bogus"), None);
        assert_eq!(
            StatusFilter::Only(Ready).db_statuses(),
            vec!["ready", "pending"]
        );
    }
}
