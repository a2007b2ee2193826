//! What the OpenAPI document (`GET /openapi.json`) says beyond the handlers' own types: the iamport
//! envelope around every answer (spec/iamport-v1.md §2), the error statuses the operations share,
//! the values parameters take, and the request rules a derive cannot state (one of two fields, a
//! field required in one use of a shared type). Nothing here runs when a request is served: these
//! types only describe what `error.rs`, `envelope.rs` and the handlers do.
use std::collections::BTreeMap;

use utoipa::openapi::path::Operation;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, SchemaType};
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, Type,
};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Required, Response, ResponseBuilder};
use utoipa::{IntoParams, IntoResponses, Modify, PartialSchema, ToSchema};

use super::admin::{InstanceStatusView, MerchantSummary};
use super::auth::AccessToken;
use super::benepia::{BenepiaPaymentRequest, BenepiaPointAnnotation};
use super::cancel::CancelRequest;
use super::codes::StandardCodeAnnotation;
use super::customers::{CustomerAnnotation, CustomerRequest};
use super::payment_json::{PaymentAnnotation, PaymentPage};
use super::prepare::PrepareAnnotation;
use super::subscribe::{ScheduleAnnotation, SchedulePage, ScheduleRequest, UnscheduleRequest};
use super::users::PgSettingAnnotation;
use super::webhooks::WebhookDeliveryView;
use crate::service::escrow::Logis;
use crate::service::redirect_origins::RedirectOrigins;
use crate::service::webhooks::WebhookSettings;

const JSON: &str = "application/json";

fn null() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Null)
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn code_zero() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some([0]))
        .description(Some("0: the request was carried out."))
}

fn code_outcome() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some([0, 1, -1]))
        .description(Some(
            "0: carried out (a charge the PG declined is code 0 with `status` `failed`); \
             1: refused by a business rule; -1: card data refused. \
             When it is not 0, `response` is null and `message` says why.",
        ))
}

fn code_error() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some([-1]))
}

/// A string with a character other than white space: the handlers take a blank value for a
/// missing one. (`\S` is completed into [`NON_BLANK`] by [`ControlCharacters`].)
#[derive(ToSchema)]
#[schema(pattern = r"\S")]
pub struct NonBlank(pub String);

/// One character a request may carry: no C0 control but tab, LF and CR
/// (`domain::text::is_refused_control`), which the handlers refuse with HTTP 400 wherever they
/// are: path, query, body value or field name. A macro so that `concat!` can build the patterns
/// below from the one class.
macro_rules! allowed_char {
    () => {
        r"[^\x00-\x08\x0B\x0C\x0E-\x1F]"
    };
}

/// Any string a request may carry ([`allowed_char`] throughout).
pub const NO_CONTROL: &str = concat!("^", allowed_char!(), "*$");

/// The characters the handlers take for white space (`str::trim`, Unicode's White_Space) but the
/// two that are refused controls (U+000B, U+000C): spelt out rather than `\s`, whose set differs
/// between regex dialects (ECMA-262's has U+FEFF and lacks U+0085), so that "blank" in the document
/// means exactly what it means to the code in every validator. A macro for `concat!`.
macro_rules! white_space {
    () => {
        r"\t\n\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
    };
}

/// [`NO_CONTROL`] with a character other than white space ([`white_space`]): what `pattern =
/// r"\S"` (a non-blank value) means in a request.
pub const NON_BLANK: &str = concat!(
    "^",
    allowed_char!(),
    r"*[^\x00-\x1F",
    white_space!(),
    "]",
    allowed_char!(),
    "*$"
);

/// White space only, or nothing ([`white_space`]): a value the handlers take for an absent one,
/// the complement of [`NON_BLANK`] among the strings a request may carry.
pub const BLANK: &str = concat!("^[", white_space!(), "]*$");

/// `null` or a [`BLANK`] string: a field given as absent.
fn absent() -> OneOfBuilder {
    OneOfBuilder::new()
        .item(null())
        .item(string().pattern(Some(BLANK)))
}

/// Any JSON value without a refused control character in its strings or field names, at any
/// depth ([`NO_CONTROL`]): what a request may carry where openport takes free-form data
/// (`custom_data`, escrow's `sender`/`receiver`/`products`) or ignores a field it does not know.
pub struct PlainJson;

