//! Virtual-account banks: iamport's bank codes (the Korean standard 3-digit codes merchants send
//! as `vbank_code`) and KCP's (`BK` + the same last two digits, spec/kcp.md §2.4 `bankcode`); and
//! the account a deposited virtual account is refunded to ([`RefundAccount`]).

/// A bank KCP issues virtual accounts at. Only banks whose KCP code is known are listed: an
/// account must never be asked of a bank KCP would not understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VbankBank {
    /// iamport's code, e.g. `004`: what `vbank_code` shows.
    pub iamport_code: &'static str,
    /// KCP's code, e.g. `BK04`.
    pub kcp_code: &'static str,
}

const BANKS: &[VbankBank] = &[
    VbankBank {
        iamport_code: "003",
        kcp_code: "BK03",
    },
    VbankBank {
        iamport_code: "004",
        kcp_code: "BK04",
    },
    VbankBank {
        iamport_code: "007",
        kcp_code: "BK07",
    },
    VbankBank {
        iamport_code: "011",
        kcp_code: "BK11",
    },
    VbankBank {
        iamport_code: "020",
        kcp_code: "BK20",
    },
    VbankBank {
        iamport_code: "081",
        kcp_code: "BK81",
    },
    VbankBank {
        iamport_code: "088",
        kcp_code: "BK88",
    },
];

/// Banks KCP names in answers (a transfer's `bank_code`) but openport never asks for a virtual
/// account at: KCP's code and iamport's standard code, as KCP's bank lists in merchants' pages
/// pair them (`BK` + the standard code's last two digits; names in `domain::codes::BANKS`). Codes
/// outside both tables stay as KCP sent them (KCP's older lists use other numbers for some banks,
/// e.g. `BK26`, `BK99`). A deposited virtual account may be refunded to any bank of either table
/// ([`VbankBank::refund_kcp_code`]): these are the codes public KCP merchant integrations send as
/// a refund's `mod_bankcode` (docs/kcp.md §10.2).
const ANSWERED_ONLY: &[(&str, &str)] = &[
    ("BK02", "002"),
    ("BK05", "005"),
    ("BK23", "023"),
    ("BK27", "027"),
    ("BK31", "031"),
    ("BK32", "032"),
    ("BK34", "034"),
    ("BK35", "035"),
    ("BK37", "037"),
    ("BK39", "039"),
    ("BK45", "045"),
    ("BK48", "048"),
    ("BK54", "054"),
    ("BK64", "064"),
    ("BK71", "071"),
    ("BK89", "089"),
    ("BK90", "090"),
];

/// Codes merchants still send for a bank that now issues under another: iamport's code as sent,
/// and the code of the bank in [`BANKS`] that holds its accounts. `005` is 외환은행 (KEB), merged
/// into 하나은행 in 2015; iamport's official PHP client still offers it as `VbankCode::KEB`
/// ("KEB 하나은행") and validates `vbank_code` against that enum, so a PHP shop offering 하나 sends
/// `005`. The account is issued at 하나 (`081`, KCP `BK81`), the bank the merchant meant; the
/// Payment shows `081`. A transfer KCP names `BK05` keeps showing `005` (`ANSWERED_ONLY`).
const ALIASES: &[(&str, &str)] = &[("005", "081")];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("지원하지 않는 은행코드입니다. (vbank_code: {0})")]
pub struct UnknownBank(pub String);

impl VbankBank {
    /// An iamport bank code as merchants send it: `"004"`, or without its leading zeros (`"4"`,
    /// `"04"`, clients that send it as a number); a code in [`ALIASES`] is its bank's successor.
    pub fn parse(code: &str) -> Result<Self, UnknownBank> {
        let unknown = || UnknownBank(code.chars().take(20).collect());
        let normalized = normalized(code).ok_or_else(unknown)?;
        BANKS
            .iter()
            .find(|b| b.iamport_code == normalized)
            .copied()
            .ok_or_else(unknown)
    }

