//! Payment status machine and the cancel rules of spec/iamport-v1.md §4.2.

/// The largest amount of an order: KCP's `good_mny` has 12 digits (spec/kcp.md §6).
pub const MAX_AMOUNT: i64 = 999_999_999_999;

/// The longest merchant_uid openport takes, in characters. iamport documents 40 (its OAS), but
/// nothing here is bound by it: KCP's `ordr_idxx` is openport's own order number
/// (`ids::order_no_for`), never the merchant_uid, and longer ones have been accepted since the
/// first release.
pub const MERCHANT_UID_MAX_CHARS: usize = 80;

/// At most this many `notice_url`s per payment, each at most [`NOTICE_URL_MAX_CHARS`] long: every
/// URL becomes a webhook delivery with retries, and a browser's `request_pay` may set them, so an
/// unbounded list would let one checkout queue thousands of deliveries.
pub const NOTICE_URLS_MAX: usize = 10;
pub const NOTICE_URL_MAX_CHARS: usize = 2048;

/// Refuses a `notice_url` list longer than [`NOTICE_URLS_MAX`], with a URL longer than
/// [`NOTICE_URL_MAX_CHARS`], or with one that is not an absolute http(s) URL (no webhook could
/// ever reach it: the merchant would learn of it only from failed deliveries); the message is
/// iamport-style, for a 400.
pub fn check_notice_urls(urls: &[String]) -> Result<(), String> {
    if urls.len() > NOTICE_URLS_MAX
        || urls
            .iter()
            .any(|u| u.chars().count() > NOTICE_URL_MAX_CHARS)
    {
        return Err(format!(
            "notice_url은 {NOTICE_URLS_MAX}개 이하, 각 {NOTICE_URL_MAX_CHARS}자 이하여야 합니다."
        ));
    }
    if !urls.iter().all(|u| is_web_url(u)) {
        return Err("notice_url은 http:// 또는 https://로 시작하는 URL이어야 합니다.".into());
    }
    Ok(())
}

/// Whether `url` is an absolute http(s) URL with a host: the only kind a webhook can be POSTed to.
pub fn is_web_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// iamport's `pg_provider` of KCP's payment window and key-in payments.
pub const PG_KCP: &str = "kcp";
/// iamport's `pg_provider` of KCP's billing channel: billing keys (CustomerAnnotation), the window
/// that issues one, and every charge made with one (`again`, scheduled, `onetime` with
/// `customer_uid`), as iamport shows payments of its `kcp_billing` channel.
pub const PG_KCP_BILLING: &str = "kcp_billing";

/// Why a nonzero `tax_free` is refused, on every charge, cancel and `request_pay`: KCP splits an
/// amount into taxable and tax-free parts only for sites contracted for mixed tax (`TG03`), which
/// openport does not send, so a tax-free part would be charged or refunded as taxable.
pub const TAX_FREE_UNSUPPORTED: &str = "면세공급가액(tax_free)은 지원하지 않습니다. KCP 복합과세(TG03) 결제를 지원하지 않으므로 tax_free는 0이거나 생략해야 합니다.";

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

/// KCP's sales slip (매출전표) of a payment, which iamport shows as `receipt_url`: KCP's admin
/// host (its test host for test-mode payments) with `cmd` by pay method (`card_bill` for cards and
/// the easy pays KCP charges as cards, `acnt_bill` bank transfer, `vcnt_bill` virtual account),
/// the `tno`, openport's KCP order number (`ordr_idxx`) and the amount, as iamport's and KCP's
/// samples build it. None for methods KCP publishes no slip for (phone, points, gift
/// certificates) and without a `tno` or an amount. Which payments show it is the caller's call.
pub fn receipt_url(
    pay_method: &str,
    tno: &str,
    order_no: &str,
    amount: i64,
    test_mode: bool,
) -> Option<String> {
    let cmd = match pay_method {
        "card" | "samsung" | "kakaopay" | "naverpay" | "payco" => "card_bill",
        "trans" => "acnt_bill",
        "vbank" => "vcnt_bill",
        _ => return None,
    };
    if tno.is_empty() || amount <= 0 {
        return None;
    }
    let host = if test_mode {
        "https://testadmin8.kcp.co.kr"
    } else {
        "https://admin8.kcp.co.kr"
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("cmd", cmd)
        .append_pair("tno", tno)
        .append_pair("order_no", order_no)
        .append_pair("trade_mony", &amount.to_string())
        .finish();
    Some(format!("{host}/assist/bill.BillActionNew.do?{query}"))
}

/// Why a cancel request is refused before anything is sent to KCP. Messages are iamport's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefusal {
    #[error("이미 전액취소된 주문입니다.")]
    AlreadyFullyCancelled,
    #[error("결제완료 상태의 결제건만 취소할 수 있습니다.")]
    NotPaid,
    /// [`CancelRefusal::NotPaid`] of a virtual account still waiting for its deposit (`ready`):
    /// nothing was paid to refund, and the merchant who wants it gone is told the call that
    /// closes it (spec §4.7). iamport's words first, for clients that match on them.
    #[error("결제완료 상태의 결제건만 취소할 수 있습니다. 입금 전인 가상계좌는 DELETE /vbanks/{imp_uid} 로 발급을 취소해 주세요.")]
    UnpaidVirtualAccount { imp_uid: String },
    #[error("취소 가능 잔액이 일치하지 않습니다. (checksum: {given}, 취소가능잔액: {balance})")]
    ChecksumMismatch { given: i64, balance: i64 },
    #[error("취소요청금액({requested})이 취소가능잔액({balance})보다 큽니다.")]
    OverBalance { requested: i64, balance: i64 },
    #[error("취소요청금액은 0보다 커야 합니다.")]
    NegativeAmount,
    /// A paid payment of 0 won (the billing-key window's `issue` payment: KCP charged nothing)
    /// has nothing KCP could refund; the key itself is deleted with
    /// `DELETE /subscribe/customers/{customer_uid}`.
    #[error("취소할 금액이 없습니다. (0원 결제건은 취소할 수 없습니다)")]
    NothingToCancel,
}

