//! KCP's standard payment window (spec/kcp.md §1–2.5, §2.11): trade registration, approval of the
//! window's result at `gw/enc/v1/payment`, billing keys from the batch window, and the escrow
//! shipping status change. Same error semantics as the rest of the connector: a transport
//! failure, 5xx or unreadable answer is `Unknown`; a readable refusal is `Declined`; KCP
//! approving something other than the order is `Mismatch` (the gateway net-cancels).
use std::collections::HashMap;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument as _;

use super::{check_approval_matches, codes, unusable, Answer, KcpConnector};
use crate::domain::card::mask_card_number;
use crate::pg::kcp::wire::{parse_kcp_time, parse_won, CardPaymentResponse, WireError};
use crate::pg::{
    BatchKey, CardApproval, DeclineReason, EscrowDelivery, PgCheckout, PgError, RegisteredTrade,
    TradeRegistration, WindowApproval, WindowApprovalRequest, WindowMethod, Won,
};

/// `tran_cd` of a billing-key (batch) window result.
pub const TRAN_CD_BATCH: &str = "00300001";

/// Trade registration body (spec/kcp.md §2.1, newer endpoint with `kcp_cert_info`).
#[derive(Serialize)]
struct TradeRegisterBody<'a> {
    site_cd: &'a str,
    kcp_cert_info: &'a str,
    ordr_idxx: &'a str,
    good_mny: String,
    good_name: &'a str,
    pay_method: &'static str,
    #[serde(rename = "Ret_URL")]
    ret_url: &'a str,
    escw_used: &'static str,
    user_agent: &'a str,
}

/// Approval with window data (spec/kcp.md §2.4). `ordr_mony` is the merchant's own amount.
#[derive(Serialize)]
struct EncApprovalBody<'a> {
    tran_cd: &'a str,
    site_cd: &'a str,
    kcp_cert_info: &'a str,
    enc_data: &'a str,
    enc_info: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ordr_mony: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pay_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ordr_no: Option<&'a str>,
}

/// Escrow shipping start (`STE1`, documented assumption: spec/kcp.md §2.11).
#[derive(Serialize)]
struct EscrowBody<'a> {
    site_cd: &'a str,
    kcp_cert_info: &'a str,
    kcp_sign_data: String,
    tno: &'a str,
    mod_type: &'static str,
    deli_numb: &'a str,
    deli_corp: &'a str,
}

fn kcp_pay_method(m: WindowMethod) -> &'static str {
    match m {
        WindowMethod::Card => "CARD",
        WindowMethod::Bank => "BANK",
        WindowMethod::VirtualAccount => "VCNT",
        WindowMethod::Phone => "MOBX",
        WindowMethod::Point => "TPNT",
        WindowMethod::GiftCertificate => "GIFT",
        WindowMethod::BatchKey => "AUTH",
    }
}

/// `use_pay_method` bitmask → approval `pay_type` (spec/kcp.md §2.3 table).
pub fn pay_type_of(use_pay_method: &str) -> Option<&'static str> {
    Some(match use_pay_method {
        "100000000000" => "PACA",
        "010000000000" => "PABK",
        "001000000000" => "PAVC",
        "000100000000" => "PAPT",
        "000010000000" => "PAMC",
        "000000001000" => "PATK",
        _ => return None,
    })
}

fn invalid(message: &str) -> PgError {
    PgError::Declined {
        code: "invalid_request".into(),
        message: message.into(),
        reason: DeclineReason::Other,
    }
}

/// String fields of an answer (KCP sends every value as a string; numbers are tolerated).
struct Fields(HashMap<String, Value>);