    /// KCP's code of the bank a deposited virtual account is refunded to, from iamport's
    /// `refund_bank` as [`Self::parse`] reads a code: any bank either table lists, since a refund
    /// goes to the buyer's own account wherever it is held, not to a bank that issues virtual
    /// accounts. None for a code neither lists (KCP's code of such a bank is not guessed).
    pub fn refund_kcp_code(code: &str) -> Option<&'static str> {
        let normalized = normalized(code)?;
        BANKS
            .iter()
            .map(|b| (b.kcp_code, b.iamport_code))
            .chain(ANSWERED_ONLY.iter().copied())
            .find(|(_, iamport)| *iamport == normalized)
            .map(|(kcp, _)| kcp)
    }

    /// Every KCP bank code openport maps to a standard code.
    pub fn kcp_codes() -> impl Iterator<Item = &'static str> {
        BANKS
            .iter()
            .map(|b| b.kcp_code)
            .chain(ANSWERED_ONLY.iter().map(|(kcp, _)| *kcp))
    }

    /// The bank behind a KCP code (`BK07`), e.g. from a window's answer.
    pub fn from_kcp(kcp_code: &str) -> Option<Self> {
        BANKS
            .iter()
            .find(|b| b.kcp_code == kcp_code.trim())
            .copied()
    }

    /// What iamport shows as `vbank_code` / `bank_code` for a bank KCP names by its own code (a
    /// window's virtual account `bankcode`, a transfer's `bank_code`): the standard code
    /// (`BK04` → `004`, `BK90` → `090`), or KCP's code as it came for a bank neither table
    /// lists (not guessed).
    pub fn iamport_code_of_kcp(kcp_code: &str) -> String {
        let kcp_code = kcp_code.trim();
        Self::from_kcp(kcp_code)
            .map(|b| b.iamport_code)
            .or_else(|| {
                ANSWERED_ONLY
                    .iter()
                    .find(|(kcp, _)| *kcp == kcp_code)
                    .map(|(_, iamport)| *iamport)
            })
            .unwrap_or(kcp_code)
            .to_string()
    }
}

/// An iamport bank code as merchants send it, as its three digits (`"4"` → `"004"`), a code in
/// [`ALIASES`] as its bank's successor's; None when it is no such code.
fn normalized(code: &str) -> Option<String> {
    let trimmed = code.trim();
    if !(1..=3).contains(&trimmed.len()) || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let normalized = format!("{trimmed:0>3}");
    Some(
        ALIASES
            .iter()
            .find(|(sent, _)| *sent == normalized)
            .map_or(normalized, |(_, successor)| successor.to_string()),
    )
}

/// The longest refund account number openport sends KCP, and the shortest: Korean bank account
/// numbers are 10 to 14 digits (a few banks' up to 16), separators aside. KCP publishes no
/// bound; one outside this is a typo the merchant is told of (HTTP 400) before anything is sent.
pub const REFUND_ACCOUNT_DIGITS: std::ops::RangeInclusive<usize> = 10..=16;

/// The longest refund account holder's name openport sends KCP (`mod_depositor`), in bytes (20
/// Korean syllables): openport's bound, KCP publishes none.
pub const REFUND_HOLDER_MAX_BYTES: usize = 60;

/// Why a refund field (iamport's `refund_bank`, `refund_account`, `refund_holder`) cannot go to
/// KCP: the merchant's HTTP 400. Never quotes an account number or a holder's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundFieldRefused {
    #[error("지원하지 않는 환불계좌 은행코드입니다. (refund_bank: {0})")]
    Bank(String),
    #[error("refund_account는 숫자 10~16자리 계좌번호여야 합니다. ('-'와 공백은 제외하고 셉니다)")]
    Account,
    #[error(
        "refund_holder는 {max}바이트 이하여야 하며 다음 문자를 쓸 수 없습니다: \
         , & ; \\ | ' \" < > 및 제어 문자",
        max = REFUND_HOLDER_MAX_BYTES
    )]
    Holder,
    #[error(transparent)]
    Script(#[from] super::text::ScriptRefused),
}