impl PartialSchema for PlainJson {
    fn schema() -> RefOr<Schema> {
        let this = || Ref::from_schema_name(PlainJson::name());
        OneOfBuilder::new()
            .item(string().pattern(Some(NO_CONTROL)))
            .item(ObjectBuilder::new().schema_type(SchemaType::Array(vec![
                Type::Number,
                Type::Boolean,
                Type::Null,
            ])))
            .item(ArrayBuilder::new().items(this()))
            .item(
                ObjectBuilder::new()
                    .property_names(Some(string().pattern(Some(NO_CONTROL))))
                    .additional_properties(Some(this())),
            )
            .into()
    }
}

impl ToSchema for PlainJson {}

/// An absolute http(s) URL with a host (`domain::payment::is_web_url`), in the common form: a
/// domain name (no IP address), an optional port, then anything printable. The handlers take any
/// URL a WHATWG parser reads so; this is the form a client can be sure of.
pub const WEB_URL: &str = concat!(
    r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z][A-Za-z0-9-]*(\.[A-Za-z][A-Za-z0-9-]*)*(:[0-9]{1,4})?([/?#]",
    allowed_char!(),
    "*)?$"
);

fn web_url() -> ObjectBuilder {
    string()
        .format(Some(SchemaFormat::Custom("uri".into())))
        .pattern(Some(WEB_URL))
}

/// `notice_url`: absent, null or blank, one URL, or a list of them whose null or blank items are
/// dropped (`domain::text::string_list`, `domain::payment::check_notice_urls`).
pub(crate) fn notice_urls() -> OneOfBuilder {
    let url = || web_url().max_length(Some(crate::domain::payment::NOTICE_URL_MAX_CHARS));
    let item = OneOfBuilder::new()
        .item(null())
        .item(string().pattern(Some(BLANK)))
        .item(url());
    OneOfBuilder::new()
        .item(null())
        .item(string().pattern(Some(BLANK)))
        .item(url())
        .item(
            ArrayBuilder::new()
                .items(item)
                .max_items(Some(crate::domain::payment::NOTICE_URLS_MAX)),
        )
}

/// A merchant's default webhook URL: null or empty for none.
pub(crate) fn webhook_url() -> OneOfBuilder {
    OneOfBuilder::new()
        .item(null())
        .item(string().enum_values(Some([""])))
        .item(web_url())
}

/// `merchant_uid` of an unschedule: absent or null, one non-blank one, or a list of at most
/// [`UNSCHEDULE_UIDS_MAX`](super::subscribe::UNSCHEDULE_UIDS_MAX) non-blank ones, the empty list
/// included: the official Java client's `UnscheduleData(customer_uid)` sends `"merchant_uid": []`
/// for "all of the customer's", which the handler takes as an absent field. That it needs a
/// `customer_uid` beside it is [`UnscheduleBody`]'s rule. A blank one, or a blank item, is HTTP
/// 400 (never read as "all").
pub(crate) fn uid_or_uids() -> OneOfBuilder {
    OneOfBuilder::new()
        .item(null())
        .item(Ref::from_schema_name(NonBlank::name()))
        .item(
            ArrayBuilder::new()
                .items(Ref::from_schema_name(NonBlank::name()))
                .max_items(Some(super::subscribe::UNSCHEDULE_UIDS_MAX)),
        )
}

/// `{"code": -1, "message": "…", "response": null}`: every HTTP 4xx and 5xx answer (`error.rs`).
#[derive(ToSchema)]
pub struct ErrorEnvelope {
    #[schema(schema_with = code_error)]
    pub code: i32,
    /// Why, in iamport's (Korean) words. Never quotes card data or secrets.
    pub message: String,
    #[schema(schema_with = null, required = true)]
    pub response: Option<String>,
}

/// `{"code": 0, "message": null, "response": …}` around `$inner`: the HTTP 200 answer of an
/// operation that never refuses with HTTP 200 (its failures are 4xx/5xx `ErrorEnvelope`s).
macro_rules! reply {
    ($(#[doc = $doc:literal])* $name:ident($inner:ty)) => {
        $(#[doc = $doc])*
        #[derive(ToSchema)]
        pub struct $name {
            #[schema(schema_with = code_zero)]
            pub code: i32,
            #[schema(schema_with = null, required = true)]
            pub message: Option<String>,
            #[schema(required = true)]
            pub response: $inner,
        }
    };
}

/// The HTTP 200 answer of an operation that can also refuse with HTTP 200, as iamport does:
/// `code` 0 with the result, or `code` 1 / -1 with `response: null` and the reason in `message`.
macro_rules! outcome {
    ($(#[doc = $doc:literal])* $name:ident($inner:ty)) => {
        $(#[doc = $doc])*
        #[derive(ToSchema)]
        pub struct $name {
            #[schema(schema_with = code_outcome)]
            pub code: i32,
            /// null when `code` is 0.
            #[schema(required = true)]
            pub message: Option<String>,
            /// null when `code` is not 0.
            #[schema(required = true)]
            pub response: Option<$inner>,
        }
    };
}

reply!(
    /// An access token (code 0).
    TokenReply(AccessToken)
);
reply!(
    /// A payment (code 0).
    PaymentReply(PaymentAnnotation)
);
reply!(
    /// Payments in the order asked (code 0; HTTP 207 when some were not found).
    PaymentListReply(Vec<PaymentAnnotation>)
);
reply!(
    /// A page of payments (code 0).
    PaymentPageReply(PaymentPage)
);
reply!(
    /// A pre-registered amount (code 0).
    PrepareReply(PrepareAnnotation)
);
reply!(
    /// A payment schedule (code 0).
    ScheduleReply(ScheduleAnnotation)
);
reply!(
    /// A page of payment schedules (code 0).
    SchedulePageReply(SchedulePage)
);
reply!(
    /// Billing keys in the order asked (code 0; HTTP 207 when some were not found).
    CustomerListReply(Vec<CustomerAnnotation>)
);
reply!(
    /// The delivery information of an escrow payment, null when none is registered yet (code 0).
    LogisReply(Option<Logis>)
);
reply!(
    /// Every merchant (code 0).
    MerchantListReply(Vec<MerchantSummary>)
);
reply!(
    /// What waits for an operator on this instance (code 0).
    InstanceStatusReply(InstanceStatusView)
);
reply!(
    /// Webhook deliveries, newest first (code 0).
    WebhookDeliveryListReply(Vec<WebhookDeliveryView>)
);
reply!(
    /// A merchant's webhook settings (code 0).
    WebhookSettingsReply(WebhookSettings)
);
reply!(
    /// A merchant's redirect origins (code 0).
    RedirectOriginsReply(RedirectOrigins)
);
reply!(
    /// Banks or card companies with their standard codes (code 0).
    StandardCodeListReply(Vec<StandardCodeAnnotation>)
);
reply!(
    /// A bank or card company (code 0).
    StandardCodeReply(StandardCodeAnnotation)
);
reply!(
    /// The merchant's PG settings (code 0).
    PgSettingListReply(Vec<PgSettingAnnotation>)
);
outcome!(
    /// A payment (code 0), or a refusal (code 1 or -1, `response` null).
    PaymentOutcome(PaymentAnnotation)
);
outcome!(
    /// A pre-registered amount (code 0), or a refusal (code 1, `response` null).
    PrepareOutcome(PrepareAnnotation)
);
outcome!(
    /// Payment schedules (code 0), or a refusal (code 1 or -1, `response` null).
    ScheduleListOutcome(Vec<ScheduleAnnotation>)
);
outcome!(
    /// A billing key (code 0), or a refusal (code 1 or -1, `response` null).
    CustomerOutcome(CustomerAnnotation)
);
outcome!(
    /// A Benepia point balance (code 0), or KCP's refusal (code 1, `response` null).
    BenepiaPointOutcome(BenepiaPointAnnotation)
);
outcome!(
    /// The registered delivery information (code 0), or KCP's refusal (code 1, `response` null).
    LogisOutcome(Logis)
);
outcome!(
    /// A webhook delivery queued again (code 0), or a refusal (code 1, `response` null): it is
    /// being sent right now, or this instance's clock cannot be trusted to date it.
    WebhookDeliveryOutcome(WebhookDeliveryView)
);

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorEnvelope::name())))
                .build(),
        )
        .build()
        .into()
}

