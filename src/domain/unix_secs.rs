//! Times a merchant sends as Unix seconds (`schedule_at`, `POST /vbanks`' `vbank_due`), and the
//! words that tell a number written in another form for what it is. The browser checkout takes a
//! deadline written out as a date (`YYYYMMDDHHmm`, docs/api.md `vbank_due`); moved to the REST
//! API, the same digits read as seconds are a time in 1970 (8 digits, refused as "not in the
//! future", which sent the merchant looking at clocks) or thousands of years ahead (12 or 14
//! digits: answered `code 0`, a schedule that never ran, an account that never expired).
use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// The latest Unix second taken as a time to act at: the last of 10 digits (2286-11-20), as the
/// browser checkout reads Unix seconds. A longer number is another form: a date written out
/// (`YYYYMMDDHHmm`, 12 digits, is the year 8390 read as seconds; `…ss`) or milliseconds
/// (JavaScript's `Date.now()`, 13 digits). Refused, naming Unix seconds, never taken.
pub const LAST_INPUT_SECS: i64 = 9_999_999_999;

/// A number whose digits read as a date written out: the form and the date as it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenDate {
    /// `YYYYMMDD`, `YYYYMMDDHHmm` or `YYYYMMDDHHmmss`.
    pub form: &'static str,
    /// The date as the digits write it (`2026-12-10 10:00`), in no time zone: the merchant's.
    pub date: String,
}

/// The date `value`'s digits write, if they write one: 8 digits `YYYYMMDD`, 12 `YYYYMMDDHHmm`,
/// 14 `YYYYMMDDHHmmss`, a real day and time of a year from 1900.
pub fn written_date(value: i64) -> Option<WrittenDate> {
    let digits = value.to_string();
    let (form, shown) = match digits.len() {
        8 => ("YYYYMMDD", "%Y-%m-%d"),
        12 => ("YYYYMMDDHHmm", "%Y-%m-%d %H:%M"),
        14 => ("YYYYMMDDHHmmss", "%Y-%m-%d %H:%M:%S"),
        _ => return None,
    };
    // Two digits at a time past the year (chrono's `%Y` would take any number of digits).
    let part = |at: usize| -> Option<u32> {
        digits
            .get(at..at + 2)
            .map_or(Some(0), |two| two.parse().ok())
    };
    let year: i32 = digits.get(..4)?.parse().ok()?;
    if year < 1900 {
        return None;
    }
    let at: NaiveDateTime = NaiveDate::from_ymd_opt(year, part(4)?, part(6)?)?.and_hms_opt(
        part(8)?,
        part(10)?,
        part(12)?,
    )?;
    Some(WrittenDate {
        form,
        date: at.format(shown).to_string(),
    })
}

/// The refusal of `value`, over [`LAST_INPUT_SECS`], as a time: `subject` (`vbank_due는`) must be
/// Unix seconds; digits that write a date are named as that date, any other number is told it is
/// no dated form or milliseconds either.
pub fn too_long_message(subject: &str, value: i64) -> String {
    let why = match written_date(value) {
        Some(w) => {
            let year = DateTime::from_timestamp(value, 0)
                .map(|read| format!(", Unix 초로 읽으면 {}년", read.format("%Y")))
                .unwrap_or_default();
            format!(
                "{value}은(는) {} 형식의 날짜({}){year}입니다. 날짜는 Unix 초로 바꾸어 보내 주세요.",
                w.form, w.date
            )
        }
        None => "YYYYMMDDHHmm 같은 날짜 형식이나 밀리초 단위 값(예: JavaScript Date.now())은 Unix 초로 바꾸어 보내 주세요. (밀리초는 1000으로 나누어 주세요)".into(),
    };
    format!("{subject} Unix 타임스탬프(초 단위, {LAST_INPUT_SECS} 이하)여야 합니다. {why}")
}

/// What a refusal of `value` as a time not in the future adds when its digits write a date
/// (`YYYYMMDD`, 8 digits: read as seconds, a time in 1970): that it was read as Unix seconds, and
/// the date it looks like. None for any other number, whose refusal needs no more words.
pub fn read_as_secs_note(value: i64) -> Option<String> {
    let w = written_date(value)?;
    let read = DateTime::from_timestamp(value, 0)?;
    Some(format!(
        "{value}은(는) Unix 초로 읽어 {} UTC입니다. {} 형식의 날짜({})라면 Unix 타임스탬프(초 단위)로 바꾸어 보내 주세요.",
        read.format("%Y-%m-%d %H:%M:%S"),
        w.form,
        w.date
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_that_write_a_real_date_are_named_in_their_form_and_others_are_not() {
        let named = |v: i64| written_date(v).map(|w| (w.form, w.date));
        assert_eq!(named(20_261_210), Some(("YYYYMMDD", "2026-12-10".into())));
        assert_eq!(
            named(202_612_101_000),
            Some(("YYYYMMDDHHmm", "2026-12-10 10:00".into()))
        );
        assert_eq!(
            named(20_261_210_235_959),
            Some(("YYYYMMDDHHmmss", "2026-12-10 23:59:59".into()))
        );
        for no_date in [
            20_261_310,        // month 13
            20_260_230,        // 30 February
            202_612_102_400,   // hour 24
            12_345_678,        // year 1234
            1_765_328_400,     // Unix seconds (10 digits)
            1_765_328_400_000, // milliseconds (13 digits)
            -20_261_210,       // a sign
            253_402_268_400,   // 12 digits, no time of day
        ] {
            assert_eq!(named(no_date), None, "{no_date}");
        }
    }

    #[test]
    fn a_long_number_is_told_unix_seconds_with_its_date_or_as_milliseconds() {
        let dated = too_long_message("x는", 202_612_101_000);
        assert!(
            dated.starts_with("x는 Unix 타임스탬프(초 단위, 9999999999 이하)"),
            "{dated}"
        );
        assert!(
            dated.contains("YYYYMMDDHHmm 형식의 날짜(2026-12-10 10:00)"),
            "{dated}"
        );
        assert!(dated.contains("8390년"), "{dated}");
        let millis = too_long_message("x는", 1_765_328_400_000);
        assert!(
            millis.contains("밀리초") && millis.contains("Date.now()"),
            "{millis}"
        );
        assert!(too_long_message("x는", i64::MAX).contains("밀리초"));
        assert!(too_long_message("x는", 20_261_210_100_000).contains("2026-12-10 10:00:00"));
    }

    #[test]
    fn a_past_number_is_noted_as_read_in_1970_only_when_it_writes_a_date() {
        let note = read_as_secs_note(20_261_210).unwrap();
        assert!(
            note.contains("1970-08-23") && note.contains("YYYYMMDD 형식의 날짜(2026-12-10)"),
            "{note}"
        );
        assert_eq!(read_as_secs_note(1_765_328_400), None);
        assert_eq!(read_as_secs_note(0), None);
    }
}
