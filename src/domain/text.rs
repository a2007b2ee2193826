//! Text that goes to KCP: spec/kcp.md §6 forbids some characters and script in request data.

/// Characters KCP refuses in request data (seed `003`): `, & ; \n \ | ' " < >` and U+0000.
const FORBIDDEN: &[char] = &[
    ',', '&', ';', '\n', '\r', '\\', '|', '\'', '"', '<', '>', '\0',
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}에 스크립트로 해석될 수 있는 내용은 사용할 수 없습니다.")]
pub struct ScriptRefused {
    pub field: &'static str,
}

/// Makes a free-text value safe for KCP: script-like content is refused with a clear error (it is
/// never legitimate in an order or buyer name); forbidden characters are replaced by a space and
/// the result is cut to KCP's maximum length in characters.
pub fn for_kcp(
    field: &'static str,
    value: &str,
    max_chars: usize,
) -> Result<String, ScriptRefused> {
    let lower = value.to_ascii_lowercase();
    if lower.contains("<script") || lower.contains("javascript:") || lower.contains("eval(") {
        return Err(ScriptRefused { field });
    }
    let cleaned: String = value
        .chars()
        .map(|c| if FORBIDDEN.contains(&c) { ' ' } else { c })
        .collect();
    Ok(cleaned.trim().chars().take(max_chars).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_characters_are_replaced_and_length_is_capped() {
        assert_eq!(
            for_kcp("name", "a,b&c;d|e'f\"g", 100).unwrap(),
            "a b c d e f g"
        );
        assert_eq!(for_kcp("name", "가나다라", 2).unwrap(), "가나");
    }

    #[test]
    fn script_is_refused_with_the_field_named() {
        let err = for_kcp("name", "<SCRIPT>alert(1)</script>", 100).unwrap_err();
        assert_eq!(err.field, "name");
    }
}
