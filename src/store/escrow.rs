//! `payments.escrow_logis`: an escrow payment's delivery record ([`EscrowShipping`]) as JSON, and
//! its compare-and-set write.
//!
//! The column predates the record of what KCP holds: a row written before it is the plain
//! delivery (`{"company","invoice","sent_at","applied_at","receiving_at"}`), which openport only
//! ever wrote after KCP accepted that very waybill, so it reads as `Accepted`.
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};

use super::entity::payment;
use crate::domain::escrow::{Delivery, EscrowShipping, KcpShipment, Registration, Waybill};

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Stored {
    Unanswered {
        sent: Vec<StoredWaybill>,
    },
    Registered {
        #[serde(flatten)]
        delivery: StoredDelivery,
        kcp: StoredKcp,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum StoredKcp {
    Accepted {
        #[serde(flatten)]
        waybill: StoredWaybill,
    },
    AlreadyHeld {
        earlier: Vec<StoredWaybill>,
    },
}

#[derive(Serialize, Deserialize)]
struct StoredWaybill {
    company: String,
    invoice: String,
}

/// The merchant's delivery, in the column's original (pre-`state`) shape.
#[derive(Serialize, Deserialize)]
struct StoredDelivery {
    company: String,
    invoice: String,
    sent_at: i64,
    applied_at: i64,
    #[serde(default)]
    receiving_at: Option<String>,
}

/// The stored text is neither a record nor an old plain delivery (or, never in practice, a record
/// would not serialize).
#[derive(Debug, thiserror::Error)]
#[error("unreadable escrow delivery record: {0}")]
pub struct Unreadable(#[from] serde_json::Error);

impl From<&Waybill> for StoredWaybill {
    fn from(w: &Waybill) -> Self {
        Self {
            company: w.carrier.clone(),
            invoice: w.invoice.clone(),
        }
    }
}

impl From<StoredWaybill> for Waybill {
    fn from(w: StoredWaybill) -> Self {
        Self {
            carrier: w.company,
            invoice: w.invoice,
        }
    }
}

impl StoredDelivery {
    fn into_registration(self, at_kcp: Option<KcpShipment>) -> Registration {
        let waybill = Waybill {
            carrier: self.company,
            invoice: self.invoice,
        };
        Registration {
            at_kcp: at_kcp.unwrap_or_else(|| KcpShipment::Accepted(waybill.clone())),
            delivery: Delivery {
                waybill,
                sent_at: self.sent_at,
                receiving_at: self.receiving_at,
            },
            applied_at: self.applied_at,
        }
    }
}

fn waybills(ws: &[Waybill]) -> Vec<StoredWaybill> {
    ws.iter().map(StoredWaybill::from).collect()
}

fn from_stored(ws: Vec<StoredWaybill>) -> Vec<Waybill> {
    ws.into_iter().map(Waybill::from).collect()
}

pub fn encode(record: &EscrowShipping) -> Result<String, Unreadable> {
    let stored = match record {
        EscrowShipping::Unanswered(sent) => Stored::Unanswered {
            sent: waybills(sent),
        },
        EscrowShipping::Registered(r) => Stored::Registered {
            delivery: StoredDelivery {
                company: r.delivery.waybill.carrier.clone(),
                invoice: r.delivery.waybill.invoice.clone(),
                sent_at: r.delivery.sent_at,
                applied_at: r.applied_at,
                receiving_at: r.delivery.receiving_at.clone(),
            },
            kcp: match &r.at_kcp {
                KcpShipment::Accepted(w) => StoredKcp::Accepted { waybill: w.into() },
                KcpShipment::AlreadyHeld(earlier) => StoredKcp::AlreadyHeld {
                    earlier: waybills(earlier),
                },
            },
        },
    };
    Ok(serde_json::to_string(&stored)?)
}

pub fn decode(text: Option<&str>) -> Result<Option<EscrowShipping>, Unreadable> {
    let Some(text) = text else {
        return Ok(None);
    };
    let value: serde_json::Value = serde_json::from_str(text)?;
    if value.get("state").is_none() {
        let old: StoredDelivery = serde_json::from_value(value)?;
        return Ok(Some(EscrowShipping::Registered(
            old.into_registration(None),
        )));
    }
    Ok(Some(match serde_json::from_value::<Stored>(value)? {
        Stored::Unanswered { sent } => EscrowShipping::Unanswered(from_stored(sent)),
        Stored::Registered { delivery, kcp } => {
            EscrowShipping::Registered(delivery.into_registration(Some(match kcp {
                StoredKcp::Accepted { waybill } => KcpShipment::Accepted(waybill.into()),
                StoredKcp::AlreadyHeld { earlier } => {
                    KcpShipment::AlreadyHeld(from_stored(earlier))
                }
            })))
        }
    }))
}

/// Writes `new` into the payment's record if the record still is `expected` (the text the change
/// was decided on); false when another request changed it meanwhile (nothing written).
pub async fn replace(
    db: &impl ConnectionTrait,
    payment_id: i64,
    expected: Option<&str>,
    new: Option<String>,
    now: i64,
) -> Result<bool, DbErr> {
    let still = match expected {
        Some(text) => payment::Column::EscrowLogis.eq(text),
        None => payment::Column::EscrowLogis.is_null(),
    };
    let res = payment::Entity::update_many()
        .col_expr(payment::Column::EscrowLogis, Expr::value(new))
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.eq(payment_id))
        .filter(still)
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
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

    fn registration(at_kcp: KcpShipment) -> EscrowShipping {
        EscrowShipping::Registered(Registration {
            delivery: Delivery {
                waybill: waybill("2"),
                sent_at: 1_795_000_000,
                receiving_at: Some("20261231".into()),
            },
            applied_at: 1_795_000_100,
            at_kcp,
        })
    }

    #[test]
    fn every_record_reads_back_as_written() {
        for record in [
            EscrowShipping::Unanswered(vec![waybill("1"), waybill("2")]),
            registration(KcpShipment::Accepted(waybill("2"))),
            registration(KcpShipment::AlreadyHeld(vec![waybill("1")])),
            registration(KcpShipment::AlreadyHeld(vec![])),
        ] {
            assert_eq!(
                decode(Some(&encode(&record).unwrap())).unwrap(),
                Some(record)
            );
        }
    }

    #[test]
    fn a_registered_record_keeps_the_old_plain_delivery_fields_at_the_top() {
        let text = encode(&registration(KcpShipment::Accepted(waybill("2")))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["company"], "CJ대한통운");
        assert_eq!(v["invoice"], "2");
        assert_eq!(v["applied_at"], 1_795_000_100);
    }

    #[test]
    fn a_plain_delivery_written_before_the_record_reads_as_accepted_by_kcp() {
        let old = r#"{"company":"CJ대한통운","invoice":"2","sent_at":1795000000,"applied_at":1795000100,"receiving_at":"20261231"}"#;
        assert_eq!(
            decode(Some(old)).unwrap(),
            Some(registration(KcpShipment::Accepted(waybill("2"))))
        );
    }

    #[test]
    fn no_text_is_no_record_and_garbage_is_unreadable() {
        assert_eq!(decode(None).unwrap(), None);
        assert!(decode(Some("{")).is_err());
        assert!(decode(Some(r#"{"state":"shipped"}"#)).is_err());
    }
}
