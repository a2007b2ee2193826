//! Virtual-account banks: iamport's bank codes (the Korean standard 3-digit codes merchants send
//! as `vbank_code`) and KCP's (`BK` + the same last two digits, spec/kcp.md §2.4 `bankcode`).

/// A bank KCP issues virtual accounts at. Only banks whose KCP code is known are listed: an
/// account must never be asked of a bank KCP would not understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VbankBank {
    /// iamport's code, e.g. `004`: what `vbank_code` shows.
    pub iamport_code: &'static str,
    /// KCP's code, e.g. `BK04`.
    pub kcp_code: &'static str,
    pub name: &'static str,
}

const BANKS: &[VbankBank] = &[
    VbankBank {
        iamport_code: "003",
        kcp_code: "BK03",
        name: "IBK기업은행",
    },
    VbankBank {
        iamport_code: "004",
        kcp_code: "BK04",
        name: "KB국민은행",
    },
    VbankBank {
        iamport_code: "007",
        kcp_code: "BK07",
        name: "수협은행",
    },
    VbankBank {
        iamport_code: "011",
        kcp_code: "BK11",
        name: "NH농협은행",
    },
    VbankBank {
        iamport_code: "020",
        kcp_code: "BK20",
        name: "우리은행",
    },
    VbankBank {
        iamport_code: "081",
        kcp_code: "BK81",
        name: "하나은행",
    },
    VbankBank {
        iamport_code: "088",
        kcp_code: "BK88",
        name: "신한은행",
    },
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("지원하지 않는 은행코드입니다. (vbank_code: {0})")]
pub struct UnknownBank(pub String);

impl VbankBank {
    /// An iamport bank code as merchants send it: `"004"`, or without its leading zeros (`"4"`,
    /// `"04"`, clients that send it as a number).
    pub fn parse(code: &str) -> Result<Self, UnknownBank> {
        let trimmed = code.trim();
        let normalized = match trimmed.len() {
            1..=3 if trimmed.bytes().all(|b| b.is_ascii_digit()) => format!("{trimmed:0>3}"),
            _ => return Err(UnknownBank(code.chars().take(20).collect())),
        };
        BANKS
            .iter()
            .find(|b| b.iamport_code == normalized)
            .copied()
            .ok_or_else(|| UnknownBank(code.chars().take(20).collect()))
    }

    /// The bank behind a KCP code (`BK07`), e.g. from a window's answer.
    pub fn from_kcp(kcp_code: &str) -> Option<Self> {
        BANKS
            .iter()
            .find(|b| b.kcp_code == kcp_code.trim())
            .copied()
    }

    /// What iamport shows as `vbank_code` / `bank_code` for a bank KCP names by its own code (a
    /// window's virtual account `bankcode`, a transfer's `bank_code`): the standard code of this
    /// table (`BK04` → `004`), or KCP's code as it came for a bank the table lacks (not guessed).
    pub fn iamport_code_of_kcp(kcp_code: &str) -> String {
        Self::from_kcp(kcp_code).map_or_else(|| kcp_code.to_string(), |b| b.iamport_code.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iamport_codes_map_to_kcp_codes_with_or_without_leading_zeros() {
        assert_eq!(VbankBank::parse("004").unwrap().kcp_code, "BK04");
        assert_eq!(VbankBank::parse("88").unwrap().kcp_code, "BK88");
        assert_eq!(VbankBank::parse(" 7 ").unwrap().kcp_code, "BK07");
        assert_eq!(VbankBank::from_kcp("BK81").unwrap().iamport_code, "081");
        assert_eq!(VbankBank::iamport_code_of_kcp("BK20"), "020");
        assert_eq!(
            VbankBank::iamport_code_of_kcp("BK99"),
            "BK99",
            "not guessed"
        );
    }

    #[test]
    fn unknown_or_malformed_codes_are_refused_with_the_code_named() {
        for code in ["999", "BK04", "", "0004", "kb"] {
            assert!(VbankBank::parse(code).is_err(), "{code}");
        }
        assert_eq!(
            VbankBank::parse("999").unwrap_err().to_string(),
            "지원하지 않는 은행코드입니다. (vbank_code: 999)"
        );
    }
}