/// The account a deposited virtual account is refunded to (iamport's `refund_bank`,
/// `refund_account`, `refund_holder`), as KCP takes it (`mod_bankcode`, `mod_account`,
/// `mod_depositor`: docs/kcp.md §10.2). Personal data that lives only in the cancel request sent to
/// KCP: never stored, logged or echoed (`Debug` shows the bank and the number's last 4 digits).
#[derive(Clone, PartialEq, Eq)]
pub struct RefundAccount {
    /// KCP's code of the bank (`BK88`), from iamport's standard code.
    pub kcp_bank: &'static str,
    /// The account number, digits only.
    pub number: String,
    /// The holder's name, as given (trimmed): KCP verifies it against the bank's record, so it is
    /// never altered (a cleaned name would just be a wrong one).
    pub holder: String,
}

impl std::fmt::Debug for RefundAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefundAccount")
            .field("kcp_bank", &self.kcp_bank)
            .field("number", &self.masked_number())
            .field("holder", &"<redacted>")
            .finish()
    }
}

impl RefundAccount {
    /// iamport's `refund_bank`: a standard code of a bank KCP refunds to (`004`, `88`; `005` is
    /// 하나's, as for `vbank_code`), as KCP's code.
    pub fn bank(code: &str) -> Result<&'static str, RefundFieldRefused> {
        VbankBank::refund_kcp_code(code)
            .ok_or_else(|| RefundFieldRefused::Bank(code.chars().take(20).collect()))
    }

    /// iamport's `refund_account`: `-` and white space dropped (as KCP's merchant integrations
    /// strip them), then digits only, [`REFUND_ACCOUNT_DIGITS`] of them.
    pub fn number(account: &str) -> Result<String, RefundFieldRefused> {
        let digits: String = account
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .collect();
        if !REFUND_ACCOUNT_DIGITS.contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(RefundFieldRefused::Account);
        }
        Ok(digits)
    }

    /// iamport's `refund_holder`, trimmed: refused (never cleaned, see [`Self::holder`]) with a
    /// character KCP forbids (spec/kcp.md §6), script, or over [`REFUND_HOLDER_MAX_BYTES`].
    pub fn holder(name: &str) -> Result<String, RefundFieldRefused> {
        super::text::refuse_script("refund_holder", name)?;
        let name = name.trim();
        if name.is_empty()
            || name.len() > REFUND_HOLDER_MAX_BYTES
            || name.chars().any(super::text::is_forbidden)
        {
            return Err(RefundFieldRefused::Holder);
        }
        Ok(name.to_owned())
    }

    /// The account number as a log or a message may show it: its last 4 digits.
    pub fn masked_number(&self) -> String {
        let shown = self.number.len().saturating_sub(4);
        format!("{}{}", "*".repeat(shown), &self.number[shown..])
    }
}

/// A deposit deadline (`vbank_due`) openport will not ask KCP for: one rule and one wording for
/// `POST /vbanks` (Unix seconds) and the browser checkout (any of its forms, Korea time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("vbank_due는 현재 이후, 9999-12-31 이전의 시각이어야 합니다.")]
pub struct DueRefused;

