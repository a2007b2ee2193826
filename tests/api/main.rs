//! Integration tests through HTTP: gateway ↔ embedded KCP sandbox, one fresh database per test.
//! SQLite by default; PostgreSQL when `DATABASE_URL` is a postgres:// URL.
mod helpers;

mod admin;
mod auth;
mod benepia;
mod benepia_upgrade;
mod billing;
mod cancel;
mod checkout;
mod cli;
mod codes;
mod control_chars;
mod deleted_customers;
mod duplicate_orders;
mod escrow;
mod health;
mod kept_cards;
mod key_issuances;
mod lookups;
mod migrations;
mod notifications;
mod onetime;
mod openapi;
mod ownership;
mod point_amounts;
mod prepare;
mod reliability;
mod restore;
mod sandbox_state;
mod schedules;
mod server;
mod startup;
mod unreadable_amounts;
mod vbank_refunds;
mod vbanks;
mod webhooks;