impl Fields {
    fn get(&self, k: &str) -> Option<String> {
        match self.0.get(k)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    fn need(&self, k: &str) -> Result<String, WireError> {
        self.get(k)
            .ok_or_else(|| WireError(format!("answer without {k}")))
    }
    fn won(&self, keys: &[&str]) -> Result<Won, WireError> {
        keys.iter()
            .find_map(|k| self.get(k))
            .and_then(|s| parse_won(&s))
            .ok_or_else(|| WireError(format!("answer without a readable {}", keys.join("/"))))
    }
    fn time(&self, keys: &[&str]) -> chrono::DateTime<chrono::Utc> {
        keys.iter()
            .find_map(|k| self.get(k))
            .and_then(|s| parse_kcp_time(&s))
            .unwrap_or_else(chrono::Utc::now)
    }
}

/// A non-card approval answer per `pay_type` (spec/kcp.md §2.4 fields).
fn parse_window(pay_type: &str, f: Fields) -> Result<WindowApproval, WireError> {
    {
        let tno = f.need("tno")?;
        let order_no = f.get("order_no").unwrap_or_default();
        Ok(match pay_type {
            "PABK" => WindowApproval::Bank {
                amount: f.won(&["bk_mny", "amount"])?,
                approved_at: f.time(&["app_time"]),
                bank_code: f.get("bank_code").unwrap_or_default(),
                bank_name: f.get("bank_name").unwrap_or_default(),
                tno,
                order_no,
            },
            "PAVC" => WindowApproval::VirtualAccount {
                amount: f.won(&["amount"])?,
                bank_code: f.get("bankcode").unwrap_or_default(),
                bank_name: f.get("bankname").unwrap_or_default(),
                account: f.need("account")?,
                holder: f.get("depositor").unwrap_or_default(),
                due: f
                    .get("va_date")
                    .and_then(|s| parse_kcp_time(&s))
                    .ok_or_else(|| WireError("answer without va_date".into()))?,
                issued_at: f.time(&["app_time"]),
                tno,
                order_no,
            },
            "PAMC" => WindowApproval::Phone {
                amount: f.won(&["amount"])?,
                approved_at: f.time(&["app_time"]),
                carrier: f.get("commid").unwrap_or_default(),
                mobile_no: f.get("mobile_no").unwrap_or_default(),
                tno,
                order_no,
            },
            "PAPT" => WindowApproval::Point {
                amount: f.won(&["pnt_amount", "amount"])?,
                approved_at: f.time(&["pnt_app_time", "app_time"]),
                app_no: f.get("pnt_app_no").unwrap_or_default(),
                tno,
                order_no,
            },
            _ => WindowApproval::Gift {
                amount: f.won(&["amount"])?,
                approved_at: f.time(&["tk_app_time", "app_time"]),
                van_code: f.get("tk_van_code").unwrap_or_default(),
                app_no: f.get("tk_app_no").unwrap_or_default(),
                tno,
                order_no,
            },
        })
    }
}

fn window_matches(
    a: WindowApproval,
    amount: Won,
    order_no: &str,
) -> Result<WindowApproval, PgError> {
    let (tno, got_amount, got_order) = match &a {
        WindowApproval::Card(c) => (&c.tno, c.amount, c.order_no.as_str()),
        WindowApproval::Bank {
            tno,
            amount,
            order_no,
            ..
        }
        | WindowApproval::VirtualAccount {
            tno,
            amount,
            order_no,
            ..
        }
        | WindowApproval::Phone {
            tno,
            amount,
            order_no,
            ..
        }
        | WindowApproval::Point {
            tno,
            amount,
            order_no,
            ..
        }
        | WindowApproval::Gift {
            tno,
            amount,
            order_no,
            ..
        } => (tno, *amount, order_no.as_str()),
    };
    if got_amount != amount || (!got_order.is_empty() && got_order != order_no) {
        return Err(PgError::Mismatch {
            tno: tno.clone(),
            detail: format!(
                "approved {got_amount} for order {got_order}, asked {amount} for {order_no}"
            ),
        });
    }
    Ok(a)
}

#[async_trait]
impl PgCheckout for KcpConnector {
    async fn register_trade(&self, req: &TradeRegistration) -> Result<RegisteredTrade, PgError> {
        let span = tracing::info_span!("kcp.register_trade", site_cd = %self.site_cd, ordr_idxx = %req.order_no);
        async {
            let body = TradeRegisterBody {
                site_cd: &self.site_cd,
                kcp_cert_info: self.signer.cert_info(),
                ordr_idxx: &req.order_no,
                good_mny: req.amount.to_string(),
                good_name: &req.good_name,
                pay_method: kcp_pay_method(req.method),
                ret_url: &req.return_url,
                escw_used: if req.escrow { "Y" } else { "N" },
                user_agent: &req.user_agent,
            };
            // Registration answers with `Code`, not `res_cd` (spec/kcp.md §2.1); nothing is
            // charged by it, so any failure is safe to report as such.
            let res = self
                .http
                .post(&self.urls.trade_register)
                .timeout(self.timeout)
                .json(&body)
                .send()
                .await
                .map_err(|e| PgError::Unknown(format!("trade registration: {e}")))?;
            let status = res.status();
            let value: Value = res.json().await.map_err(|e| {
                PgError::Unknown(format!("trade registration answer (HTTP {status}): {e}"))
            })?;
            let f = Fields(serde_json::from_value(value).unwrap_or_default());
            let code = f.get("Code").unwrap_or_default();
            if code != "0000" {
                return Err(PgError::Declined {
                    message: f.get("Message").unwrap_or_else(|| "거래등록 실패".into()),
                    code,
                    reason: DeclineReason::Other,
                });
            }
            let need = |k: &str| f.need(k).map_err(unusable);
            Ok(RegisteredTrade {
                approval_key: need("approvalKey")?,
                trace_no: need("traceNo")?,
                pay_url: need("PayUrl")?,
            })
        }
        .instrument(span)
        .await
    }

