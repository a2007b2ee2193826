//! The iamport-compatible REST surface. All routes are listed here, in one place.
pub mod admin;
pub mod auth;
pub mod benepia;
pub mod cancel;
pub mod codes;
pub mod customers;
pub mod doc;
pub mod envelope;
pub mod error;
pub mod escrow;
pub mod extract;
pub mod failures;
pub mod health;
pub mod notifications;
pub mod onetime;
pub mod order;
pub mod outdated;
pub mod payment_json;
pub mod payments;
pub mod prepare;
pub mod redirect_origins;
pub mod subscribe;
pub mod users;
pub mod vbanks;
pub mod webhooks;

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, delete, get, post};
use axum::Router;
use utoipa::OpenApi;

use crate::app::AppState;
use doc::{ControlCharacters, EmptyQueryValues};
use error::ApiError;
use extract::MerchantCaller;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "openport",
        description = "iamport (PortOne V1) compatible REST API served by openport over NHN KCP.\n\n\
            Every answer is the iamport envelope `{code, message, response}`. HTTP 200 with code 0 \
            carries the result; several operations also answer HTTP 200 with code 1 (a business \
            rule refused) or -1 (card data refused), with `response: null` and the reason in \
            `message`. Other failures are HTTP 4xx/5xx with code -1 and `response: null` \
            (`ErrorEnvelope`). Bodies may be JSON or `application/x-www-form-urlencoded` (with \
            `a[]`/`a[0][b]` keys); numbers may be sent as numeric strings and text fields as integers \
            (the schemas give the canonical type), but a boolean is no text (HTTP 400); an empty \
            query value counts as absent. A path segment that is not valid UTF-8 once decoded is HTTP 400 \
            (`ErrorEnvelope`). A control character (U+0000 to U+001F but \
            tab, CR and LF) in the path, the query or a body value is refused with HTTP 400 \
            (`ErrorEnvelope`) naming the field. On an instance older than its database (a newer \
            openport migrated it while this instance served it) every operation but `/health` and \
            `/admin/status` answers HTTP 503 (`ErrorEnvelope`, code -1) saying the instance must \
            be stopped, before its token or body is read.\n\n\
            iamport operations openport does not offer over KCP are not listed here and answer \
            HTTP 501 (`ErrorEnvelope`, the message naming the feature) to a valid token, 401 \
            without one: cash receipts (`/receipts/{imp_uid}`, `/receipts/external/{merchant_uid}`, \
            `POST /partners/receipts/{imp_uid}`), `GET /payments/{imp_uid}/balance` and \
            certifications (`/certifications/{imp_uid}`, `/certifications/otp/…`), KCP quick pay \
            (`/kcpquick/…`), `GET /tiers/{tier_code}` and convenience-store payments (`/cvs`, \
            `/cvs/{imp_uid}`). Any other path is HTTP 404."
    ),
    paths(
        auth::get_token,
        payments::get_one,
        payments::get_many,
        payments::find,
        payments::find_status,
        payments::find_all,
        payments::find_all_status,
        payments::by_status,
        payments::by_any_status,
        cancel::cancel,
        prepare::create,
        prepare::change,
        prepare::get,
        onetime::onetime,
        onetime::foreign,
        benepia::point,
        benepia::payment,
        subscribe::again,
        subscribe::schedule,
        subscribe::unschedule,
        subscribe::list,
        subscribe::by_customer,
        subscribe::get_one,
        subscribe::update,
        subscribe::reschedule,
        subscribe::retry,
        subscribe::customer_schedules,
        customers::register,
        customers::get,
        customers::delete,
        customers::get_many,
        customers::payments,
        admin::merchants,
        admin::status,
        health::health,
        webhooks::list,
        webhooks::resend,
        webhooks::settings,
        webhooks::configure,
        redirect_origins::current,
        redirect_origins::replace,
        escrow::register,
        escrow::change,
        escrow::get,
        vbanks::issue,
        vbanks::revoke,
        codes::banks,
        codes::bank,
        codes::cards,
        codes::card,
        users::pg_settings,
    ),
    modifiers(&ControlCharacters, &EmptyQueryValues),
    // Referenced from parameters and shared responses, which do not register what they name.
    components(schemas(
        doc::ErrorEnvelope,
        doc::NonBlank,
        doc::PlainJson,
        doc::PaymentStatusParam,
        doc::PaymentSorting,
    ))
)]
pub struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/getToken", post(auth::get_token))
        .route("/payments", get(payments::get_many))
        .route("/payments/cancel", post(cancel::cancel))
        .route(
            "/payments/prepare",
            post(prepare::create).put(prepare::change),
        )
        .route("/payments/prepare/{merchant_uid}", get(prepare::get))
        .route("/payments/find/{merchant_uid}", get(payments::find))
        .route(
            "/payments/find/{merchant_uid}/{payment_status}",
            get(payments::find_status),
        )
        .route("/payments/findAll/{merchant_uid}", get(payments::find_all))
        .route(
            "/payments/findAll/{merchant_uid}/{payment_status}",
            get(payments::find_all_status),
        )
        .route("/payments/status", get(payments::by_any_status))
        .route(
            "/payments/status/{payment_status}",
            get(payments::by_status),
        )
        .route("/payments/{imp_uid}", get(payments::get_one))
        .route("/subscribe/payments/onetime", post(onetime::onetime))
        .route("/subscribe/payments/foreign", post(onetime::foreign))
        .route("/benepia/point", post(benepia::point))
        .route("/benepia/payment", post(benepia::payment))
        .route("/subscribe/payments/again", post(subscribe::again))
        .route(
            "/subscribe/payments/schedule",
            post(subscribe::schedule).get(subscribe::list),
        )
        .route(
            "/subscribe/payments/unschedule",
            post(subscribe::unschedule),
        )
        .route(
            "/subscribe/payments/schedule/customers/{customer_uid}",
            get(subscribe::by_customer),
        )
        .route(
            "/subscribe/payments/schedule/{merchant_uid}",
            get(subscribe::get_one).put(subscribe::update),
        )
        .route(
            "/subscribe/payments/schedule/{merchant_uid}/reschedule",
            post(subscribe::reschedule),
        )
        .route(
            "/subscribe/payments/schedule/{merchant_uid}/retry",
            post(subscribe::retry),
        )
        .route("/subscribe/customers", get(customers::get_many))
        .route(
            "/subscribe/customers/{customer_uid}",
            post(customers::register)
                .get(customers::get)
                .delete(customers::delete),
        )
        .route(
            "/subscribe/customers/{customer_uid}/payments",
            get(customers::payments),
        )
        .route(
            "/subscribe/customers/{customer_uid}/schedules",
            get(subscribe::customer_schedules),
        )
        .route("/kcp/notify", post(notifications::notify))
        .route(
            "/escrows/logis/{imp_uid}",
            get(escrow::get).post(escrow::register).put(escrow::change),
        )
        .route("/vbanks", post(vbanks::issue))
        // iamport's 예금주 조회 (the official Node client's `Vbanks.getHolder`): not a KCP call.
        // Without this route `holder` was taken for an imp_uid and answered 405, before the token.
        .route("/vbanks/holder", get(no_vbank_holder))
        .route("/vbanks/{imp_uid}", delete(vbanks::revoke))
        .merge(crate::checkout::router())
        .route("/banks", get(codes::banks))
        .route("/banks/{bank_standard_code}", get(codes::bank))
        .route("/cards", get(codes::cards))
        .route("/cards/{card_standard_code}", get(codes::card))
        .route("/users/pg", get(users::pg_settings))
        .route("/admin/merchants", get(admin::merchants))
        .route("/admin/status", get(admin::status))
        .route("/health", get(health::health))
        .route("/openapi.json", get(openapi))
        .merge(webhooks::routes())
        .merge(redirect_origins::routes())
        .route(
            "/receipts/{imp_uid}",
            get(no_cash_receipts)
                .post(no_cash_receipts)
                .delete(no_cash_receipts),
        )
        .route(
            "/receipts/external/{merchant_uid}",
            get(no_cash_receipts)
                .post(no_cash_receipts)
                .delete(no_cash_receipts),
        )
        .route("/partners/receipts/{imp_uid}", post(no_cash_receipts))
        .route("/payments/{imp_uid}/balance", get(no_balance))
        .route(
            "/certifications/{imp_uid}",
            get(no_certifications).delete(no_certifications),
        )
        .route("/certifications/otp/request", post(no_certifications))
        .route(
            "/certifications/otp/confirm/{imp_uid}",
            post(no_certifications),
        )
        // KCP's quick pay (간편결제 회원) is a separate KCP contract spec/kcp.md does not describe;
        // iamport's 404 here means "no such member" or "no such billing key", which a client
        // deleting a key would take for "already gone".
        .route("/kcpquick/members/{member_id}", delete(no_kcp_quick))
        .route(
            "/kcpquick/members/{member_id}/fido/release",
            post(no_kcp_quick),
        )
        .route("/kcpquick/payment/money", post(no_kcp_quick))
        .route("/kcpquick/payment/autopay", post(no_kcp_quick))
        .route(
            "/kcpquick/prepare/{merchant_uid}",
            post(no_kcp_quick).put(no_kcp_quick),
        )
        .route("/kcpquick/autopay/{customer_uid}", delete(no_kcp_quick))
        .route("/tiers/{tier_code}", get(no_tiers))
        .route("/cvs", post(no_convenience_stores))
        .route("/cvs/{imp_uid}", delete(no_convenience_stores))
        // Easy pays' own order APIs (Naver Pay's orders, returns and points, PAYCO's order
        // status, Kakao Pay's orders, Paymentwall's deliveries): iamport's 404 under
        // `/payments/{imp_uid}/naver/*` means "no such payment", which a client would take as
        // an invalid imp_uid.
        .route(
            "/payments/{imp_uid}/naver/{*operation}",
            any(no_easy_pay_apis),
        )
        .route("/naver/{*operation}", any(no_easy_pay_apis))
        .route("/payco/{*operation}", any(no_easy_pay_apis))
        .route("/kakao/{*operation}", any(no_easy_pay_apis))
        .route("/paymentwall/{*operation}", any(no_easy_pay_apis))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn openapi() -> impl IntoResponse {
    envelope::json_response(StatusCode::OK, &ApiDoc::openapi())
}

