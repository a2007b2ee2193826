//! iamport's standard codes of banks and card companies: the 금융결제원 (KFTC) codes that
//! `bank_code`, `vbank_code` and `card_code` hold, with their names, as `GET /banks` and
//! `GET /cards` list them (iamport-v1.openapi.json `StandardCodeAnnotation`).

/// One institution: its standard code and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardCode {
    pub code: &'static str,
    pub name: &'static str,
}

const fn code(code: &'static str, name: &'static str) -> StandardCode {
    StandardCode { code, name }
}

/// Banks by their KFTC code (securities companies, which also have codes, are not listed: no KCP
/// payment method names them).
pub const BANKS: &[StandardCode] = &[
    code("002", "KDB산업은행"),
    code("003", "IBK기업은행"),
    code("004", "KB국민은행"),
    code("005", "외환은행"),
    code("007", "수협은행"),
    code("011", "NH농협은행"),
    code("012", "지역농축협"),
    code("020", "우리은행"),
    code("023", "SC제일은행"),
    code("027", "한국씨티은행"),
    code("031", "대구은행"),
    code("032", "부산은행"),
    code("034", "광주은행"),
    code("035", "제주은행"),
    code("037", "전북은행"),
    code("039", "경남은행"),
    code("045", "새마을금고"),
    code("048", "신협"),
    code("050", "저축은행"),
    code("054", "HSBC은행"),
    code("064", "산림조합중앙회"),
    code("071", "우체국"),
    code("081", "하나은행"),
    code("088", "신한은행"),
    code("089", "케이뱅크"),
    code("090", "카카오뱅크"),
    code("092", "토스뱅크"),
];

/// Card companies by iamport's card code: every code `card_code` can show for a KCP issuer
/// (`domain::card::iamport_card_code`), and the banks' own cards iamport lists with them.
pub const CARD_COMPANIES: &[StandardCode] = &[
    code("361", "BC카드"),
    code("364", "광주카드"),
    code("365", "삼성카드"),
    code("366", "신한카드"),
    code("367", "현대카드"),
    code("368", "롯데카드"),
    code("369", "수협카드"),
    code("370", "씨티카드"),
    code("371", "NH카드"),
    code("372", "전북카드"),
    code("373", "제주카드"),
    code("374", "하나카드"),
    code("381", "KB국민카드"),
    code("041", "우리카드"),
    code("071", "우체국카드"),
    code("045", "새마을금고카드"),
    code("048", "신협카드"),
    code("090", "카카오뱅크카드"),
    code("089", "케이뱅크카드"),
];

/// The bank with this code, exactly as listed (`"004"`).
pub fn bank(code: &str) -> Option<StandardCode> {
    BANKS.iter().find(|b| b.code == code).copied()
}

/// The card company with this code, exactly as listed (`"361"`).
pub fn card_company(code: &str) -> Option<StandardCode> {
    CARD_COMPANIES.iter().find(|c| c.code == code).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_listed_once_each() {
        for list in [BANKS, CARD_COMPANIES] {
            let mut codes: Vec<_> = list.iter().map(|c| c.code).collect();
            codes.sort_unstable();
            codes.dedup();
            assert_eq!(codes.len(), list.len());
        }
    }

    #[test]
    fn every_card_code_a_payment_can_show_is_listed() {
        for kcp in [
            "CCBC", "CCKJ", "CCSS", "CCLG", "CCDI", "CCLO", "CCAM", "CCSU", "CCCT", "CCHM", "CCNH",
            "CCJB", "CCCJ", "CCHN", "CCKE", "CCKM", "CCWR",
        ] {
            let code = crate::domain::card::iamport_card_code(kcp).unwrap();
            assert!(card_company(code).is_some(), "{kcp} → {code}");
        }
    }

    #[test]
    fn every_bank_code_a_payment_can_show_is_listed() {
        use crate::domain::vbank::VbankBank;
        for kcp in VbankBank::kcp_codes() {
            let code = VbankBank::iamport_code_of_kcp(kcp);
            assert!(bank(&code).is_some(), "{kcp} → {code}");
        }
    }
}
