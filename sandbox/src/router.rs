//! Every route in one place.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::{cancel, control, faults, hub, inquiry, paths, pc_window, window, Shared};

pub(crate) fn build(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(paths::HUB_PAYMENT, post(hub::payment))
        .route(paths::CANCEL, post(cancel::cancel))
        .route(paths::INQUIRY, post(inquiry::inquire))
        .route(paths::ENC_PAYMENT, post(window::approve_window))
        .route(paths::TRADE_REGISTER, post(window::register_std))
        .route(paths::MOBILE_TRADE_REGISTER, post(window::register_mobile))
        .route(paths::PAY_WINDOW, post(window::window_page))
        .route(paths::PAY_SUBMIT, post(window::submit))
        .route(paths::PC_SCRIPT, get(pc_window::script))
        .route(paths::PC_WINDOW, post(pc_window::window))
        // Faults apply to KCP's paths only, never to the control API.
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            faults::apply,
        ))
        .merge(control::routes())
        .with_state(shared)
}
