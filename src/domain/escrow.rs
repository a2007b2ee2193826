//! An escrow payment's delivery (iamport `/escrows/logis`) and what KCP holds of it.
//!
//! KCP takes one shipping start per transaction (`STE1`: carrier and waybill only, spec/kcp.md
//! §2.11, documented assumption) and publishes no call that changes it. So openport keeps two
//! things apart: the delivery the merchant registered or changed last, which iamport's API
//! answers, and the waybill KCP holds as far as openport knows it. A shipping start whose answer
//! was lost leaves openport not knowing whether KCP holds it; the states below record exactly how
//! much openport knows, so it never claims more than that (docs/kcp.md §9.4).

/// No length is published for KCP's `deli_numb` / `deli_corp` (spec §2.11); a generous bound
/// that keeps a pasted paragraph from reaching KCP.
pub const DELIVERY_FIELD_MAX: usize = 100;

/// Whether a waybill number can go to KCP (`deli_numb`): it is only useful verbatim, so it must
/// be 1–[`DELIVERY_FIELD_MAX`] bytes without a character KCP forbids (spec §6), never altered.
pub fn invoice_is_sendable(invoice: &str) -> bool {
    let invoice = invoice.trim();
    !invoice.is_empty()
        && invoice.len() <= DELIVERY_FIELD_MAX
        && !invoice.chars().any(crate::domain::text::is_forbidden)
}

/// Carrier and waybill number: all of a delivery that KCP receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waybill {
    pub carrier: String,
    pub invoice: String,
}

/// The delivery a merchant registers (iamport's `logis`). Only the waybill reaches KCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub waybill: Waybill,
    /// When the goods were sent (Unix seconds).
    pub sent_at: i64,
    /// iamport's `receiving_at` (`YYYYMMDD`), kept as given.
    pub receiving_at: Option<String>,
}

/// Where an escrow payment's delivery stands. No record at all: nothing was ever sent to KCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscrowShipping {
    /// Shipping starts sent to KCP whose answer openport has not seen (in flight, or lost):
    /// nothing is registered yet, and KCP may hold any one of these (each waybill once).
    Unanswered(Vec<Waybill>),
    Registered(Registration),
}

/// A registered delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// What the merchant registered or changed last: what the API answers.
    pub delivery: Delivery,
    /// When the merchant registered or last changed it (Unix seconds): iamport's `applied_at`.
    pub applied_at: i64,
    pub at_kcp: KcpShipment,
}

/// The shipping start KCP holds, as far as openport knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KcpShipment {
    /// KCP answered success to a shipping start with this waybill.
    Accepted(Waybill),
    /// KCP answered that it already held a shipping start, one openport had not seen it accept:
    /// one of these earlier sends whose answer was lost, or, when none is listed, one openport
    /// never sent (e.g. registered in KCP's admin console).
    AlreadyHeld(Vec<Waybill>),
}

impl KcpShipment {
    /// The waybill KCP holds, where openport can name it: the accepted one, or the only earlier
    /// send KCP can have accepted.
    pub fn waybill(&self) -> Option<&Waybill> {
        match self {
            Self::Accepted(w) => Some(w),
            Self::AlreadyHeld(earlier) => match earlier.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
    }

    /// True only when KCP itself confirmed the waybill.
    pub fn confirmed(&self) -> bool {
        matches!(self, Self::Accepted(_))
    }
}

/// A delivery is registered already: POST again is refused (iamport's 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyRegistered;

/// No delivery is registered yet: there is nothing to change (iamport's 409 on PUT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotRegistered;

/// A shipping start about to be sent to KCP: the record to write BEFORE sending it, so that a
/// lost answer is remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sending {
    pub record: EscrowShipping,
    /// False when an earlier send carried the same waybill and is still unanswered: then KCP
    /// refusing this one says nothing about that one.
    pub added: bool,
}

