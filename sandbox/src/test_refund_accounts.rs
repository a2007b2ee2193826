//! Deterministic refund accounts (docs/sandbox.md §3): where a virtual account's deposits are sent
//! back by `STHD`/`STPD` with `mod_comp_type` `MDCP01`, whose account verification (계좌인증) they
//! make fail. Any other account number verifies, at any bank, under any holder's name; with
//! `MDCP02` (no verification) these do too.

/// An account the bank does not hold: verification fails with `8509`.
pub const NO_SUCH_ACCOUNT: &str = "9999999999";
/// An account held by [`HOLDER`]: verification under any other `mod_depositor` fails with `8510`.
pub const NAMED_HOLDER_ACCOUNT: &str = "8888888888";
/// The holder of [`NAMED_HOLDER_ACCOUNT`].
pub const HOLDER: &str = "김예금";
