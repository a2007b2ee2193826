//! sea-orm entities, one per table of `migrations/`.
pub mod access_token;
pub mod cancellation;
pub mod merchant;
pub mod payment;
pub mod pg_attempt;
pub mod prepare;