/// Registering `waybill` on top of `current`: refused once a delivery is registered; otherwise
/// the waybill joins the unanswered sends.
pub fn sending(
    current: Option<&EscrowShipping>,
    waybill: &Waybill,
) -> Result<Sending, AlreadyRegistered> {
    let mut sent = match current {
        Some(EscrowShipping::Registered(_)) => return Err(AlreadyRegistered),
        Some(EscrowShipping::Unanswered(sent)) => sent.clone(),
        None => Vec::new(),
    };
    let added = !sent.contains(waybill);
    if added {
        sent.push(waybill.clone());
    }
    Ok(Sending {
        record: EscrowShipping::Unanswered(sent),
        added,
    })
}

/// KCP accepted the shipping start of `delivery`: that is what it holds, whatever was recorded
/// meanwhile.
pub fn accepted(delivery: Delivery, now: i64) -> Registration {
    Registration {
        at_kcp: KcpShipment::Accepted(delivery.waybill.clone()),
        delivery,
        applied_at: now,
    }
}

/// KCP answered that it already holds a shipping start (a retry after a lost answer): the
/// merchant's delivery is registered, and KCP's copy is one of the earlier unanswered sends (not
/// this one, unless an earlier send carried the same waybill). Refused when a concurrent request
/// registered a delivery meanwhile.
pub fn already_held(
    current: Option<&EscrowShipping>,
    delivery: Delivery,
    added: bool,
    now: i64,
) -> Result<Registration, AlreadyRegistered> {
    let mut earlier = match current {
        Some(EscrowShipping::Registered(_)) => return Err(AlreadyRegistered),
        Some(EscrowShipping::Unanswered(sent)) => sent.clone(),
        None => Vec::new(),
    };
    if added {
        earlier.retain(|w| w != &delivery.waybill);
    }
    Ok(Registration {
        delivery,
        applied_at: now,
        at_kcp: KcpShipment::AlreadyHeld(earlier),
    })
}

/// KCP definitely did not take the shipping start of `waybill` (refused, or never reached it):
/// the record without it. `None` when nothing changes; `Some(None)` when nothing is left.
pub fn withdrawn(
    current: Option<&EscrowShipping>,
    waybill: &Waybill,
    added: bool,
) -> Option<Option<EscrowShipping>> {
    match current {
        Some(EscrowShipping::Unanswered(sent)) if added && sent.contains(waybill) => {
            let rest: Vec<Waybill> = sent.iter().filter(|w| *w != waybill).cloned().collect();
            Some((!rest.is_empty()).then_some(EscrowShipping::Unanswered(rest)))
        }
        _ => None,
    }
}