/// The path is not quoted back: a client that put a card number or a token in it (by mistake, or
/// by a misrouted call) would find it echoed into its own logs.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("지원하지 않는 API입니다.")
}

/// iamport operations openport does not offer over KCP. The router's 404 told iamport clients
/// something false: iamport's OpenAPI gives 404 on these one meaning, "no such payment" or "no
/// cash receipt issued" (a merchant then records that a receipt the payment says was issued was
/// not, or that a valid imp_uid is invalid). HTTP 501 is what iamport answers for a PG it has no
/// cash-receipt support for (`POST`/`DELETE /receipts/{imp_uid}`). The token is checked first, as
/// on every merchant operation: without a valid one the answer is 401, never a hint of what is
/// served. The body is not read.
fn unsupported(feature: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        -1,
        format!("{feature} KCP(openport)에서 지원하지 않는 API입니다."),
    )
}

async fn no_cash_receipts(_: MerchantCaller) -> ApiError {
    unsupported("현금영수증 발급·조회·취소는")
}

async fn no_balance(_: MerchantCaller) -> ApiError {
    unsupported("결제금액 상세내역(balance) 조회는")
}

async fn no_certifications(_: MerchantCaller) -> ApiError {
    unsupported("본인인증은")
}

async fn no_kcp_quick(_: MerchantCaller) -> ApiError {
    unsupported("KCP 퀵페이(간편결제 회원)는")
}

