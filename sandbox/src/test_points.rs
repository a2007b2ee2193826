//! Deterministic Benepia welfare-point accounts (spec/kcp.md §2.8, seed 003). Each sandbox starts
//! with these balances; payments take points off, full cancels give them back.

/// A Benepia member the sandbox knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenepiaAccount {
    /// `pt_idno`.
    pub id: &'static str,
    /// `pt_pwd`; anything else is refused with 8402.
    pub password: &'static str,
    /// `pt_memcorp_cd`, the member company Benepia assigned: at most 4 characters (seed 003
    /// §2.2–2.3), as KCP takes it.
    pub memcorp_cd: &'static str,
    /// Points held when the sandbox starts.
    pub balance: i64,
}

/// The member company of the test accounts.
pub const MEMBER_COMPANY: &str = "B001";

/// What [`MEMBER_COMPANY`] was before it was cut to KCP's 4 characters: a state file an older
/// sandbox saved names the test accounts with it (`PointBook::restore`).
pub(crate) const FORMER_MEMBER_COMPANY: &str = "BENE01";

/// 100,000 points.
pub const BENEPIA_01: BenepiaAccount = BenepiaAccount {
    id: "benepia01",
    password: "pass01",
    memcorp_cd: MEMBER_COMPANY,
    balance: 100_000,
};

/// 5,000 points: enough for a small payment, too few for a large one (8403).
pub const BENEPIA_02: BenepiaAccount = BenepiaAccount {
    id: "benepia02",
    password: "pass02",
    memcorp_cd: MEMBER_COMPANY,
    balance: 5_000,
};

/// Every account, in the order `GET /_sandbox/points` lists them.
pub const ACCOUNTS: [BenepiaAccount; 2] = [BENEPIA_01, BENEPIA_02];
