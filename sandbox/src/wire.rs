//! The KCP wire format: a flat JSON object whose values are all strings (spec/kcp.md §1), and
//! the `{"res_cd","res_msg"}` failure shape every KCP call answers with (spec §2.4).
//!
//! The sandbox is strict on purpose: a gateway that sends a number where KCP wants a string
//! must fail a test here rather than in production.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use crate::codes;

/// A refused request: answered with HTTP 200 and `{"res_cd","res_msg"}`, as KCP does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        Json(serde_json::json!({ "res_cd": self.code, "res_msg": self.message })).into_response()
    }
}

/// A KCP answer under construction: string values only, like the requests.
#[derive(Debug, Default)]
pub struct Reply(Map<String, Value>);

impl Reply {
    pub fn ok() -> Self {
        let mut reply = Self::default();
        reply.set("res_cd", codes::OK);
        reply.set("res_msg", "정상처리");
        reply
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.0.insert(name.to_owned(), Value::String(value.into()));
        self
    }

    /// Keeps only the `names` fields: where KCP's real answer for a method is known to be leaner
    /// than the common set, the sandbox answers as lean, so that a connector that came to need a
    /// field KCP leaves out fails a test instead of a real payment.
    pub fn keep_only(&mut self, names: &[&str]) -> &mut Self {
        self.0.retain(|name, _| names.contains(&name.as_str()));
        self
    }

    /// Leaves field `name` out, for the same reason as [`Reply::keep_only`].
    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.0.remove(name);
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        Json(Value::Object(self.0)).into_response()
    }
}

/// The parsed request body: field name → string value.
#[derive(Debug, Clone)]
pub struct Fields(BTreeMap<String, String>);

impl Fields {
    /// Parses a KCP request body, refusing anything but an object of strings (spec §1).
    pub fn parse(body: &Bytes) -> Result<Self, Refusal> {
        let value: Value = serde_json::from_slice(body).map_err(|_| {
            Refusal::new(
                codes::MALFORMED_REQUEST,
                "요청 전문이 JSON 형식이 아닙니다.",
            )
        })?;
        let Value::Object(object) = value else {
            return Err(Refusal::new(
                codes::MALFORMED_REQUEST,
                "요청 전문이 JSON 객체가 아닙니다.",
            ));
        };
        let mut fields = BTreeMap::new();
        for (name, value) in object {
            match value {
                Value::String(text) => {
                    fields.insert(name, text);
                }
                _ => {
                    return Err(Refusal::new(
                        codes::MALFORMED_REQUEST,
                        format!("{name} 값은 문자열이어야 합니다."),
                    ))
                }
            }
        }
        Ok(Self(fields))
    }

    /// A field that must be present and non-empty.
    pub fn required(&self, name: &str) -> Result<&str, Refusal> {
        match self.0.get(name).map(String::as_str) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(Refusal::new(
                codes::MISSING_FIELD,
                format!("필수 항목 {name} 이(가) 없습니다."),
            )),
        }
    }

    /// A field that may be absent; empty counts as absent.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// Every field, for callers that look fields up by owned name.
    pub fn into_map(self) -> std::collections::HashMap<String, String> {
        self.0.into_iter().collect()
    }

    /// The `site_cd` every call carries: 5 ASCII letters or digits (spec §6).
    pub fn site_cd(&self) -> Result<&str, Refusal> {
        let site_cd = self.required("site_cd")?;
        if is_site_cd(site_cd) {
            Ok(site_cd)
        } else {
            Err(Refusal::new(
                codes::INVALID_FIELD,
                "site_cd 는 영문/숫자 5자리입니다.",
            ))
        }
    }
}

pub fn is_site_cd(value: &str) -> bool {
    value.len() == 5 && value.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub fn is_digits(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `value` is an order number KCP takes: 1 to 40 ASCII letters and digits (spec §2.1
/// "letters+digits", §6 "ordr_idxx 40"; seeds 002/003 "주문번호는 영문과 숫자로 설정 바랍니다").
pub fn is_order_no(value: &str) -> bool {
    (1..=40).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Refuses an order number field (`ordr_idxx`, STRA's `mod_ordr_idxx`) that is not
/// [`is_order_no`], on every hub and cancel call as at registration: a gateway that sent a
/// merchant's `-` or `_` verbatim would be refused by KCP.
pub fn check_order_no(name: &str, value: &str) -> Result<(), Refusal> {
    if is_order_no(value) {
        Ok(())
    } else {
        Err(Refusal::new(
            codes::INVALID_FIELD,
            format!("{name} 는 영문/숫자 40자 이내입니다."),
        ))
    }
}

/// Refuses KCP's forbidden characters and script in free text (spec/kcp.md §6), and text longer
/// than KCP's limit, which KCP gives in bytes ("100byte 이내", seed 003): the UTF-8 bytes of the
/// JSON body, so a Korean syllable counts three.
pub fn check_text(name: &str, value: &str, max_bytes: usize) -> Result<(), Refusal> {
    const FORBIDDEN: &[char] = &[
        ',', '&', ';', '\n', '\r', '\\', '|', '\'', '"', '<', '>', '\0',
    ];
    if value.len() > max_bytes {
        return Err(Refusal::new(
            codes::INVALID_FIELD,
            format!("{name} 은(는) 최대 {max_bytes}바이트입니다."),
        ));
    }
    let lower = value.to_ascii_lowercase();
    if value.contains(FORBIDDEN) || lower.contains("javascript:") || lower.contains("eval(") {
        return Err(Refusal::new(
            codes::FORBIDDEN_CHARACTER,
            format!("{name} 에 사용할 수 없는 문자가 있습니다."),
        ));
    }
    Ok(())
}

/// Parses a KCP amount: digits only, 1..=12 of them (spec §6).
pub fn amount(name: &str, value: &str) -> Result<i64, Refusal> {
    let error = || {
        Refusal::new(
            codes::AMOUNT_ERROR,
            format!("{name} 금액 형식이 올바르지 않습니다."),
        )
    };
    if !is_digits(value) || value.len() > 12 {
        return Err(error());
    }
    value.parse::<i64>().map_err(|_| error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_where_a_string_belongs_is_refused() {
        let body = Bytes::from_static(br#"{"site_cd":"T0000","amount":1000}"#);
        let refusal = Fields::parse(&body).unwrap_err();
        assert_eq!(refusal.code, codes::MALFORMED_REQUEST);
        assert!(refusal.message.contains("amount"));
    }

    #[test]
    fn an_empty_required_field_counts_as_missing() {
        let body = Bytes::from_static(br#"{"site_cd":""}"#);
        let fields = Fields::parse(&body).unwrap();
        assert_eq!(
            fields.required("site_cd").unwrap_err().code,
            codes::MISSING_FIELD
        );
    }

    #[test]
    fn forbidden_characters_and_script_are_refused() {
        for text in [
            "a,b",
            "a&b",
            "<b>",
            "x|y",
            "alert'",
            "javascript:x",
            "EVAL(1)",
        ] {
            assert_eq!(
                check_text("good_name", text, 100).unwrap_err().code,
                codes::FORBIDDEN_CHARACTER,
                "{text}"
            );
        }
        assert!(check_text("good_name", "테스트 상품 (1개)", 100).is_ok());
        assert!(check_text("good_name", "Description", 100).is_ok());
    }
}