    async fn approve_window(&self, req: &WindowApprovalRequest) -> Result<WindowApproval, PgError> {
        let span = tracing::info_span!("kcp.approve_window", site_cd = %self.site_cd, ordr_idxx = %req.order_no, tno = tracing::field::Empty);
        async {
            let pay_type = pay_type_of(&req.use_pay_method)
                .ok_or_else(|| invalid("unknown use_pay_method"))?;
            if req.enc_data.is_empty() || req.enc_info.is_empty() {
                return Err(invalid("window result without enc_data/enc_info"));
            }
            let body = EncApprovalBody {
                tran_cd: &req.tran_cd,
                site_cd: &self.site_cd,
                kcp_cert_info: self.signer.cert_info(),
                enc_data: &req.enc_data,
                enc_info: &req.enc_info,
                ordr_mony: Some(req.amount.to_string()),
                pay_type: Some(pay_type),
                ordr_no: Some(&req.order_no),
            };
            let approval = if pay_type == "PACA" {
                match self
                    .exchange::<_, CardPaymentResponse>(&self.urls.enc_payment, &body)
                    .await?
                {
                    Answer::Refused { code, message } => {
                        return Err(codes::declined(&code, &message))
                    }
                    Answer::Success(resp) => {
                        let card = CardApproval::try_from(resp).map_err(unusable)?;
                        WindowApproval::Card(check_approval_matches(
                            card,
                            req.amount,
                            &req.order_no,
                        )?)
                    }
                }
            } else {
                match self
                    .exchange::<_, HashMap<String, Value>>(&self.urls.enc_payment, &body)
                    .await?
                {
                    Answer::Refused { code, message } => {
                        return Err(codes::declined(&code, &message))
                    }
                    Answer::Success(map) => {
                        parse_window(pay_type, Fields(map)).map_err(unusable)?
                    }
                }
            };
            window_matches(approval, req.amount, &req.order_no)
        }
        .instrument(span)
        .await
    }

    async fn issue_batch_key_from_window(
        &self,
        req: &WindowApprovalRequest,
    ) -> Result<BatchKey, PgError> {
        let span = tracing::info_span!("kcp.batch_key_window", site_cd = %self.site_cd, ordr_idxx = %req.order_no);
        async {
            let body = EncApprovalBody {
                tran_cd: TRAN_CD_BATCH,
                site_cd: &self.site_cd,
                kcp_cert_info: self.signer.cert_info(),
                enc_data: &req.enc_data,
                enc_info: &req.enc_info,
                ordr_mony: None,
                pay_type: None,
                ordr_no: None,
            };
            match self
                .exchange::<_, HashMap<String, Value>>(&self.urls.enc_payment, &body)
                .await?
            {
                Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
                Answer::Success(map) => {
                    let f = Fields(map);
                    let batch_key = f.need("batch_key").map_err(unusable)?;
                    Ok(BatchKey {
                        batch_key,
                        issuer_code: f.get("card_cd").unwrap_or_default(),
                        issuer_name: f.get("card_name").unwrap_or_default(),
                        masked_card_number: f
                            .get("card_mask_no")
                            .map(|n| mask_card_number(&n))
                            .unwrap_or_default(),
                        is_check_card: f.get("card_bin_type_02").as_deref() == Some("1"),
                        is_corporate: f.get("card_bin_type_01").as_deref() == Some("1"),
                    })
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn escrow_delivery(&self, req: &EscrowDelivery) -> Result<(), PgError> {
        let span =
            tracing::info_span!("kcp.escrow_delivery", site_cd = %self.site_cd, tno = %req.tno);
        async {
            let sign = self
                .signer
                .sign(&format!("{}^{}^STE1", self.site_cd, req.tno))
                .map_err(|e| PgError::Config(e.to_string()))?;
            let body = EscrowBody {
                site_cd: &self.site_cd,
                kcp_cert_info: self.signer.cert_info(),
                kcp_sign_data: sign,
                tno: &req.tno,
                mod_type: "STE1",
                deli_numb: &req.invoice,
                deli_corp: &req.carrier,
            };
            match self
                .exchange::<_, HashMap<String, Value>>(&self.urls.cancel, &body)
                .await?
            {
                Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
                Answer::Success(_) => Ok(()),
            }
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_pay_method_bitmasks_map_to_kcp_pay_types() {
        assert_eq!(pay_type_of("100000000000"), Some("PACA"));
        assert_eq!(pay_type_of("001000000000"), Some("PAVC"));
        assert_eq!(pay_type_of("000000001000"), Some("PATK"));
        assert_eq!(pay_type_of("111111111111"), None);
    }

    #[test]
    fn the_spec_vbank_answer_parses_into_a_virtual_account() {
        let json = r#"{"res_cd":"0000","tno":"20220609985536","amount":"123","pay_method":"PAVC","bankcode":"BK07","bankname":"수협",
            "account":"T0709260000806","depositor":"한국사이버결제","va_name":"홍길동","va_date":"20220616235959",
            "app_time":"20220609114800","escw_yn":"N"}"#;
        let map: HashMap<String, Value> = serde_json::from_str(json).unwrap();
        let f = Fields(map);
        match parse_window("PAVC", f).unwrap() {
            WindowApproval::VirtualAccount {
                account,
                bank_code,
                holder,
                amount,
                ..
            } => {
                assert_eq!(
                    (
                        account.as_str(),
                        bank_code.as_str(),
                        holder.as_str(),
                        amount
                    ),
                    ("T0709260000806", "BK07", "한국사이버결제", 123)
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
