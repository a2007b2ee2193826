//! Deterministic test cards (docs/sandbox.md). All but KCP's own guide card are Luhn-valid,
//! because the gateway checks Luhn before it calls KCP. Anything Luhn-valid that is not listed
//! approves as a BC card.
//!
//! Every card can be registered as a batch (billing) key; what a charge with that key does is
//! listed per card.

/// Approves; issuer CCLG 신한카드, credit.
pub const SHINHAN_CREDIT: &str = "4111111111111111";
/// Approves; issuer CCSS 삼성카드, check card.
pub const SAMSUNG_CHECK: &str = "5555555555554444";
/// Approves; issuer CCAM 롯데아멕스.
pub const LOTTE_AMEX: &str = "3760000000000004";
/// KB국민 (CCKM): refused with 8102 in test mode (seed 001), approves when `test_mode` is false.
/// Batch charges are always refused with 8102 (spec §4: no billing payments with KB cards).
pub const KB_KOOKMIN: &str = "5272890000006050";
/// NH농협 (CCNH): key-in approves; batch charges are refused with 8102 (spec §4).
pub const NH_NONGHYUP: &str = "5461110000000008";
/// 카카오뱅크 (CCKA, check card): key-in approves; batch charges are refused with 8102 (spec §4).
pub const KAKAO_BANK: &str = "5365100000000006";
/// Refused with 8186 일일한도초과.
pub const DAILY_LIMIT_EXCEEDED: &str = "4000000000008187";
/// Refused with 8188 월한도초과.
pub const MONTHLY_LIMIT_EXCEEDED: &str = "4000000000009995";
/// A BC card without credit left: its batch key is issued, every charge (batch or key-in) is
/// refused with 8187 한도초과.
pub const INSUFFICIENT_LIMIT: &str = "4000000000008179";
/// Approves as CCDI 현대카드 (check card), answered `partcanc_yn N`: KCP takes no partial cancel of
/// its trades (`STPC` refused with 8137), only a full one (STSC).
pub const NO_PARTIAL_CANCEL: &str = "4364200000000008";
/// An unlisted Luhn-valid number: approves as CCBC 비씨카드.
pub const ANY_OTHER: &str = "4000000000000002";

/// KCP's test card from its integration guide (seed 000). It fails the Luhn check, yet it is the
/// number KCP's test server is documented with, so in test mode the sandbox approves it (as a BC
/// card); outside test mode it is refused like any number failing Luhn (8108).
pub const KCP_GUIDE_CARD: &str = "4673090000000032";

/// The right `card_pwd` (first two PIN digits) for every test card.
pub const PIN_PREFIX: &str = "00";
/// A `card_taxno` birth date that never matches the card holder.
pub const WRONG_BIRTH: &str = "000000";

/// What the issuer decides for a card number, after the format checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum IssuerDecision {
    Approve,
    /// KB cards are not approved in KCP's test mode (spec §4, seed 001).
    RefuseInTestMode,
    DailyLimit,
    MonthlyLimit,
    /// No credit left at all (8187).
    LimitExceeded,
    /// KCP's guide card: only its test server takes it (8108 otherwise).
    TestServerOnly,
}

/// Issuer facts echoed in the approval (spec §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Issuer {
    pub card_cd: &'static str,
    pub card_name: &'static str,
    /// `card_bin_type_02`: "0" credit, "1" check.
    pub bin_type_02: &'static str,
    pub bank_cd: &'static str,
    pub decision: IssuerDecision,
    /// Whether the issuer accepts non-authenticated billing (batch key) charges: KB, NH and
    /// Kakao Bank do not (spec §4).
    pub billing: bool,
    /// `partcanc_yn` of its approvals: whether KCP takes a partial cancel (`STPC`) of them.
    pub partial_cancel: bool,
}

const BC: Issuer = Issuer {
    card_cd: "CCBC",
    card_name: "비씨카드",
    bin_type_02: "0",
    bank_cd: "0031",
    decision: IssuerDecision::Approve,
    billing: true,
    partial_cancel: true,
};