impl CancelRefusal {
    /// This refusal as told about a payment of `pay_method` standing `status`: a `ready` virtual
    /// account's [`CancelRefusal::NotPaid`] names `DELETE /vbanks/{imp_uid}`.
    pub fn of_payment(self, status: PaymentStatus, pay_method: &str, imp_uid: &str) -> Self {
        match self {
            Self::NotPaid if status == PaymentStatus::Ready && pay_method == "vbank" => {
                Self::UnpaidVirtualAccount {
                    imp_uid: imp_uid.to_owned(),
                }
            }
            refusal => refusal,
        }
    }
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
        PaymentStatus::Paid if balance > 0 => {}
        PaymentStatus::Paid => return Err(CancelRefusal::NothingToCancel),
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
    fn a_paid_payment_of_nothing_has_nothing_to_cancel() {
        for requested in [None, Some(0), Some(1)] {
            assert_eq!(
                plan_cancel(Paid, 0, 0, requested, None),
                Err(CancelRefusal::NothingToCancel)
            );
        }
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
    fn only_a_ready_virtual_accounts_not_paid_refusal_names_delete_vbanks() {
        let told = |status, pay_method| {
            CancelRefusal::NotPaid
                .of_payment(status, pay_method, "imp_1")
                .to_string()
        };
        let plain = CancelRefusal::NotPaid.to_string();
        let ready_vbank = told(Ready, "vbank");
        assert!(ready_vbank.starts_with(&plain), "{ready_vbank}");
        assert!(
            ready_vbank.contains("DELETE /vbanks/imp_1"),
            "{ready_vbank}"
        );
        for (status, pay_method) in [(Failed, "vbank"), (Pending, "vbank"), (Ready, "card")] {
            assert_eq!(told(status, pay_method), plain, "{status:?} {pay_method}");
        }
        assert_eq!(
            CancelRefusal::AlreadyFullyCancelled.of_payment(Ready, "vbank", "imp_1"),
            CancelRefusal::AlreadyFullyCancelled
        );
    }

    #[test]
    fn a_receipt_url_is_kcps_slip_for_its_method_and_mode() {
        assert_eq!(
            receipt_url("card", "22336466628585", "imp_347242536261", 1004, false).as_deref(),
            Some("https://admin8.kcp.co.kr/assist/bill.BillActionNew.do?cmd=card_bill&tno=22336466628585&order_no=imp_347242536261&trade_mony=1004"),
            "iamport's published answer"
        );
        let test = |method| receipt_url(method, "1", "OP1", 10, true);
        assert!(test("trans").unwrap().starts_with(
            "https://testadmin8.kcp.co.kr/assist/bill.BillActionNew.do?cmd=acnt_bill&"
        ));
        assert!(test("vbank").unwrap().contains("cmd=vcnt_bill&"));
        assert!(test("kakaopay").unwrap().contains("cmd=card_bill&"));
        for method in ["phone", "point", "cultureland", "booknlife", "happymoney"] {
            assert_eq!(test(method), None, "{method}");
        }
        assert_eq!(receipt_url("card", "", "OP1", 10, true), None);
        assert_eq!(
            receipt_url("card", "1", "OP1", 0, true),
            None,
            "a billing key's issue"
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
