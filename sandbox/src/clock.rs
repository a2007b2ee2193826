//! Time as KCP shows it, and a clock tests can move.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};

/// The sandbox's clock: a function so tests can substitute a [`ManualClock`].
pub type Now = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Korea Standard Time, UTC+9, no daylight saving: every KCP time field uses it (spec §6).
fn kst_offset() -> FixedOffset {
    // 9 hours is always a valid offset.
    FixedOffset::east_opt(9 * 3600).unwrap_or_else(|| Utc.fix())
}

/// `at` in Korea Standard Time.
pub fn kst(at: DateTime<Utc>) -> DateTime<FixedOffset> {
    at.with_timezone(&kst_offset())
}

/// KCP's time format: `yyyyMMddHHmmss` in KST (spec §6).
const KCP_TIME: &str = "%Y%m%d%H%M%S";

/// `yyyyMMddHHmmss` in KST (spec §6).
pub fn kcp_time(at: DateTime<Utc>) -> String {
    kst(at).format(KCP_TIME).to_string()
}

/// The instant a `yyyyMMddHHmmss` KST string names (the inverse of [`kcp_time`]); None when it
/// is not one.
pub fn from_kcp_time(s: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(s, KCP_TIME).ok()?;
    kst_offset()
        .from_local_datetime(&naive)
        .single()
        .map(|at| at.with_timezone(&Utc))
}

/// The KST calendar day, which decides "same-day" cancel rules (spec §2.9).
pub fn kst_date(at: DateTime<Utc>) -> NaiveDate {
    kst(at).date_naive()
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = at;
    }

    pub fn advance(&self, by: TimeDelta) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }

    /// The clock as [`crate::SandboxConfig::now`] wants it.
    pub fn as_now(&self) -> Now {
        let clock = self.clone();
        Arc::new(move || clock.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kcp_times_are_korean_local_time() {
        let at = DateTime::parse_from_rfc3339("2023-03-27T02:32:14Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(kcp_time(at), "20230327113214");
        assert_eq!(from_kcp_time("20230327113214"), Some(at));
        assert_eq!(from_kcp_time("2023-03-27"), None);
    }
}