async fn no_tiers(_: MerchantCaller) -> ApiError {
    unsupported("하위 가맹점(tier) 조회는")
}

async fn no_convenience_stores(_: MerchantCaller) -> ApiError {
    unsupported("편의점 결제는")
}

async fn no_easy_pay_apis(_: MerchantCaller) -> ApiError {
    unsupported("네이버페이·페이코·카카오페이·페이먼트월 주문 연동은")
}

async fn no_vbank_holder(_: MerchantCaller) -> ApiError {
    unsupported("예금주 조회는")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        -1,
        "허용되지 않는 HTTP 메소드입니다.",
    )
}

/// iamport tolerates `//payments//x/` and `/payments/x/`: collapse repeated slashes and drop a
/// trailing one before routing (spec/iamport-v1.md §8.12).
pub fn normalize_path(mut req: axum::extract::Request) -> axum::extract::Request {
    let uri = req.uri();
    let path = uri.path();
    if !(path.contains("//") || (path.len() > 1 && path.ends_with('/'))) {
        return req;
    }
    let mut clean = String::with_capacity(path.len());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        clean.push('/');
        clean.push_str(seg);
    }
    if clean.is_empty() {
        clean.push('/');
    }
    if let Some(q) = uri.query() {
        clean.push('?');
        clean.push_str(q);
    }
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = clean.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(new) = Uri::from_parts(parts) {
            *req.uri_mut() = new;
        }
    }
    req
}