/// A virtual account's deposit deadline (`vbank_due`) at `now`: later than now, since an account
/// already due could never be paid (KCP refuses to issue it, and its bank refuses every deposit
/// past it) and would hold its merchant_uid until revoked; and in a year KCP's `yyyyMMddHHmmss`
/// (Korea time, `va_date`/`ipgm_date`) can write, or KCP would refuse it after the payment is
/// recorded.
pub fn deposit_deadline(
    due: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, DueRefused> {
    use chrono::Datelike;
    if due <= now || due.with_timezone(&super::KST).year() > 9999 {
        return Err(DueRefused);
    }
    Ok(due)
}

/// [`deposit_deadline`] of Unix seconds, as `POST /vbanks` takes `vbank_due`: seconds no date can
/// hold are refused the same way.
pub fn deposit_deadline_unix(
    secs: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, DueRefused> {
    let due = chrono::DateTime::from_timestamp(secs, 0).ok_or(DueRefused)?;
    deposit_deadline(due, now)
}

/// The resolver's looks at a virtual account awaiting its deposit (service/vbank_checks.rs): the
/// first this long after issuance (KCP's own notification and its first re-sends come sooner)...
pub const FIRST_CHECK_AFTER_SECS: i64 = 600;
/// ...then at most one an hour: the cost is one inquiry per open account per hour...
pub const CHECK_EVERY_SECS: i64 = 3600;
/// ...until one this long after the deposit deadline (a deposit at the deadline, notified late),
/// after which the bank takes no deposit and the looks stop.
pub const LAST_CHECK_AFTER_DUE_SECS: i64 = 3600;
/// An account with no deadline known is looked at for this long after its issuance.
pub const CHECK_AT_MOST_SECS: i64 = 31 * 24 * 3600;

/// When the resolver looks next at an account awaiting its deposit, after a look at `now`; None
/// once that was the last (the look after the deadline). `issued_at`, `due`: the payment's
/// `vbank_issued_at`, `vbank_date`.
pub fn next_check(now: i64, issued_at: Option<i64>, due: Option<i64>) -> Option<i64> {
    let last = last_check(now, issued_at, due);
    (now < last).then(|| (now + CHECK_EVERY_SECS).min(last))
}

/// The first look at an account made `ready` again at `now` by a reversal: as after its issuance,
/// [`FIRST_CHECK_AFTER_SECS`] on (the notifications of a new deposit come sooner), never past the
/// last look [`next_check`] allows; None once that is past (the bank takes no deposit any more).
pub fn first_check_again(now: i64, issued_at: Option<i64>, due: Option<i64>) -> Option<i64> {
    let last = last_check(now, issued_at, due);
    (now < last).then(|| (now + FIRST_CHECK_AFTER_SECS).min(last))
}

/// The time of an account's last look: an hour after its deadline, or a month after its issuance
/// when it has none.
fn last_check(now: i64, issued_at: Option<i64>, due: Option<i64>) -> i64 {
    match due {
        Some(due) => due + LAST_CHECK_AFTER_DUE_SECS,
        None => issued_at.unwrap_or(now) + CHECK_AT_MOST_SECS,
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
        assert_eq!(VbankBank::iamport_code_of_kcp("BK90"), "090");
        assert_eq!(VbankBank::iamport_code_of_kcp("BK71"), "071");
        assert_eq!(
            VbankBank::iamport_code_of_kcp("BK99"),
            "BK99",
            "not guessed"
        );
        assert!(
            VbankBank::parse("090").is_err(),
            "a bank KCP only answers with is never asked for an account"
        );
    }

    #[test]
    fn kebs_code_issues_at_hana_which_it_merged_into_while_kcps_bk05_still_reads_005() {
        for sent in ["005", "05", "5", " 005 "] {
            let bank = VbankBank::parse(sent).unwrap();
            assert_eq!(
                (bank.iamport_code, bank.kcp_code),
                ("081", "BK81"),
                "{sent}"
            );
        }
        assert_eq!(VbankBank::iamport_code_of_kcp("BK05"), "005");
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

    #[test]
    fn a_refund_goes_to_any_bank_kcp_has_a_code_for_not_only_those_issuing_accounts() {
        for (sent, kcp) in [
            ("088", "BK88"),
            ("4", "BK04"),
            ("090", "BK90"),
            ("089", "BK89"),
            ("071", "BK71"),
            ("064", "BK64"),
            ("045", "BK45"),
            ("002", "BK02"),
            ("005", "BK81"),
        ] {
            assert_eq!(RefundAccount::bank(sent), Ok(kcp), "{sent}");
        }
        for unknown in ["092", "012", "050", "999", "BK04", "", "abc"] {
            assert!(RefundAccount::bank(unknown).is_err(), "{unknown}");
        }
        assert_eq!(
            RefundAccount::bank("092").unwrap_err().to_string(),
            "지원하지 않는 환불계좌 은행코드입니다. (refund_bank: 092)"
        );
    }

    #[test]
    fn a_refund_account_number_drops_dashes_and_spaces_and_is_otherwise_ten_to_sixteen_digits() {
        assert_eq!(
            RefundAccount::number("110-123-456789").as_deref(),
            Ok("110123456789")
        );
        assert_eq!(
            RefundAccount::number(" 1002 345 67890 ").as_deref(),
            Ok("100234567890")
        );
        for refused in [
            "123456789",
            "12345678901234567",
            "110-123-45678a",
            "１１０１２３４５６７８９",
            "110_123_456789",
        ] {
            let err = RefundAccount::number(refused).unwrap_err();
            assert_eq!(err, RefundFieldRefused::Account, "{refused}");
            assert!(!err.to_string().contains(refused), "never quoted");
        }
    }

    #[test]
    fn a_refund_holder_is_refused_never_cleaned_when_kcp_would_refuse_it() {
        assert_eq!(RefundAccount::holder(" 홍길동 ").as_deref(), Ok("홍길동"));
        assert_eq!(
            RefundAccount::holder("HONG GILDONG").as_deref(),
            Ok("HONG GILDONG")
        );
        for refused in ["홍,길동", "O'Brien", "a<b", "홍\t길동", &"가".repeat(21)] {
            assert_eq!(
                RefundAccount::holder(refused),
                Err(RefundFieldRefused::Holder),
                "{refused}"
            );
        }
        assert!(matches!(
            RefundAccount::holder("javascript:alert(1)"),
            Err(RefundFieldRefused::Script(_))
        ));
        assert_eq!(
            RefundAccount::holder(&"가".repeat(20)).map(|h| h.len()),
            Ok(60)
        );
    }

    #[test]
    fn a_refund_accounts_debug_shows_the_bank_and_the_last_four_digits_only() {
        let account = RefundAccount {
            kcp_bank: "BK88",
            number: "110123456789".into(),
            holder: "홍길동".into(),
        };
        let shown = format!("{account:?}");
        assert!(
            shown.contains("BK88") && shown.contains("********6789"),
            "{shown}"
        );
        assert!(
            !shown.contains("110123") && !shown.contains("홍길동"),
            "{shown}"
        );
    }

    #[test]
    fn a_deposit_deadline_lies_after_now_and_before_the_year_ten_thousand() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let later = now + chrono::Duration::seconds(1);
        assert_eq!(deposit_deadline(later, now), Ok(later));
        assert_eq!(deposit_deadline(now, now), Err(DueRefused));
        assert_eq!(
            deposit_deadline(now - chrono::Duration::days(1), now),
            Err(DueRefused)
        );
        let last = chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59+09:00").unwrap();
        assert!(deposit_deadline(last.to_utc(), now).is_ok());
        let past_9999 = last.to_utc() + chrono::Duration::seconds(1);
        assert_eq!(deposit_deadline(past_9999, now), Err(DueRefused));
    }

    #[test]
    fn a_deadline_in_unix_seconds_follows_the_same_rule_and_no_date_is_refused_alike() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            deposit_deadline_unix(1_800_000_001, now).map(|d| d.timestamp()),
            Ok(1_800_000_001)
        );
        for refused in [1_800_000_000, 0, -1, 253_402_268_800, i64::MAX, i64::MIN] {
            assert_eq!(
                deposit_deadline_unix(refused, now),
                Err(DueRefused),
                "{refused}"
            );
        }
    }

    #[test]
    fn an_open_account_is_looked_at_hourly_then_once_after_its_deadline_then_never() {
        let due = 100_000;
        assert_eq!(next_check(10_000, Some(0), Some(due)), Some(13_600));
        assert_eq!(
            next_check(due + 100, Some(0), Some(due)),
            Some(due + LAST_CHECK_AFTER_DUE_SECS),
            "the last look waits for the deadline's deposits"
        );
        assert_eq!(
            next_check(due + LAST_CHECK_AFTER_DUE_SECS, Some(0), Some(due)),
            None
        );
        assert_eq!(
            next_check(CHECK_AT_MOST_SECS - 10, Some(0), None),
            Some(CHECK_AT_MOST_SECS),
            "no deadline known: a month from issuance"
        );
        assert_eq!(next_check(CHECK_AT_MOST_SECS, Some(0), None), None);
    }

    #[test]
    fn an_account_ready_again_after_a_reversal_is_looked_at_ten_minutes_on_until_its_last_look() {
        let due = 100_000;
        assert_eq!(first_check_again(10_000, Some(0), Some(due)), Some(10_600));
        let last = due + LAST_CHECK_AFTER_DUE_SECS;
        assert_eq!(
            first_check_again(last - 100, Some(0), Some(due)),
            Some(last)
        );
        assert_eq!(first_check_again(last, Some(0), Some(due)), None);
        assert_eq!(first_check_again(CHECK_AT_MOST_SECS, Some(0), None), None);
    }
}
