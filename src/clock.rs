//! The one source of "now" for services, jobs and the embedded sandbox, so tests can move time
//! instead of sleeping.
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// The system clock shifted by an offset the caller can move, and can stop (tests).
    pub fn shifted() -> (Self, Arc<ClockControl>) {
        let control = Arc::new(ClockControl {
            offset: AtomicI64::new(0),
            stopped_at_ms: AtomicI64::new(RUNNING),
        });
        let c = control.clone();
        let clock = Self(Arc::new(move || {
            let base = match c.stopped_at_ms.load(Ordering::SeqCst) {
                RUNNING => Utc::now(),
                ms => DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now),
            };
            base + chrono::Duration::seconds(c.offset.load(Ordering::SeqCst))
        }));
        (clock, control)
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }

    pub fn unix(&self) -> i64 {
        self.now().timestamp()
    }

    /// The same clock as a plain function, for components that must not depend on this crate.
    pub fn as_fn(&self) -> Arc<dyn Fn() -> DateTime<Utc> + Send + Sync> {
        self.0.clone()
    }
}

/// `ClockControl::stopped_at_ms` of a clock that runs.
const RUNNING: i64 = i64::MIN;

/// How a test moves a [`Clock::shifted`] clock.
#[derive(Debug)]
pub struct ClockControl {
    /// Seconds added to the system clock.
    offset: AtomicI64,
    /// The system time (Unix ms) the clock stands at, or [`RUNNING`].
    stopped_at_ms: AtomicI64,
}

impl ClockControl {
    /// Moves the clock forward (or back) by `secs`.
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::SeqCst);
    }

    /// Stops the clock where it is: from then on it moves only by [`Self::advance`], so a test
    /// can make two events happen within the same second.
    pub fn stop(&self) {
        self.stopped_at_ms
            .store(Utc::now().timestamp_millis(), Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
