//! Which inquiry asks KCP what became of a payment's trade. KCP's `std/inquery` finds a trade only
//! under its own `pay_type` (spec/kcp.md §2.10): asked with the card's PACA, a bank transfer is
//! answered 8201 "no such trade", which a resolver would read as "KCP did nothing" — an approval
//! failed while KCP holds it, a refund KCP made reported as a failed cancel. Approvals and cancels
//! (service/resolve.rs) therefore choose here, from the payment's `pay_method`, in one place.
use crate::domain::checkout::{window_plan, WindowMethod};
use crate::pg::{Pg, PgError, TradeRef, TradeState};

/// An inquiry whose answer is a [`TradeState`]. Virtual accounts have none: theirs (PAVC,
/// `inquire_vbank`) says whether the account is open, paid or closed, and callers take them first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TradeInquiry {
    /// PACA: cards, easy-pay inside the card window, billing-key payments.
    Card,
    /// PAPT: Benepia points (service/benepia.rs).
    Point,
    /// PABK, PAMC, PATK: bank transfer, phone and gift certificates of the window.
    Window(WindowMethod),
}

impl TradeInquiry {
    /// The inquiry for a payment's `pay_method`; None for virtual accounts and for a method
    /// openport has no inquiry for (an operator reconciles those by hand).
    pub(crate) fn of(pay_method: &str) -> Option<Self> {
        match window_plan(pay_method, false)?.method {
            WindowMethod::Card => Some(Self::Card),
            WindowMethod::Point => Some(Self::Point),
            method @ (WindowMethod::Bank | WindowMethod::Phone | WindowMethod::GiftCertificate) => {
                Some(Self::Window(method))
            }
            WindowMethod::VirtualAccount | WindowMethod::BatchKey => None,
        }
    }

    /// The window method of a window inquiry: its answer becomes a [`crate::pg::WindowApproval`].
    pub(crate) fn window_method(self) -> Option<WindowMethod> {
        match self {
            Self::Window(method) => Some(method),
            Self::Card | Self::Point => None,
        }
    }

    /// Asks KCP about `trade` with this inquiry's `pay_type`.
    pub(crate) async fn ask(
        self,
        connector: &dyn Pg,
        trade: &TradeRef,
    ) -> Result<TradeState, PgError> {
        match self {
            Self::Card => connector.inquire(trade).await,
            Self::Point => connector.inquire_points(trade).await,
            Self::Window(method) => connector.inquire_window(trade, method).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pay_method_is_inquired_under_its_own_pay_type() {
        for card in ["", "card", "kakaopay", "naverpay", "samsung", "payco"] {
            assert_eq!(TradeInquiry::of(card), Some(TradeInquiry::Card), "{card}");
        }
        assert_eq!(TradeInquiry::of("point"), Some(TradeInquiry::Point));
        assert_eq!(
            TradeInquiry::of("trans"),
            Some(TradeInquiry::Window(WindowMethod::Bank))
        );
        assert_eq!(
            TradeInquiry::of("phone"),
            Some(TradeInquiry::Window(WindowMethod::Phone))
        );
        for gift in ["cultureland", "smartculture", "booknlife", "happymoney"] {
            assert_eq!(
                TradeInquiry::of(gift),
                Some(TradeInquiry::Window(WindowMethod::GiftCertificate)),
                "{gift}"
            );
        }
    }

    #[test]
    fn virtual_accounts_and_unknown_methods_have_no_trade_inquiry() {
        assert_eq!(TradeInquiry::of("vbank"), None);
        assert_eq!(TradeInquiry::of("paypal"), None);
    }
}
