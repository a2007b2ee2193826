//! Pure types and rules of the payment domain. No I/O here.
pub mod card;
pub mod checkout;
pub mod codes;
pub mod escrow;
pub mod ids;
pub mod kcp_origin;
pub mod order;
pub mod payment;
pub mod schedule;
pub mod text;
pub mod vbank;
