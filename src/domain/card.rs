//! Card data parsed at the edge (parse, don't validate): a value of these types is well-formed,
//! so the service never sees an unchecked string. None of them prints its digits in `Debug`.
//!
//! In memory, only the KCP request's copy is wiped: `pg::kcp::wire::Sensitive` zeroizes its
//! digits on drop. These types do not, and neither do the copies made before them (the request
//! body, the `serde_json::Value` the extractor checks it through, the request structs' strings)
//! nor the JSON body reqwest sends to KCP; wiping every copy is not realistic with axum and serde.
//! A card number may so linger in freed heap, readable in a core dump, in swap or through a
//! memory-disclosure bug: the guarantee is that card data is never logged, stored unmasked or
//! echoed, not that the process keeps no trace of it (docs/sandbox.md §7).
use chrono::{Datelike, NaiveDate};

/// Why card data was refused before anything was sent to KCP. Messages never echo the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardDataError {
    #[error("카드번호 형식이 올바르지 않습니다. (숫자 13~16자리)")]
    NumberFormat,
    #[error("유효하지 않은 카드번호입니다. (검증숫자 불일치)")]
    NumberChecksum,
    #[error("카드 유효기간 형식이 올바르지 않습니다. (YYYY-MM)")]
    ExpiryFormat,
    #[error("카드 유효기간이 지났습니다.")]
    Expired,
    #[error("생년월일(6자리) 또는 사업자등록번호(10자리) 형식이 올바르지 않습니다.")]
    BirthFormat,
    #[error("카드 비밀번호 앞 2자리 형식이 올바르지 않습니다.")]
    PwdFormat,
    #[error("인증 결제에는 birth와 pwd_2digit가 함께 필요합니다.")]
    AuthPair,
}

/// KCP's test card from its integration guide. It fails the Luhn check, but KCP's test server is
/// documented with it, so it is let through to KCP (whose production servers refuse it) instead of
/// being refused here: a merchant trying the guide's example gets KCP's answer, not ours.
const KCP_GUIDE_TEST_CARD: &str = "4673090000000032";

/// 13–16 digits that pass the Luhn check (or KCP's guide test card). Accepts `dddd-dddd-dddd-dddd`
/// and spaces as iamport does.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl CardNumber {
    pub fn parse(raw: &str) -> Result<Self, CardDataError> {
        let digits: String = raw.chars().filter(|c| *c != '-' && *c != ' ').collect();
        if !(13..=16).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardDataError::NumberFormat);
        }
        if digits != KCP_GUIDE_TEST_CARD && !luhn_ok(&digits) {
            return Err(CardDataError::NumberChecksum);
        }
        Ok(Self(digits))
    }

    /// The digits, for the one place that must send them: the KCP request body.
    pub fn expose_digits(&self) -> &str {
        &self.0
    }

    /// iamport's mask: first 6 and last 4 digits kept, e.g. `411111******1111`.
    pub fn masked(&self) -> String {
        mask_card_number(&self.0)
    }
}

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardNumber({})", self.masked())
    }
}

/// iamport's and KCP's mask: the first 6 and the last 4 digits kept, everything else `*`
/// (`411111******1111`). Separators are dropped and a `*` counts as a hidden digit, so a mask made
/// elsewhere is masked again rather than trusted: `411111111111111*` (a browser can post
/// anything) keeps 10 digits, not 15. A number too short to be a card number keeps at most its
/// last 4 digits, so a mask never reveals more than 10 digits.
pub fn mask_card_number(raw: &str) -> String {
    let chars: Vec<char> = raw
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '*')
        .collect();
    let n = chars.len();
    let keep = |i: usize| {
        if n >= 13 {
            i < 6 || i + 4 >= n
        } else {
            n > 4 && i + 4 >= n
        }
    };
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if keep(i) { *c } else { '*' })
        .collect()
}