/// The merchant changes a registered delivery. KCP has no call for that, so only openport's
/// record changes and KCP keeps what it holds.
pub fn changed(
    current: Option<&EscrowShipping>,
    delivery: Delivery,
    now: i64,
) -> Result<Registration, NotRegistered> {
    match current {
        Some(EscrowShipping::Registered(r)) => Ok(Registration {
            delivery,
            applied_at: now,
            at_kcp: r.at_kcp.clone(),
        }),
        _ => Err(NotRegistered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waybill(invoice: &str) -> Waybill {
        Waybill {
            carrier: "CJ대한통운".into(),
            invoice: invoice.into(),
        }
    }

    fn delivery(invoice: &str) -> Delivery {
        Delivery {
            waybill: waybill(invoice),
            sent_at: 1_795_000_000,
            receiving_at: None,
        }
    }

    fn unanswered(invoices: &[&str]) -> EscrowShipping {
        EscrowShipping::Unanswered(invoices.iter().map(|i| waybill(i)).collect())
    }

    #[test]
    fn a_first_send_is_recorded_as_unanswered_before_it_leaves() {
        let s = sending(None, &waybill("1")).unwrap();
        assert_eq!(s.record, unanswered(&["1"]));
        assert!(s.added);
    }

    #[test]
    fn a_retry_with_the_same_waybill_is_not_added_twice() {
        let s = sending(Some(&unanswered(&["1"])), &waybill("1")).unwrap();
        assert_eq!(s.record, unanswered(&["1"]));
        assert!(!s.added);
    }

    #[test]
    fn sending_is_refused_once_a_delivery_is_registered() {
        let registered = EscrowShipping::Registered(accepted(delivery("1"), 5));
        assert_eq!(
            sending(Some(&registered), &waybill("2")),
            Err(AlreadyRegistered)
        );
    }

    #[test]
    fn an_accepted_send_is_what_kcp_holds_confirmed() {
        let r = accepted(delivery("1"), 5);
        assert_eq!(r.at_kcp.waybill(), Some(&waybill("1")));
        assert!(r.at_kcp.confirmed());
        assert_eq!(r.applied_at, 5);
    }

    #[test]
    fn already_held_after_a_lost_send_of_the_same_waybill_names_it_unconfirmed() {
        let current = unanswered(&["1"]);
        let r = already_held(Some(&current), delivery("1"), false, 5).unwrap();
        assert_eq!(r.delivery, delivery("1"));
        assert_eq!(r.at_kcp, KcpShipment::AlreadyHeld(vec![waybill("1")]));
        assert_eq!(r.at_kcp.waybill(), Some(&waybill("1")));
        assert!(!r.at_kcp.confirmed());
    }

    #[test]
    fn already_held_after_a_lost_send_of_another_waybill_names_the_earlier_one() {
        let current = unanswered(&["1", "2"]);
        let r = already_held(Some(&current), delivery("2"), true, 5).unwrap();
        assert_eq!(r.delivery.waybill, waybill("2"));
        assert_eq!(r.at_kcp.waybill(), Some(&waybill("1")));
    }

    #[test]
    fn already_held_without_any_earlier_send_names_nothing() {
        let current = unanswered(&["2"]);
        let r = already_held(Some(&current), delivery("2"), true, 5).unwrap();
        assert_eq!(r.at_kcp, KcpShipment::AlreadyHeld(vec![]));
        assert_eq!(r.at_kcp.waybill(), None);
    }

    #[test]
    fn already_held_with_several_earlier_sends_names_none_of_them() {
        let current = unanswered(&["1", "2", "3"]);
        let r = already_held(Some(&current), delivery("3"), true, 5).unwrap();
        assert_eq!(r.at_kcp.waybill(), None);
    }

    #[test]
    fn already_held_is_refused_when_a_concurrent_request_registered() {
        let registered = EscrowShipping::Registered(accepted(delivery("1"), 5));
        assert_eq!(
            already_held(Some(&registered), delivery("2"), true, 6),
            Err(AlreadyRegistered)
        );
    }

    #[test]
    fn a_refused_send_is_withdrawn_and_an_earlier_unanswered_one_stays() {
        assert_eq!(
            withdrawn(Some(&unanswered(&["1"])), &waybill("1"), true),
            Some(None)
        );
        assert_eq!(
            withdrawn(Some(&unanswered(&["1", "2"])), &waybill("2"), true),
            Some(Some(unanswered(&["1"])))
        );
        assert_eq!(
            withdrawn(Some(&unanswered(&["1"])), &waybill("1"), false),
            None,
            "the earlier send of the same waybill may still have reached KCP"
        );
    }

    #[test]
    fn a_change_keeps_what_kcp_holds() {
        let registered = EscrowShipping::Registered(accepted(delivery("1"), 5));
        let r = changed(Some(&registered), delivery("2"), 9).unwrap();
        assert_eq!(r.delivery, delivery("2"));
        assert_eq!(r.applied_at, 9);
        assert_eq!(r.at_kcp, KcpShipment::Accepted(waybill("1")));
    }

    #[test]
    fn a_change_needs_a_registered_delivery() {
        assert_eq!(changed(None, delivery("1"), 9), Err(NotRegistered));
        assert_eq!(
            changed(Some(&unanswered(&["1"])), delivery("1"), 9),
            Err(NotRegistered)
        );
    }
}