pub(crate) fn issuer(card_no: &str) -> Issuer {
    let approve = |card_cd, card_name, bin_type_02, bank_cd| Issuer {
        card_cd,
        card_name,
        bin_type_02,
        bank_cd,
        decision: IssuerDecision::Approve,
        billing: true,
        partial_cancel: true,
    };
    match card_no {
        SHINHAN_CREDIT => approve("CCLG", "신한카드", "0", "0088"),
        SAMSUNG_CHECK => approve("CCSS", "삼성카드", "1", "0000"),
        LOTTE_AMEX => approve("CCAM", "롯데아멕스", "0", "0000"),
        KB_KOOKMIN => Issuer {
            decision: IssuerDecision::RefuseInTestMode,
            billing: false,
            ..approve("CCKM", "국민카드", "0", "0004")
        },
        NH_NONGHYUP => Issuer {
            billing: false,
            ..approve("CCNH", "NH농협카드", "0", "0011")
        },
        KAKAO_BANK => Issuer {
            billing: false,
            ..approve("CCKA", "카카오뱅크", "1", "0090")
        },
        NO_PARTIAL_CANCEL => Issuer {
            partial_cancel: false,
            ..approve("CCDI", "현대카드", "1", "0000")
        },
        DAILY_LIMIT_EXCEEDED => Issuer {
            decision: IssuerDecision::DailyLimit,
            ..BC
        },
        MONTHLY_LIMIT_EXCEEDED => Issuer {
            decision: IssuerDecision::MonthlyLimit,
            ..BC
        },
        INSUFFICIENT_LIMIT => Issuer {
            decision: IssuerDecision::LimitExceeded,
            ..BC
        },
        KCP_GUIDE_CARD => Issuer {
            decision: IssuerDecision::TestServerOnly,
            ..BC
        },
        _ => BC,
    }
}

/// Every issuer a card number can map to: the listed cards' and BC's (any other number). A batch
/// key read back from a state file finds its issuer here (the file never holds the card number).
pub(crate) fn issuers() -> impl Iterator<Item = Issuer> {
    [
        SHINHAN_CREDIT,
        SAMSUNG_CHECK,
        LOTTE_AMEX,
        KB_KOOKMIN,
        NH_NONGHYUP,
        KAKAO_BANK,
        NO_PARTIAL_CANCEL,
        DAILY_LIMIT_EXCEEDED,
        MONTHLY_LIMIT_EXCEEDED,
        INSUFFICIENT_LIMIT,
        KCP_GUIDE_CARD,
        ANY_OTHER,
    ]
    .into_iter()
    .map(issuer)
}

/// The Luhn (mod 10) check KCP answers 8108 for.
pub(crate) fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0;
    for (index, byte) in digits.bytes().rev().enumerate() {
        let mut digit = u32::from(byte - b'0');
        if index % 2 == 1 {
            digit *= 2;
            if digit > 9 {
                digit -= 9;
            }
        }
        sum += digit;
    }
    sum % 10 == 0
}

/// `411111******1111`: digits 7..len-4 hidden, as in KCP's hub answers (spec §2.6, §2.7).
pub(crate) fn mask(card_no: &str) -> String {
    let len = card_no.len();
    card_no
        .chars()
        .enumerate()
        .map(|(index, c)| {
            if index >= 6 && index + 4 < len {
                '*'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_card_passes_luhn() {
        for card in [
            SHINHAN_CREDIT,
            SAMSUNG_CHECK,
            LOTTE_AMEX,
            KB_KOOKMIN,
            NH_NONGHYUP,
            KAKAO_BANK,
            NO_PARTIAL_CANCEL,
            DAILY_LIMIT_EXCEEDED,
            MONTHLY_LIMIT_EXCEEDED,
            INSUFFICIENT_LIMIT,
            ANY_OTHER,
        ] {
            assert!(luhn_valid(card), "{card}");
        }
        assert!(!luhn_valid("4111111111111112"));
    }

    #[test]
    fn masking_hides_the_middle_digits() {
        assert_eq!(mask(SHINHAN_CREDIT), "411111******1111");
        assert_eq!(mask(LOTTE_AMEX), "376000******0004");
        assert_eq!(mask("4111111111111"), "411111***1111");
    }
}
