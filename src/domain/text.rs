//! Text that goes to KCP: spec/kcp.md §6 forbids some characters and script in request data.

/// Characters KCP refuses in request data (seed `003`): `, & ; \n \ | ' " < >` and U+0000;
/// other control characters go too (a tab in a product name helps no one).
pub fn is_forbidden(c: char) -> bool {
    matches!(
        c,
        ',' | '&' | ';' | '\n' | '\r' | '\\' | '|' | '\'' | '"' | '<' | '>' | '\0'
    ) || c.is_control()
}

/// The longest Benepia account id or password openport sends KCP: `pt_idno` and `pt_pwd` are
/// `String 16` in seed 003 §2.3–2.4 (spec §2.8 gives no length). A longer one is refused here, before
/// a payment is recorded, instead of by KCP (9503) as a failed payment.
pub const POINT_FIELD_MAX: usize = 16;

/// The longest Benepia member company code (`pt_memcorp_cd`): `String 4` in seed 003 §2.2–2.3.
/// KCP refuses a longer one, and the sandbox does (9503): refused before anything is written, the
/// merchant gets a clear 400 instead of a failed payment with KCP's field error.
pub const POINT_MEMBER_CODE_MAX: usize = 4;

/// Whether a Benepia credential can go to KCP as it is: printable ASCII (Benepia ids and passwords
/// are; and so KCP's byte limit and the character count of the OpenAPI document's `maxLength` are
/// one limit), non-empty, at most [`POINT_FIELD_MAX`], no white space at its ends, no character KCP
/// forbids. Never altered instead: a sanitized password would just be a wrong one.
pub fn is_sendable_credential(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= POINT_FIELD_MAX
        && v.bytes().all(|b| (0x20..0x7f).contains(&b))
        && v.trim() == v
        && !v.chars().any(is_forbidden)
}

/// Whether a Benepia member company code can go to KCP as it is: a sendable credential of at most
/// [`POINT_MEMBER_CODE_MAX`] characters.
pub fn is_sendable_member_code(v: &str) -> bool {
    is_sendable_credential(v) && v.len() <= POINT_MEMBER_CODE_MAX
}

/// The refusal of a request value holding a character [`is_refused_control`] picks, naming where
/// it is (a field, the path, the query), never the value: REST's and the checkout's alike.
pub fn control_character_message(place: &str) -> String {
    format!("{place}에 허용되지 않는 제어 문자(U+0000 등)가 있습니다.")
}

/// Characters no request value may hold: U+0000, which PostgreSQL cannot store in text (SQLSTATE
/// 22021: a 500 instead of an answer), and the other C0 controls, which no iamport field has a use
/// for. Tab, CR and LF stay: addresses and product names are pasted with them.
pub fn is_refused_control(c: char) -> bool {
    c < ' ' && !matches!(c, '\t' | '\r' | '\n')
}

/// A field iamport takes as one string or a list of strings (`notice_url`), as REST and the
/// checkout both read it: absent, null or blank (`""`, white space only) is none; a number counts
/// as its text, as a single value does. In a list, a null or blank item is dropped and a list left
/// empty names none: such an item carries no URL, and comes from a client's unset value
/// (`JSON.stringify([process.env.HOOK])` is `[null]`; a template that always writes the field
/// posts `notice_url[]=`), which as a scalar (`""`) already meant "none"; refusing it refused the
/// charge. Anything else, an object or a list item that is neither text, a number nor null, is
/// refused rather than dropped, since dropping it changes what the request names (webhooks sent
/// to the merchant's default URL instead). A field where a blank must not read as "none named"
/// takes [`string_list_as_given`].
pub fn string_list(value: Option<serde_json::Value>) -> Result<Vec<String>, &'static str> {
    let mut list = strings(value, true)?;
    list.retain(|s| !s.trim().is_empty());
    Ok(list)
}

/// [`string_list`] keeping every item as given, blank ones included, and refusing a null item
/// (`api::extract::de::opt_string_list`, unschedule's `merchant_uid`: there "none named" means
/// "all of the customer's", so a blank or null item, a client's bug where one schedule was meant,
/// must reach the caller to be refused, never vanish). Absent, null or `""` is still none.
pub fn string_list_as_given(value: Option<serde_json::Value>) -> Result<Vec<String>, &'static str> {
    strings(value, false)
}

