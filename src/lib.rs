//! openport: an iamport (PortOne V1) compatible payment gateway over NHN KCP.
pub mod api;
pub mod app;
pub mod checkout;
pub mod clock;
pub mod config;
pub mod domain;
pub mod jobs;
pub mod logging;
pub mod net;
pub mod pg;
pub mod private_file;
pub mod service;
pub mod store;

pub use app::App;