fn unauthorized() -> (String, RefOr<Response>) {
    (
        "401".into(),
        error_response(
            "No access token, an unknown or expired one, or one of the wrong kind (the operator's \
             on a merchant operation, a merchant's on an operator one).",
        ),
    )
}

fn internal() -> (String, RefOr<Response>) {
    (
        "500".into(),
        error_response("The database or the server failed; the cause is logged, not shown."),
    )
}

fn too_large() -> (String, RefOr<Response>) {
    ("413".into(), error_response("The body is over 256 KiB."))
}

fn body_timeout() -> (String, RefOr<Response>) {
    (
        "408".into(),
        error_response(
            "The body did not arrive within the body-read timeout (30 s by default); the \
             connection is closed.",
        ),
    )
}

/// 401 and 500: what any operation behind an access token can answer besides its own statuses.
pub struct TokenErrors;

impl IntoResponses for TokenErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([unauthorized(), internal()])
    }
}

/// 401, 408, 413 and 500: [`TokenErrors`] and the body's deadline and size limit, for operations
/// that read a body.
pub struct TokenBodyErrors;

impl IntoResponses for TokenBodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([unauthorized(), body_timeout(), too_large(), internal()])
    }
}

/// 408, 413 and 500: the body's deadline and size limit, and a server failure
/// (`/users/getToken`).
pub struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([body_timeout(), too_large(), internal()])
    }
}