/// The strings of [`string_list`] and [`string_list_as_given`]; `drop_null`: a null list item is
/// skipped rather than refused.
fn strings(value: Option<serde_json::Value>, drop_null: bool) -> Result<Vec<String>, &'static str> {
    use serde_json::Value;
    match value {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::String(s)) if s.is_empty() => Ok(vec![]),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Number(n)) => Ok(vec![n.to_string()]),
        Some(Value::Array(items)) => items
            .into_iter()
            .filter(|v| !v.is_null() || !drop_null)
            .map(|v| match v {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err("문자열 배열이어야 합니다"),
            })
            .collect(),
        Some(_) => Err("문자열 또는 문자열 배열이어야 합니다"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}에 스크립트로 해석될 수 있는 내용은 사용할 수 없습니다.")]
pub struct ScriptRefused {
    pub field: &'static str,
}

/// Makes a free-text value safe for KCP: script-like content is refused with a clear error (it is
/// never legitimate in an order or buyer name); the rest is [`sanitize`]d.
pub fn for_kcp(
    field: &'static str,
    value: &str,
    max_bytes: usize,
) -> Result<String, ScriptRefused> {
    refuse_script(field, value)?;
    Ok(sanitize(value, max_bytes))
}

/// Refuses script-like content (`<script`, `javascript:`, `eval(`), which KCP refuses in any free
/// text it is sent (spec/kcp.md §6): caught here, the merchant is told which field, instead of
/// KCP's refusal arriving after an attempt was recorded.
pub fn refuse_script(field: &'static str, value: &str) -> Result<(), ScriptRefused> {
    let lower = value.to_ascii_lowercase();
    if lower.contains("<script") || lower.contains("javascript:") || lower.contains("eval(") {
        return Err(ScriptRefused { field });
    }
    Ok(())
}

/// Forbidden characters become spaces (removing `<`/`>` also defuses markup), then the trimmed
/// text is cut to KCP's limit, which KCP gives in bytes ("100byte 이내", seed 003), on a
/// character boundary. Sanitizing rather than refusing means a product called "Shirt, blue"
/// still sells.
pub fn sanitize(value: &str, max_bytes: usize) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| if is_forbidden(c) { ' ' } else { c })
        .collect();
    truncate_bytes(cleaned.trim(), max_bytes)
        .trim_end()
        .to_owned()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_benepia_member_code_is_one_to_four_printable_ascii_characters_kcp_allows() {
        assert!(is_sendable_member_code("B001"));
        assert!(is_sendable_member_code("a-Z~"));
        assert!(!is_sendable_member_code("B0012"));
        // Four characters but more than four bytes: KCP's `String 4` counts bytes.
        assert!(!is_sendable_member_code("ķ가"));
        assert!(!is_sendable_member_code("é"));
        assert!(!is_sendable_member_code("a,b"));
        assert!(!is_sendable_member_code(" ab"));
        assert!(!is_sendable_member_code(""));
    }

    #[test]
    fn forbidden_characters_are_replaced_and_length_is_capped() {
        assert_eq!(
            for_kcp("name", "a,b&c;d|e'f\"g", 100).unwrap(),
            "a b c d e f g"
        );
        // KCP counts bytes: a Korean syllable is three in UTF-8, and none is cut in half.
        assert_eq!(for_kcp("name", "가나다라", 7).unwrap(), "가나");
        assert_eq!(for_kcp("name", "a 가", 3).unwrap(), "a");
    }

    #[test]
    fn a_list_drops_its_null_and_blank_items_unless_taken_as_given() {
        use serde_json::json;
        let list = |v: serde_json::Value| string_list(Some(v));
        assert_eq!(
            list(json!([null, "", " \t", "https://a.test/h", 7])),
            Ok(vec!["https://a.test/h".to_string(), "7".to_string()])
        );
        for none in [
            json!([null]),
            json!([""]),
            json!([]),
            json!("  "),
            json!(""),
        ] {
            assert_eq!(list(none.clone()), Ok(vec![]), "{none}");
        }
        assert_eq!(string_list(None), Ok(vec![]));
        for refused in [
            json!([true]),
            json!([{}]),
            json!([["a"]]),
            json!({}),
            json!(false),
        ] {
            assert!(list(refused.clone()).is_err(), "{refused}");
        }
        let as_given = |v: serde_json::Value| string_list_as_given(Some(v));
        assert_eq!(
            as_given(json!(["", " "])),
            Ok(vec![String::new(), " ".into()])
        );
        assert_eq!(as_given(json!("  ")), Ok(vec!["  ".to_string()]));
        assert!(as_given(json!([null])).is_err());
    }

    #[test]
    fn script_is_refused_with_the_field_named() {
        let err = for_kcp("name", "<SCRIPT>alert(1)</script>", 100).unwrap_err();
        assert_eq!(err.field, "name");
    }
}