/// Free text from a PG (KCP's `res_msg`) with every card number in it masked as
/// [`mask_card_number`] masks one: a run of 13 to 19 digits, also written in groups joined by
/// single hyphens or spaces the way card numbers are printed (4-4-4-4 and the like, Amex's
/// 4-6-5), which the gateway itself accepts as a card number. KCP should never put a card number
/// in a message, but the text is stored (`fail_reason`), answered to the merchant and put in a
/// mobile buyer's redirect URL, so it is not trusted to be free of one. Shorter numbers (codes,
/// amounts) and amounts that merely follow one another are kept.
pub fn mask_card_numbers_in(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // A run: digit groups joined by one separator each.
        let start = i;
        let mut groups = vec![];
        loop {
            let from = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            groups.push(i - from);
            let joined = i + 1 < chars.len()
                && matches!(chars[i], '-' | ' ')
                && chars[i + 1].is_ascii_digit();
            if !joined {
                break;
            }
            i += 1;
        }
        // Groups that print a card number from the first one: the whole run is masked. When the
        // run holds such groups and more (a card and an amount, `4111 1111 1111 1111 5000원`, or
        // a number and a card, `1000 4111 1111 1111 1111`), which digits are the card's cannot be
        // told, so all of it is masked but its first 6 and last 4 digits: no more of any card in
        // it shows than a masked card shows. When none does, the first group is kept and the
        // next ones are looked at again (an amount before a card).
        let holds_card = (1..=groups.len()).any(|k| {
            let digits: usize = groups[..k].iter().sum();
            printed_like_a_card(&groups[..k]) && (13..=19).contains(&digits)
        });
        let end = if holds_card { i } else { start + groups[0] };
        let run: String = chars[start..end].iter().collect();
        let digits: String = run.chars().filter(char::is_ascii_digit).collect();
        if holds_card || (13..=19).contains(&digits.len()) {
            let masked = mask_card_number(&digits);
            let mut masked = masked.chars();
            out.extend(run.chars().map(|c| {
                if c.is_ascii_digit() {
                    masked.next().unwrap_or('*')
                } else {
                    c
                }
            }));
        } else {
            out.push_str(&run);
        }
        i = end;
    }
    out
}

/// Whether digit groups of these lengths are a card number as printed: one run, groups of four
/// with a last one of one to four (16 digits as 4-4-4-4, 19 as 4-4-4-4-3, …), or Amex's and
/// Diners' 4-6-5 and 4-6-4.
fn printed_like_a_card(groups: &[usize]) -> bool {
    match groups {
        [_] => true,
        [4, 6, 4] | [4, 6, 5] => true,
        [init @ .., last] => init.iter().all(|g| *g == 4) && (1..=4).contains(last),
        [] => false,
    }
}

fn luhn_ok(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Card expiry month. iamport sends `YYYY-MM`; `YYYYMM` and `YY/MM` are accepted too.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    year: i32,
    month: u32,
}

impl Expiry {
    /// Parses and refuses a card whose last valid month is before `today`'s month.
    pub fn parse(raw: &str, today: NaiveDate) -> Result<Self, CardDataError> {
        let digits: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
        let (year, month) = match digits.len() {
            6 => (digits[..4].parse::<i32>(), digits[4..].parse::<u32>()),
            4 if raw.contains('/') => (
                digits[..2].parse::<i32>().map(|y| 2000 + y),
                digits[2..].parse::<u32>(),
            ),
            _ => return Err(CardDataError::ExpiryFormat),
        };
        let (Ok(year), Ok(month)) = (year, month) else {
            return Err(CardDataError::ExpiryFormat);
        };
        if !(1..=12).contains(&month) || !(2000..=2099).contains(&year) {
            return Err(CardDataError::ExpiryFormat);
        }
        if (year, month) < (today.year(), today.month()) {
            return Err(CardDataError::Expired);
        }
        Ok(Self { year, month })
    }

    /// KCP's `card_expiry` is `YYMM` (spec/kcp.md §2.7).
    pub fn yymm(&self) -> String {
        format!("{:02}{:02}", self.year % 100, self.month)
    }
}

impl std::fmt::Debug for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Expiry(<redacted>)")
    }
}

