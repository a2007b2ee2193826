//! A schedule's status as iamport names it (ScheduleResult `schedule_status`, spec/iamport-v1.md
//! §4.4).

/// What a schedule list can be filtered by: the three words of iamport's OpenAPI enum for
/// `schedule_status` (and the per-customer lists' `schedule-status`). Anything else is refused at
/// the edge rather than matching nothing: a mistyped filter answering an empty page reads as "no
/// schedules". openport's own `executing` (a run holds the schedule) is shown as `scheduled` and
/// is not a word a merchant can select by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleStatus {
    /// Not run yet, including one a run holds now.
    Scheduled,
    Executed,
    Revoked,
}

impl ScheduleStatus {
    /// The words a filter takes, as iamport's OpenAPI enum lists them.
    pub const WORDS: [&'static str; 3] = ["scheduled", "executed", "revoked"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => Self::Scheduled,
            "executed" => Self::Executed,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }

    /// The stored statuses shown as this one.
    pub fn db_statuses(self) -> &'static [&'static str] {
        match self {
            Self::Scheduled => &["scheduled", "executing"],
            Self::Executed => &["executed"],
            Self::Revoked => &["revoked"],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_iamports_three_words_are_schedule_statuses() {
        assert_eq!(
            ScheduleStatus::parse("scheduled"),
            Some(ScheduleStatus::Scheduled)
        );
        assert_eq!(
            ScheduleStatus::parse("executed"),
            Some(ScheduleStatus::Executed)
        );
        assert_eq!(
            ScheduleStatus::parse("revoked"),
            Some(ScheduleStatus::Revoked)
        );
        for other in ["executing", "Scheduled", "all", "failed", " revoked"] {
            assert_eq!(ScheduleStatus::parse(other), None, "{other}");
        }
    }

    #[test]
    fn a_schedule_being_run_is_listed_as_scheduled() {
        assert!(ScheduleStatus::Scheduled
            .db_statuses()
            .contains(&"executing"));
        assert!(!ScheduleStatus::Executed
            .db_statuses()
            .contains(&"executing"));
    }
}