/// A payment-status filter in a path. `undefined` is taken as `all` too, as iamport does.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum PaymentStatusParam {
    All,
    Ready,
    Paid,
    Failed,
    Cancelled,
}

/// The order of payment lists; `-` is newest first. Default `-started`.
#[derive(ToSchema)]
pub enum PaymentSorting {
    #[schema(rename = "-started")]
    StartedDesc,
    #[schema(rename = "started")]
    Started,
    #[schema(rename = "-paid")]
    PaidDesc,
    #[schema(rename = "paid")]
    Paid,
    #[schema(rename = "-updated")]
    UpdatedDesc,
    #[schema(rename = "updated")]
    Updated,
}

/// `{"name": {"type": "string", "pattern": "\\S"}}` required: one named, non-blank string field.
fn required_non_blank(name: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .property(name, Ref::from_schema_name(NonBlank::name()))
        .required(name)
}

/// Declares a documentation-only request type: `$base`'s schema with the `$extra` rules, which the
/// derive on `$base` cannot state.
macro_rules! refined {
    ($(#[doc = $doc:literal])* $name:ident: $base:ty, $extra:expr) => {
        $(#[doc = $doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                AllOfBuilder::new()
                    .item(Ref::from_schema_name(<$base as ToSchema>::name()))
                    .item($extra)
                    .description(Some(
                        [$($doc),*].map(str::trim).join(" "),
                    ))
                    .into()
            }
        }

        impl ToSchema for $name {
            fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
                out.push((<$base as ToSchema>::name().into(), <$base as PartialSchema>::schema()));
                <$base as ToSchema>::schemas(out);
                out.push((NonBlank::name().into(), NonBlank::schema()));
            }
        }
    };
}

refined!(
    /// A cancel names its payment by `imp_uid` or by `merchant_uid` (`imp_uid` wins when both are
    /// given); with neither the answer is HTTP 400. A virtual account holding deposits also needs
    /// the account its money goes back to: `refund_holder`, `refund_bank` and `refund_account`.
    CancelBody: CancelRequest,
    AnyOfBuilder::new()
        .item(required_non_blank("imp_uid"))
        .item(required_non_blank("merchant_uid"))
);

refined!(
    /// An unschedule names a `customer_uid` (all of its pending schedules when `merchant_uid` is
    /// absent, null or `[]`; else those of `merchant_uid` among them), or `merchant_uid` alone, one
    /// or a non-empty list (those schedules, whoever's they are). With neither, or with `[]` and
    /// no `customer_uid`, the answer is HTTP 400; so is a blank `merchant_uid` or a blank item of
    /// the list (`""`, `[""]`, a form's `merchant_uid=`), which is never taken for "all".
    UnscheduleBody: UnscheduleRequest,
    AnyOfBuilder::new()
        .item(required_non_blank("customer_uid"))
        .item(
            ObjectBuilder::new()
                .property(
                    "merchant_uid",
                    OneOfBuilder::new()
                        .item(Ref::from_schema_name(NonBlank::name()))
                        .item(
                            ArrayBuilder::new()
                                .items(Ref::from_schema_name(NonBlank::name()))
                                .min_items(Some(1)),
                        ),
                )
                .required("merchant_uid")
        )
);

refined!(
    /// A billing-key registration needs the card: `card_number` and `expiry` are required and not
    /// blank (a blank one counts as absent: HTTP 400 "… 파라메터가 누락되었습니다.").
    CustomerRegistration: CustomerRequest,
    ObjectBuilder::new()
        .property("card_number", Ref::from_schema_name(NonBlank::name()))
        .required("card_number")
        .property("expiry", Ref::from_schema_name(NonBlank::name()))
        .required("expiry")
);

