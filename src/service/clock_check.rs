//! Instances sharing one database must share one time.
//!
//! Leases and the settle delay compare times that different instances wrote, each from its own
//! clock: the creator's `created_at`, `lease_until` and `next_check_at` against the claimer's "now"
//! (`payments::claim_attempt`, `due_attempts`, [`Gateway::settled`]). An instance whose clock runs
//! a minute ahead takes over attempts whose request is still waiting for KCP, and concludes "KCP
//! has no such trade" before KCP could have answered. The comparisons stay in Rust (tests move a
//! fake clock), so the clocks themselves are checked: against the database server's clock, which
//! all instances share, at start (`openport serve` refuses to start when they differ by more than
//! `resolver.max_clock_skew_secs`) and again every minute by a background task of its own
//! (app.rs `spawn_clock_check`, never behind the resolver's KCP calls); while this host's clock is
//! off it claims no attempt or schedule and opens no KCP call. SQLite has one host: nothing to
//! compare.
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::{Gateway, ServiceError, ServiceResult};

/// The answer to a request that would open a KCP attempt on an instance whose clock is off.
pub const CLOCK_SKEWED: &str =
    "서버 시각이 맞지 않아 지금은 PG사에 요청하지 않았습니다. 잠시 후 다시 시도해 주세요.";

/// What comparing this host's clock with the database's found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockReading {
    /// SQLite: one host, one clock.
    NotShared,
    /// This host's clock is `skew_ms` ahead of the database's (negative: behind), within the bound
    /// (or the check is off, bound 0).
    Within { skew_ms: i64 },
    /// Beyond `max_ms`: this instance must not claim attempts.
    Skewed { skew_ms: i64, max_ms: i64 },
    /// Beyond `max_ms` by the midpoint, but the database took `round_trip_ms` to answer, so long
    /// that the skew could be within the bound: nothing is concluded and the verdict so far
    /// stands. The read includes the wait for a pooled connection, so right after a database
    /// restart a 28 s wait read as a 14 s skew and stopped every payment for a minute.
    Unsure { skew_ms: i64, round_trip_ms: i64 },
}

impl std::fmt::Display for ClockReading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotShared => f.write_str("not shared (SQLite)"),
            Self::Within { skew_ms } => write!(f, "{skew_ms} ms off the database's"),
            Self::Skewed { skew_ms, max_ms } => write!(
                f,
                "this host's clock is {skew_ms} ms off the database server's, more than the {max_ms} ms \
                 allowed (resolver.max_clock_skew_secs): leases and the settle delay would be misjudged; \
                 synchronise the clocks (NTP) of every openport host and the database"
            ),
            Self::Unsure {
                skew_ms,
                round_trip_ms,
            } => write!(
                f,
                "{skew_ms} ms off the database's by a reading that took {round_trip_ms} ms \
                 (a connection waited for): not judged, the verdict so far stands"
            ),
        }
    }
}

/// Judges this host's clock against the database's: `db_ms` was read between `before` and
/// `after` (this host's clock), so it is compared with their midpoint and the round trip does
/// not count as skew. `max_ms` 0: not judged. Skewed only when even the nearest moment of the
/// round trip is beyond the bound; a reading that cannot tell is [`ClockReading::Unsure`].
pub fn judge(before: DateTime<Utc>, after: DateTime<Utc>, db_ms: i64, max_ms: i64) -> ClockReading {
    let (before, after) = (before.timestamp_millis(), after.timestamp_millis());
    let round_trip_ms = after - before;
    let here = before + round_trip_ms / 2;
    let skew_ms = here - db_ms;
    if max_ms == 0 || skew_ms.abs() <= max_ms {
        ClockReading::Within { skew_ms }
    } else if skew_ms.abs() - (round_trip_ms + 1) / 2 <= max_ms {
        ClockReading::Unsure {
            skew_ms,
            round_trip_ms,
        }
    } else {
        ClockReading::Skewed { skew_ms, max_ms }
    }
}