/// Authentication data of an authenticated key-in payment (KCP `card_taxno` + `card_pwd`).
#[derive(Clone, PartialEq, Eq)]
pub struct CardAuth {
    birth: String,
    pwd_2digit: Option<String>,
}

impl CardAuth {
    /// `birth` is YYMMDD (6) or a business registration number (10); `pwd_2digit` two digits.
    /// A PIN without a birth date is refused; a birth date alone is kept (billing keys take it,
    /// key-in refuses it: see [`CardAuth::is_complete`]).
    pub fn parse(birth: Option<&str>, pwd: Option<&str>) -> Result<Option<Self>, CardDataError> {
        let birth = birth.map(str::trim).filter(|s| !s.is_empty());
        let pwd = pwd.map(str::trim).filter(|s| !s.is_empty());
        let Some(b) = birth else {
            return if pwd.is_some() {
                Err(CardDataError::AuthPair)
            } else {
                Ok(None)
            };
        };
        let b: String = b.chars().filter(|c| *c != '-').collect();
        if !(b.len() == 6 || b.len() == 10) || !b.bytes().all(|c| c.is_ascii_digit()) {
            return Err(CardDataError::BirthFormat);
        }
        if let Some(p) = pwd {
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(CardDataError::PwdFormat);
            }
        }
        Ok(Some(Self {
            birth: b,
            pwd_2digit: pwd.map(str::to_string),
        }))
    }

    /// Both a birth date and the PIN prefix: what KCP's authenticated key-in needs (spec §2.7).
    pub fn is_complete(&self) -> bool {
        self.pwd_2digit.is_some()
    }

    pub fn expose_birth(&self) -> &str {
        &self.birth
    }
    pub fn expose_pwd(&self) -> Option<&str> {
        self.pwd_2digit.as_deref()
    }
}

impl std::fmt::Debug for CardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardAuth(<redacted>)")
    }
}