refined!(
    /// Card data is read only for a `customer_uid` without a billing key, whose key is issued from
    /// it first; beside a registered key it is not read at all (iamport: "카드정보 선택사항").
    /// `card_number` and `expiry` come together: both given and not blank, or neither (absent,
    /// null or blank, which counts as absent: then a `customer_uid` without a key is answered
    /// code 1). One without the other is HTTP 400 for a `customer_uid` without a key.
    /// `birth` and `pwd_2digit` are read only with them: `pwd_2digit` needs `birth` (`birth`
    /// alone is kept), and card data that does not parse (`card_number`, `expiry`, `birth`,
    /// `pwd_2digit` without `birth`) is refused with code -1 (HTTP 200), not 400.
    ScheduleBody: ScheduleRequest,
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .property("card_number", Ref::from_schema_name(NonBlank::name()))
                .required("card_number")
                .property("expiry", Ref::from_schema_name(NonBlank::name()))
                .required("expiry"),
        )
        .item(
            ObjectBuilder::new()
                .property("card_number", absent())
                .property("expiry", absent()),
        )
);

refined!(
    /// A Benepia point payment also needs the product `name`, and its `merchant_uid` is at most 40
    /// characters (iamport's limit for this API).
    BenepiaPaymentBody: BenepiaPaymentRequest,
    ObjectBuilder::new()
        .property("name", Ref::from_schema_name(NonBlank::name()))
        .required("name")
        .property("merchant_uid", string().max_length(Some(40)))
);

/// A query parameter of a list: optional, with `schema` and `description`.
fn query_param(name: &str, schema: impl Into<RefOr<Schema>>, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

fn integer(format: KnownFormat) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(format)))
        .into()
}

/// `page` and `limit` of every paged list (the store skips at most what the databases take, so a
/// page far past the end is empty).
pub struct PageParams;

impl PageParams {
    fn params() -> Vec<Parameter> {
        vec![
            query_param(
                "page",
                integer(KnownFormat::Int64),
                "1-based; default 1, and below 1 reads as 1",
            ),
            query_param(
                "limit",
                integer(KnownFormat::Int64),
                "default 20, and 0 or below reads as the default (0 = 20 a page, for clients that always send limit); at most 1000",
            ),
        ]
    }
}

impl IntoParams for PageParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        Self::params()
    }
}

/// The operator's `merchant_id` on the payment lookups (service::lookup::Scope).
pub struct OperatorMerchant;

impl IntoParams for OperatorMerchant {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![query_param(
            "merchant_id",
            integer(KnownFormat::Int64),
            "openport's operator token only (a merchant's token is never read for it): the merchant (`id` of `GET /admin/merchants`) whose payments are searched. Required with a merchant_uid, which names a payment only within its merchant (else HTTP 400); elsewhere optional, every merchant's payments without it. The operator's answers name each payment's `merchant_id`",
        )]
    }
}

/// The filter and paging of a customer's schedules (two routes list them).
pub struct CustomerSchedules;

impl IntoParams for CustomerSchedules {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut params = vec![
            query_param(
                "from",
                integer(KnownFormat::Int64),
                "Unix seconds, inclusive. Optional here (iamport's OpenAPI marks it required): without it the list is not bounded below",
            ),
            query_param(
                "to",
                integer(KnownFormat::Int64),
                "Unix seconds, exclusive. Optional here (iamport's OpenAPI marks it required); given with `from`, after it and at most 3 months after it",
            ),
            query_param(
                "schedule-status",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(crate::domain::schedule::ScheduleStatus::WORDS)),
                CUSTOMER_SCHEDULE_STATUS,
            ),
        ];
        params.extend(PageParams::params());
        params
    }
}

/// What a customer's schedule-status filter takes (iamport's OpenAPI enum).
const CUSTOMER_SCHEDULE_STATUS: &str = "`scheduled` (includes one being charged now), `executed` or `revoked`; `undefined` (an unset script variable) is no filter, any other value HTTP 400. Also read as `schedule_status`";

/// Every handler reads a query parameter through `extract::query_value(s)`, which takes an empty
/// value (`?sorting=`, `?page=`) as absent; `allowEmptyValue` says so for each optional one, so
/// that a client generated from the document may send it and a checker does not take the default
/// for a refusal the handler should have made.
pub struct EmptyQueryValues;

