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

    /// The system clock shifted by an offset the caller can move (tests).
    pub fn shifted() -> (Self, Arc<AtomicI64>) {
        let offset = Arc::new(AtomicI64::new(0));
        let o = offset.clone();
        let clock = Self(Arc::new(move || {
            Utc::now() + chrono::Duration::seconds(o.load(Ordering::SeqCst))
        }));
        (clock, offset)
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

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