/// iamport's standard card-company codes (`card_code`, iamport docs "카드사 표준코드") for KCP
/// issuer codes (`card_cd`, spec/kcp.md §4). Issuers without a standard code (foreign brands)
/// keep `None` rather than a wrong code. `CCKA` 카카오뱅크 is not in spec/kcp.md's list but is
/// the code the sandbox answers for its Kakao Bank card: mapped so that `card_code` shows `090`,
/// as `GET /cards` lists it. 우체국, 새마을금고, 신협 and 케이뱅크 have no KCP code documented
/// anywhere openport can cite, so none is guessed for them.
pub fn iamport_card_code(kcp_card_cd: &str) -> Option<&'static str> {
    Some(match kcp_card_cd {
        "CCBC" => "361",
        "CCKJ" => "364",
        "CCSS" => "365",
        "CCLG" => "366",
        "CCDI" => "367",
        "CCLO" | "CCAM" => "368",
        "CCSU" => "369",
        "CCCT" | "CCHM" => "370",
        "CCNH" => "371",
        "CCJB" => "372",
        "CCCJ" => "373",
        "CCHN" | "CCKE" => "374",
        "CCKM" => "381",
        "CCWR" => "041",
        "CCKA" => "090",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_number_in_pg_text_is_masked_and_shorter_numbers_are_kept() {
        assert_eq!(
            mask_card_numbers_in("[8888] refused 4362187392541073 (20 items, 8187)"),
            "[8888] refused 436218******1073 (20 items, 8187)"
        );
        assert_eq!(
            mask_card_numbers_in("한도초과 1000000원"),
            "한도초과 1000000원"
        );
        assert_eq!(
            mask_card_numbers_in("no 12345678901234567890"),
            "no 12345678901234567890"
        );
    }

    #[test]
    fn a_card_number_printed_in_groups_in_pg_text_is_masked_and_amounts_side_by_side_are_kept() {
        assert_eq!(
            mask_card_numbers_in("거절 4111-1111-1111-1111."),
            "거절 4111-11**-****-1111."
        );
        assert_eq!(
            mask_card_numbers_in("거절 4111 1111 1111 1111"),
            "거절 4111 11** **** 1111"
        );
        assert_eq!(
            mask_card_numbers_in("amex 3782-822463-10005 end"),
            "amex 3782-82****-*0005 end"
        );
        assert_eq!(
            mask_card_numbers_in("한도 1000000 2000000 3000000"),
            "한도 1000000 2000000 3000000"
        );
        assert_eq!(
            mask_card_numbers_in("코드 8888 1000 금액 50000"),
            "코드 8888 1000 금액 50000"
        );
        assert_eq!(
            mask_card_numbers_in("12 4111111111111111"),
            "12 411111******1111"
        );
        // A card number next to another number: which digits are the card's cannot be told, so
        // no more than a masked card's first 6 and last 4 digits of the run show.
        assert_eq!(
            mask_card_numbers_in("거절 4111 1111 1111 1111 5000원"),
            "거절 4111 11** **** **** 5000원"
        );
        assert_eq!(
            mask_card_numbers_in("거절 4111-1111-1111-1111 50000원"),
            "거절 4111-11**-****-**** *0000원"
        );
        assert_eq!(
            mask_card_numbers_in("1000 4111 1111 1111 1111"),
            "1000 41** **** **** 1111"
        );
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    #[test]
    fn a_dashed_card_number_with_a_good_checksum_is_accepted_and_masked() {
        let n = CardNumber::parse("4111-1111-1111-1111").unwrap();
        assert_eq!(n.expose_digits(), "4111111111111111");
        assert_eq!(n.masked(), "411111******1111");
        assert_eq!(format!("{n:?}"), "CardNumber(411111******1111)");
    }

    #[test]
    fn kcps_guide_test_card_goes_to_kcp_although_it_fails_luhn() {
        assert!(!luhn_ok("4673090000000032"));
        let n = CardNumber::parse("4673-0900-0000-0032").unwrap();
        assert_eq!(n.masked(), "467309******0032");
        assert_eq!(
            CardNumber::parse("4673090000000034"),
            Err(CardDataError::NumberChecksum)
        );
    }

    #[test]
    fn a_card_number_failing_luhn_or_length_is_refused() {
        assert_eq!(
            CardNumber::parse("4111111111111112"),
            Err(CardDataError::NumberChecksum)
        );
        assert_eq!(CardNumber::parse("41111"), Err(CardDataError::NumberFormat));
        assert_eq!(
            CardNumber::parse("4111a11111111111"),
            Err(CardDataError::NumberFormat)
        );
    }

    #[test]
    fn an_expiry_in_the_past_is_refused_and_the_current_month_is_accepted() {
        assert_eq!(
            Expiry::parse("2026-10", today()),
            Err(CardDataError::Expired)
        );
        assert_eq!(Expiry::parse("2026-11", today()).unwrap().yymm(), "2611");
        assert_eq!(Expiry::parse("203001", today()).unwrap().yymm(), "3001");
        assert_eq!(Expiry::parse("30/01", today()).unwrap().yymm(), "3001");
        assert_eq!(
            Expiry::parse("2030-13", today()),
            Err(CardDataError::ExpiryFormat)
        );
        assert_eq!(
            Expiry::parse("nonsense", today()),
            Err(CardDataError::ExpiryFormat)
        );
    }

    #[test]
    fn birth_and_pin_must_come_together_in_their_formats() {
        assert_eq!(CardAuth::parse(None, None), Ok(None));
        assert!(CardAuth::parse(Some("800101"), Some("00"))
            .unwrap()
            .is_some());
        assert!(CardAuth::parse(Some("1234567890"), Some("12"))
            .unwrap()
            .is_some());
        assert_eq!(
            CardAuth::parse(Some("8001"), Some("00")),
            Err(CardDataError::BirthFormat)
        );
        assert_eq!(
            CardAuth::parse(Some("800101"), Some("0")),
            Err(CardDataError::PwdFormat)
        );
        // A birth date alone is kept (billing keys take it); a PIN alone is refused.
        assert!(!CardAuth::parse(Some("800101"), None)
            .unwrap()
            .unwrap()
            .is_complete());
        assert_eq!(
            CardAuth::parse(None, Some("00")),
            Err(CardDataError::AuthPair)
        );
    }
}