impl Gateway {
    /// Compares this host's real clock (never the gateway's clock, which tests move) with the
    /// database server's, and records the verdict that `claim` obeys.
    pub async fn check_clock(&self) -> ServiceResult<ClockReading> {
        let before = Utc::now();
        let Some(db_ms) = self.db.server_time_ms().await? else {
            return Ok(ClockReading::NotShared);
        };
        let after = Utc::now();
        Ok(self.record_clock_reading(judge(before, after, db_ms, self.settings.max_clock_skew_ms)))
    }

    /// Records a reading: while the last one is [`ClockReading::Skewed`] this instance claims no
    /// attempt (`Gateway::claim`), so the resolver and a merchant's retry leave them to instances
    /// whose clocks agree. Logged when it turns either way.
    pub fn record_clock_reading(&self, reading: ClockReading) -> ClockReading {
        if let ClockReading::Unsure { .. } = reading {
            tracing::warn!("clock check: {reading}");
            return reading;
        }
        let skewed = matches!(reading, ClockReading::Skewed { .. });
        let was = self.clock_skewed.swap(skewed, Ordering::SeqCst);
        if skewed {
            tracing::error!("{reading}; claiming no KCP attempts until it is fixed");
        } else if was {
            tracing::warn!(
                "clock back in line with the database's ({reading}); claiming KCP attempts again"
            );
        }
        reading
    }

    /// Whether the last clock reading found this host's clock off (see [`Self::check_clock`]).
    pub fn clock_is_skewed(&self) -> bool {
        self.clock_skewed.load(Ordering::SeqCst)
    }

    /// Refuses to open a KCP attempt (a charge, a cancel, a window's approval) while this host's
    /// clock is off: the attempt's `created_at`, lease and settle time would be written from it,
    /// and instances whose clocks agree would take over a request still waiting for KCP, or judge
    /// "KCP has no such trade" before KCP could have answered. Nothing is written, so the
    /// merchant's retry (on another instance, or here once the clock is back) is safe. Its own
    /// error, not a refusal: a scheduled charge that meets it is run again later, not failed.
    pub(crate) fn refuse_while_skewed(&self) -> ServiceResult<()> {
        if self.clock_is_skewed() {
            return Err(ServiceError::ClockSkewed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn a_clock_within_the_bound_passes_and_one_beyond_it_either_way_is_skewed() {
        let db = 1_800_000_000_000;
        assert_eq!(
            judge(at(db + 4_000), at(db + 4_000), db, 5_000),
            ClockReading::Within { skew_ms: 4_000 }
        );
        assert_eq!(
            judge(at(db + 60_000), at(db + 60_000), db, 5_000),
            ClockReading::Skewed {
                skew_ms: 60_000,
                max_ms: 5_000
            }
        );
        assert_eq!(
            judge(at(db - 6_000), at(db - 6_000), db, 5_000),
            ClockReading::Skewed {
                skew_ms: -6_000,
                max_ms: 5_000
            }
        );
        // Off: never skewed.
        assert_eq!(
            judge(at(db + 60_000), at(db + 60_000), db, 0),
            ClockReading::Within { skew_ms: 60_000 }
        );
    }

    #[test]
    fn a_reading_that_waited_long_for_its_connection_concludes_nothing() {
        // A 28 s wait for a pooled connection while the database restarted, then an instant
        // answer: the midpoint is 14 s before the database's time, which the wait explains.
        let db = 1_800_000_000_000;
        assert_eq!(
            judge(at(db - 28_000), at(db), db, 5_000),
            ClockReading::Unsure {
                skew_ms: -14_000,
                round_trip_ms: 28_000
            }
        );
        // A clock a minute off stays skewed through a slow reading.
        assert_eq!(
            judge(at(db + 60_000), at(db + 62_000), db, 5_000),
            ClockReading::Skewed {
                skew_ms: 61_000,
                max_ms: 5_000
            }
        );
    }

    #[test]
    fn the_round_trip_of_the_query_is_not_counted_as_skew() {
        // The database read its clock half-way through a 3 s round trip.
        let db = 1_800_000_000_000;
        assert_eq!(
            judge(at(db - 1_500), at(db + 1_500), db, 1_000),
            ClockReading::Within { skew_ms: 0 }
        );
    }
}