impl Modify for EmptyQueryValues {
    fn modify(&self, doc: &mut OpenApi) {
        for op in operations_mut(doc) {
            for param in op.parameters.iter_mut().flatten() {
                // A required one given empty is missing (HTTP 400), as documented.
                if param.parameter_in == ParameterIn::Query && param.required != Required::True {
                    // utoipa 5 has no field for OpenAPI's `allowEmptyValue`; its extensions map
                    // is written flat beside the parameter's fields, so the key goes in as
                    // OpenAPI names it (not through `Extensions::add`, which adds `x-`).
                    param
                        .extensions
                        .get_or_insert_with(Default::default)
                        .insert("allowEmptyValue".into(), serde_json::Value::Bool(true));
                }
            }
        }
    }
}

/// Every operation of the document, whatever its method.
fn operations_mut(doc: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

/// What `extract::refuse_control_characters` and `Body` do to every request, written into the
/// document once instead of at each field: a string a request carries (path or query parameter,
/// body value) is [`NO_CONTROL`] (`\S`, non-blank, becomes [`NON_BLANK`]; other patterns are
/// anchored alternatives of printable text already), an object's field names are too, and every
/// operation can answer HTTP 400 for a control character.
pub struct ControlCharacters;

impl Modify for ControlCharacters {
    fn modify(&self, doc: &mut OpenApi) {
        let mut named = Vec::new();
        for op in operations_mut(doc) {
            for param in op.parameters.iter_mut().flatten() {
                if let Some(schema) = &mut param.schema {
                    refuse_controls(schema, &mut named);
                }
            }
            let bodies = op
                .request_body
                .iter_mut()
                .flat_map(|b| b.content.values_mut());
            for schema in bodies.filter_map(|c| c.schema.as_mut()) {
                refuse_controls(schema, &mut named);
            }
            answers_control_refusal(op);
        }
        // The components a request names, and those they name in turn; each once.
        let Some(components) = &mut doc.components else {
            return;
        };
        let mut done = Vec::new();
        while let Some(name) = named.pop() {
            if done.contains(&name) {
                continue;
            }
            if let Some(schema) = components.schemas.get_mut(&name) {
                refuse_controls(schema, &mut named);
            }
            done.push(name);
        }
    }
}

fn answers_control_refusal(op: &mut Operation) {
    op.responses
        .responses
        .entry("400".into())
        .or_insert_with(|| {
            error_response(
            "a control character (U+0000 to U+001F but tab, LF and CR) in the path, the query or \
             the body",
        )
        });
}

/// Applies [`ControlCharacters`]' rules to a request schema, collecting the components it names.
fn refuse_controls(schema: &mut RefOr<Schema>, named: &mut Vec<String>) {
    let schema = match schema {
        RefOr::Ref(r) => {
            if let Some(name) = r.ref_location.strip_prefix("#/components/schemas/") {
                named.push(name.to_string());
            }
            return;
        }
        RefOr::T(schema) => schema,
    };
    match schema {
        Schema::Object(o) => {
            let takes = |t: Type| match &o.schema_type {
                SchemaType::Type(only) => *only == t,
                SchemaType::Array(types) => types.contains(&t),
                SchemaType::AnyValue => true,
            };
            if takes(Type::String) && o.enum_values.is_none() {
                match o.pattern.as_deref() {
                    None => o.pattern = Some(NO_CONTROL.into()),
                    Some(r"\S") => o.pattern = Some(NON_BLANK.into()),
                    Some(_) => {}
                }
            }
            if takes(Type::Object) {
                o.property_names = Some(Box::new(string().pattern(Some(NO_CONTROL)).into()));
                if o.additional_properties.is_none() {
                    o.additional_properties =
                        Some(Box::new(Ref::from_schema_name(PlainJson::name()).into()));
                }
            }
            for property in o.properties.values_mut() {
                refuse_controls(property, named);
            }
            if let Some(AdditionalProperties::RefOr(extra)) = o.additional_properties.as_deref_mut()
            {
                refuse_controls(extra, named);
            }
        }
        Schema::Array(a) => {
            if let ArrayItems::RefOrSchema(items) = &mut a.items {
                refuse_controls(items, named);
            }
        }
        Schema::OneOf(s) => s.items.iter_mut().for_each(|i| refuse_controls(i, named)),
        Schema::AllOf(s) => s.items.iter_mut().for_each(|i| refuse_controls(i, named)),
        Schema::AnyOf(s) => s.items.iter_mut().for_each(|i| refuse_controls(i, named)),
        _ => {}
    }
}
