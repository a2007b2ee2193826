//! Request edges: JSON-or-form bodies, every token transport, lenient scalar types.
//!
//! Deserialization errors never echo the input (it may hold card data): the caller gets a clear
//! message that names the problem, not the value.
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use crate::app::AppState;
use crate::domain::text::{control_character_message, is_refused_control};
use crate::service::auth::Principal;
use crate::store::entity::merchant;

/// Path parameters, refused with iamport's envelope: axum's own rejection (a segment that is not
/// UTF-8 once percent-decoded, `/payments/%FF`) is plain text, which a client parsing every error
/// body as JSON cannot read.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|_| ApiError::bad_request("요청 경로(URL)의 값을 해석할 수 없습니다."))
    }
}

/// A POST/PUT body, JSON or `application/x-www-form-urlencoded` (spec/iamport-v1.md §4).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let form = is_form(req.headers());
        let query = req.uri().query().map(str::to_owned);
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_request("요청 본문을 읽을 수 없습니다."))?;
        // No body at all: the parameters are read from the query string, as a form (npm
        // `iamport`'s `updatePrepare` sends `PUT /payments/prepare?merchant_uid=…&amount=…` with
        // nothing in the body, as that client does for every method but POST; iamport's server
        // reads them). A body, even `{}`, is the request's whole: the query never adds to it.
        let (form, bytes) = match query {
            Some(query) if bytes.iter().all(u8::is_ascii_whitespace) && !query.is_empty() => {
                (true, Bytes::from(query))
            }
            _ => (form, bytes),
        };
        if form {
            if json_sent_as_form(&bytes) {
                return Err(ApiError::bad_request(JSON_SENT_AS_FORM));
            }
            let fields = form_json(&bytes).ok_or_else(|| {
                ApiError::bad_request("요청 파라미터(form)를 해석할 수 없습니다.")
            })?;
            refuse_controls_in(&fields)?;
            return serde_path_to_error::deserialize(&fields)
                .map(Body)
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "요청 파라미터(form)의 {}값 형식이 올바르지 않습니다.",
                        field_of::<T>(e.path(), &e.inner().to_string(), Some(&fields))
                    ))
                });
        }
        // A UTF-8 byte order mark before the JSON text is what .NET's UTF-8 encoder and files
        // written by PowerShell start with; RFC 8259 §8.1 lets a parser ignore it, as Express's
        // body-parser does. serde_json reads it as a syntax error at column 1.
        let json = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
        let raw: &[u8] = if json.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            json
        };
        // Every iamport body is an object. serde fills a struct from a JSON array by position
        // (`[1, 2]` would be read as the first two fields, `imp_uid` "1", `merchant_uid` "2"),
        // and refused a bare value (`null`, `1`, `"x"`, `true`) as "the body's value", in words
        // that named the body twice. Text that is no JSON at all is told as a syntax error below.
        match raw.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => {}
            Some(b'[') => return Err(ApiError::bad_request(NOT_AN_OBJECT)),
            _ if serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_ok() => {
                return Err(ApiError::bad_request(NOT_AN_OBJECT));
            }
            _ => {}
        }
        // JSON strings carry control characters only as escapes (`\u0000`, `\b`, `\f`): a body
        // without a backslash has none to look for.
        if raw.contains(&b'\\') {
            if let Ok(fields) = serde_json::from_slice::<Value>(raw) {
                refuse_controls_in(&fields)?;
            }
        }
        let mut fields = serde_json::Deserializer::from_slice(raw);
        let body = serde_path_to_error::deserialize(&mut fields).map_err(|e| {
            if let Some(name) = duplicate_field(&e.inner().to_string()) {
                return ApiError::bad_request(format!(
                    "요청 본문(JSON)에 `{}` 필드가 두 번 있습니다. 한 번만 보내 주세요. (line {}, column {})",
                    nested_name(e.path(), name),
                    e.inner().line(),
                    e.inner().column()
                ));
            }
            let field = || {
                field_of::<T>(
                    e.path(),
                    &e.inner().to_string(),
                    serde_json::from_slice(raw).ok().as_ref(),
                )
            };
            json_refusal(e.inner(), Some(field))
        })?;
        fields
            .end()
            .map_err(|e| json_refusal(&e, None::<fn() -> String>))?;
        Ok(Body(body))
    }
}

/// The UTF-8 byte order mark (U+FEFF), skipped before a JSON body.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The refusal of a JSON body that is not an object (an array, a bare value).
const NOT_AN_OBJECT: &str = "요청 본문(JSON)은 객체({…})여야 합니다.";

/// The refusal of JSON text sent as a form (see [`json_sent_as_form`]).
const JSON_SENT_AS_FORM: &str = "요청 본문이 JSON이지만 Content-Type이 application/x-www-form-urlencoded(curl -d의 기본값)입니다. JSON 본문은 `Content-Type: application/json` 헤더와 함께 보내 주세요.";

/// Whether a form body is JSON text: `curl -d '{…}'` sends `application/x-www-form-urlencoded`
/// unless told otherwise, and read as a form the JSON was one key (`{"merchant_uid":…}`) with no
/// value, so the answer called a field missing that the merchant could see in the body. The body,
/// or its one key once %-decoded (`curl --data-urlencode`), is a JSON object or array. A form
/// with JSON in a value (`custom_data={…}`) is a form: its key starts with no `{` or `[`.
fn json_sent_as_form(bytes: &[u8]) -> bool {
    let json = |text: &[u8]| {
        let text = text.strip_prefix(UTF8_BOM).unwrap_or(text);
        matches!(
            text.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{' | b'[')
        ) && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
    };
    json(bytes)
        || matches!(form_pairs(bytes).as_deref(), Some([(key, value)]) if value.is_empty() && json(key.as_bytes()))
}

/// serde's own message may quote the value (a card number, say): only where it is goes back,
/// with which field for a value of the wrong shape. Valid JSON nested past serde_json's limit
/// (127 levels) is told as such, not as a syntax error its sender would look for in vain.
fn json_refusal(e: &serde_json::Error, field: Option<impl FnOnce() -> String>) -> ApiError {
    let at = format!("line {}, column {}", e.line(), e.column());
    ApiError::bad_request(match (e.classify(), field) {
        (serde_json::error::Category::Data, Some(field)) => format!(
            "요청 본문(JSON)의 {}값 형식이 올바르지 않습니다. ({at})",
            field()
        ),
        _ if e.to_string().starts_with("recursion limit exceeded") => {
            format!("요청 본문(JSON)이 너무 깊이 중첩되어 있습니다 (최대 {JSON_DEPTH}단계). ({at})")
        }
        _ => format!("요청 본문(JSON)을 해석할 수 없습니다. ({at}: 문법 오류)"),
    })
}

/// The deepest nesting serde_json reads (past it: `recursion limit exceeded`), told to the sender.
const JSON_DEPTH: usize = 127;

/// The most top-level fields [`field_of`] leaves out one at a time (iamport's bodies have a few
/// dozen); beyond it the refusal names no field.
const FIELDS_SEARCHED_MAX: usize = 64;

/// The field a refusal names, as a merchant wrote it (`amount`, `schedules[0].amount`), or the
/// body itself. serde loses the path inside a `#[serde(flatten)]` struct (the order fields every
/// charge shares): then the body's top-level fields are left out one at a time, and the first
/// whose absence makes the body acceptable is named. Only on a refusal, over a body of at most
/// the size limit. A field given twice is named from serde's message: the parsed body keeps one
/// of its values, so leaving fields out cannot find it. A field comes with the space that follows
/// it in the sentence, the body as nothing ("요청 본문(JSON)의 값"): named, it read "요청
/// 본문(JSON)의 요청 본문 값", the body twice.
fn field_of<T: DeserializeOwned>(
    path: &serde_path_to_error::Path,
    message: &str,
    fields: Option<&Value>,
) -> String {
    let path = path.to_string();
    if !path.is_empty() && path != "." {
        return format!("`{path}` ");
    }
    if let Some(name) = duplicate_field(message) {
        return format!("`{name}` ");
    }
    // Each try parses the whole body again: over many fields (a body of junk keys) that is
    // quadratic work on a runtime worker, for the wording of a refusal only.
    let culprit = fields
        .and_then(Value::as_object)
        .filter(|all| all.len() <= FIELDS_SEARCHED_MAX)
        .and_then(|all| {
            all.keys().find(|key| {
                let mut rest = all.clone();
                rest.remove(key.as_str());
                serde_json::from_value::<T>(Value::Object(rest)).is_ok()
            })
        });
    match culprit {
        Some(key) => format!("`{key}` "),
        None => String::new(),
    }
}

/// The field serde names in its refusal of a key given twice (`duplicate field `amount``).
fn duplicate_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.split('`').next())
}

/// `name` inside the object at `path` (`schedules[0].amount`), as a merchant would look for it:
/// serde's path ends at the object holding the key given twice, not at the key.
fn nested_name(path: &serde_path_to_error::Path, name: &str) -> String {
    match path.to_string().as_str() {
        "" | "." => name.to_string(),
        at => format!("{at}.{name}"),
    }
}

/// The answer to a request value holding a refused control character ([`is_refused_control`]),
/// naming where it is but never the value.
fn control_refused(place: &str) -> ApiError {
    ApiError::bad_request(control_character_message(place))
}

/// Refuses a body whose keys or string values hold a refused control character, naming the field.
fn refuse_controls_in(fields: &Value) -> Result<(), ApiError> {
    match field_with(fields, "", is_refused_control) {
        Some(field) => Err(control_refused(&field)),
        None => Ok(()),
    }
}

/// The first field (`a`, `a.b`, `a[0]`) whose key or string value holds a character `bad` picks.
fn field_with(v: &Value, at: &str, bad: fn(char) -> bool) -> Option<String> {
    let holds = |s: &str| s.chars().any(bad);
    match v {
        Value::String(s) if holds(s) => Some(if at.is_empty() {
            "요청 본문".into()
        } else {
            at.into()
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| field_with(item, &format!("{at}[{i}]"), bad)),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if holds(key) {
                return Some("필드 이름".into());
            }
            let at = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            field_with(item, &at, bad)
        }),
        _ => None,
    }
}

/// Middleware on every route, before any handler: refuses (HTTP 400, iamport's envelope) a request
/// whose path or query, once percent-decoded, holds a refused control character, or whose body
/// holds U+0000 in a form or JSON value. Handlers reading a body themselves (the checkout's, KCP's
/// notifications) are covered too; for bodies only U+0000 is refused here, because KCP posts
/// escrow's `good_info` back with its US/RS separators. [`Body`] refuses the other controls in
/// the API's bodies.
pub async fn refuse_control_characters(req: Request, next: Next) -> Response {
    let bad = |s: &str| s.chars().any(is_refused_control);
    let path_bad = percent_encoding::percent_decode_str(req.uri().path())
        .any(|b| is_refused_control(char::from(b)));
    if path_bad {
        return control_refused("요청 경로").into_response();
    }
    if let Some(query) = req.uri().query() {
        if let Some((key, _)) =
            form_urlencoded::parse(query.as_bytes()).find(|(k, v)| bad(k) || bad(v))
        {
            let place = if bad(&key) {
                "쿼리 파라미터 이름".into()
            } else {
                key.into_owned()
            };
            return control_refused(&place).into_response();
        }
    }
    // A lookup has no body to read (nor to rebuild the request around).
    if axum::body::HttpBody::size_hint(req.body()).exact() == Some(0) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    // The body arrives already read, within its size limit and deadline (app/request_body.rs,
    // which answers 413 and 408 itself); should reading the buffered bytes fail anyway, the client
    // still gets the iamport envelope, never axum's plain-text rejection.
    let Ok(bytes) = Bytes::from_request(Request::new(body), &()).await else {
        return ApiError::bad_request("요청 본문을 읽을 수 없습니다.").into_response();
    };
    if let Some(place) = field_with_nul(&bytes, is_form(&parts.headers)) {
        return control_refused(&place).into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Where a body holds U+0000: a raw zero byte, or one encoded as the body's type encodes it (a
/// form's `%00`, JSON's `\u0000`). The encoded spelling is decoded before it counts, so text that
/// only spells one (`%2500`, an escaped backslash before `u0000`) is not a NUL.
fn field_with_nul(bytes: &[u8], form: bool) -> Option<String> {
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let nul = |c: char| c == '\0';
    if bytes.contains(&0) {
        return Some("요청 본문".into());
    }
    if form {
        let (key, _) =
            form_urlencoded::parse(bytes).find(|(k, v)| k.contains(nul) || v.contains(nul))?;
        return Some(if key.contains(nul) {
            "필드 이름".into()
        } else {
            key.into_owned()
        });
    }
    if !has(b"\\u0000") {
        return None;
    }
    let fields = serde_json::from_slice::<Value>(bytes).ok()?;
    field_with(&fields, "", nul)
}

/// Whether a body is a form; anything else is read as JSON.
fn is_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// Deepest key a form may use (`schedules[0][merchant_uid]` is 3).
const FORM_DEPTH: usize = 5;

/// A form body as the JSON its fields would be, with the bracket spellings iamport's clients
/// send (PHP's and qs's): `a[]=1&a[]=2` and a repeated `a` are lists, `a[0][b]=x` nests.
/// `serde_urlencoded` knows only flat keys: it dropped `merchant_uid[]` silently, which turned
/// an unschedule of one payment into an unschedule of all. None when a key is malformed, nests
/// too deep, or is used both as a value and as a container.
fn form_json(body: &[u8]) -> Option<serde_json::Value> {
    let mut root = serde_json::Map::new();
    for (key, value) in form_pairs(body)? {
        let path: Vec<&str> = match key.split_once('[') {
            None => vec![&key],
            Some((name, rest)) => std::iter::once(name)
                .chain(rest.strip_suffix(']')?.split("]["))
                .collect(),
        };
        if path.len() > FORM_DEPTH || path[0].is_empty() {
            return None;
        }
        insert_form_value(&mut root, &path, value)?;
    }
    Some(serde_json::Value::Object(
        root.into_iter()
            .map(|(k, v)| (k, numbered_to_list(v)))
            .collect(),
    ))
}

/// The decoded `key=value` pairs of a form, or None when one is not UTF-8 once decoded.
/// `form_urlencoded::parse` would put U+FFFD in its place, and that text would be stored and sent
/// to KCP as if the client had sent it (a JSON body with such bytes is refused).
fn form_pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    let decode = |part: &[u8]| {
        let spaced: Vec<u8> = part
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        String::from_utf8(percent_encoding::percent_decode(&spaced).collect()).ok()
    };
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            // PHP, whose parser iamport's clients were written against, drops the spaces a key
            // starts with: go-iamport builds its forms from `protojson` text, which puts a space
            // after each comma on some builds (`customer_uid=c& merchant_uid=m& amount=1000`).
            let key = decode(key)?;
            Some((key.trim_start_matches(' ').to_string(), decode(value)?))
        })
        .collect()
}

fn insert_form_value(
    map: &mut serde_json::Map<String, serde_json::Value>,
    path: &[&str],
    value: String,
) -> Option<()> {
    use serde_json::Value;
    let (head, rest) = path.split_first()?;
    // `a[]` appends: the next number of the list being built. `a[][f]` (Rails, HTTParty) fills
    // the last item until it already has an `f`, then starts the next one, so
    // `a[][x]=1&a[][y]=2&a[][x]=3` is `[{x:1, y:2}, {x:3}]`.
    let key = match *head {
        "" => {
            let last = map.len().checked_sub(1).map(|i| i.to_string());
            let fills_last = rest.first().is_some_and(|field| {
                last.as_ref()
                    .and_then(|l| map.get(l))
                    .is_some_and(|item| item.as_object().is_some_and(|o| !o.contains_key(*field)))
            });
            match last {
                Some(last) if fills_last => last,
                _ => map.len().to_string(),
            }
        }
        name => name.to_string(),
    };
    if rest.is_empty() {
        match map.get_mut(&key) {
            None => {
                map.insert(key, Value::String(value));
            }
            Some(Value::String(first)) => {
                let first = std::mem::take(first);
                map.insert(key, Value::Array(vec![first.into(), value.into()]));
            }
            Some(Value::Array(list)) => list.push(value.into()),
            Some(_) => return None,
        }
        return Some(());
    }
    match map
        .entry(key)
        .or_insert_with(|| Value::Object(serde_json::Map::new()))
    {
        Value::Object(child) => insert_form_value(child, rest, value),
        _ => None,
    }
}

/// Objects built from numbered keys (`a[0]`, `a[]`) become lists, in the order of their numbers.
fn numbered_to_list(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) if !map.is_empty() && map.keys().all(|k| k.parse::<u64>().is_ok()) => {
            let mut items: Vec<(u64, Value)> = map
                .into_iter()
                .map(|(k, v)| (k.parse().unwrap_or_default(), numbered_to_list(v)))
                .collect();
            items.sort_by_key(|(n, _)| *n);
            Value::Array(items.into_iter().map(|(_, v)| v).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, numbered_to_list(v)))
                .collect(),
        ),
        other => other,
    }
}

/// A presented access token and whether it came in the query string.
pub struct PresentedToken {
    pub value: String,
    /// `?_token=`: the URL, token included, ends up in access logs and browser histories.
    pub in_query: bool,
}

/// The access token from `Authorization: Bearer t`, `Authorization: t`, `X-ImpTokenHeader: t`
/// or `?_token=t` — in that order of precedence (spec/iamport-v1.md §1).
pub fn token_of(parts: &Parts) -> Option<PresentedToken> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let in_header = |value: String| PresentedToken {
        value,
        in_query: false,
    };
    if let Some(v) = header(AUTHORIZATION.as_str()) {
        // The scheme is case-insensitive and followed by white space (RFC 9110 §11.1); a token
        // has none, so anything else is a bare token, which iamport takes too.
        let t = match v.split_once([' ', '\t']) {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token,
            _ => v,
        };
        return Some(in_header(t.trim().to_string()));
    }
    if let Some(v) = header("x-imptokenheader") {
        return Some(in_header(v.to_string()));
    }
    parts.uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "_token")
            .map(|(_, v)| PresentedToken {
                value: v.into_owned(),
                in_query: true,
            })
    })
}

/// Any authenticated caller: a merchant or the operator.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = token_of(parts);
        let principal = state
            .gateway
            .authenticate(token.as_ref().map(|t| t.value.as_str()))
            .await?;
        // Merchants keep all four transports (iamport clients use `_token`); the operator token,
        // which reads every merchant's data, is never taken from a URL (docs/security.md).
        if matches!(principal, Principal::Admin) && token.is_some_and(|t| t.in_query) {
            return Err(ApiError::unauthorized());
        }
        Ok(Self(principal))
    }
}

/// A merchant's token (operator tokens cannot pay or cancel on a merchant's behalf).
pub struct MerchantCaller(pub std::sync::Arc<merchant::Model>);

impl FromRequestParts<AppState> for MerchantCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await?.0 {
            Principal::Merchant(m) => Ok(Self(m)),
            Principal::Admin => Err(ApiError::unauthorized()),
        }
    }
}

/// The answer of every operator call on an instance started without `OPENPORT_ADMIN_TOKEN`.
pub const ADMIN_API_OFF: &str =
    "운영자 API가 꺼져 있습니다: 이 인스턴스는 OPENPORT_ADMIN_TOKEN 없이 시작되었습니다.";

/// The operator token only. An instance without one answers every operator call 401 saying so:
/// a bare `Unauthorized` read as a mistyped token to an operator who never set one (README's
/// first start sets none). The merchant endpoints keep the bare answer.
pub struct AdminCaller;

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.gateway.admin_token.is_none() {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, -1, ADMIN_API_OFF));
        }
        match Caller::from_request_parts(parts, state).await?.0 {
            Principal::Admin => Ok(Self),
            Principal::Merchant(_) => Err(ApiError::unauthorized()),
        }
    }
}

/// The values of a query-string parameter given as `name`, `name[]` or `name[0]` (multi-get),
/// each once, in the order first given: an id asked for twice is answered once, as a database
/// lookup `IN (…)` answers it.
pub fn query_values(query: Option<&str>, name: &str) -> Vec<String> {
    let Some(q) = query else { return vec![] };
    let mut values: Vec<String> = Vec::new();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        let named = k == name
            || k.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('[') && rest.ends_with(']'));
        if named && !v.is_empty() && !values.iter().any(|seen| *seen == v) {
            values.push(v.into_owned());
        }
    }
    values
}

pub fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query_values(query, name).into_iter().next()
}

/// Lenient field deserializers: iamport clients send numbers as strings and vice versa.
pub mod de {
    use serde::de::{self, Deserializer, Visitor};
    use serde::Deserialize;
    use std::fmt;

    /// A string, or an integer as its digits (clients send ids as numbers); null as None. A number
    /// is taken only when it is an integer JSON can carry exactly: `99999999999999999999999` would
    /// become `1e+23`, an id the client never sent. A boolean is refused: `true` is no one's
    /// merchant_uid or name, but the unset variable of a client's bug.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let v = Option::<serde_json::Value>::deserialize(d)?;
        Ok(match v {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Number(n)) if n.is_f64() => {
                return Err(de::Error::custom("문자열이어야 합니다"))
            }
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            Some(_) => return Err(de::Error::custom("문자열이어야 합니다")),
        })
    }

    /// An integer given as a number or a numeric string. Fractions are refused: money is integral.
    /// A blank string is absent (an empty form field, `amount=`).
    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        d.deserialize_option(I64 {
            blank_is_absent: true,
            floor_fraction: false,
        })
    }

    /// A time in Unix seconds (`schedule_at`, `vbank_due`, a delivery's `sent_at`): as [`opt_i64`],
    /// but a finite fraction is floored, as any seconds parser reads it. Clients compute these
    /// from clocks that give fractions (Node's `Date.now() / 1000 + 3600`, Python's
    /// `time.time() + 3600`), and a fraction of a second carries no money and no ambiguity, so
    /// refusing it only lost the whole request. Text, NaN and infinities are still refused, and so
    /// is a number past ±9·10¹⁵ (no second a date can hold); the callers' own range checks (the
    /// year-9999 guard that catches milliseconds) apply to the floored value. Never for money.
    pub fn opt_unix_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        d.deserialize_option(I64 {
            blank_is_absent: true,
            floor_fraction: true,
        })
    }

    /// [`opt_i64`] for a value whose absence does something of its own: a cancel's `amount` (absent:
    /// everything left is refunded) and `checksum` (absent: not compared). A blank string there is
    /// a client's bug (an unset variable), not a request for that, so it is refused.
    pub fn opt_i64_not_blank<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        d.deserialize_option(I64 {
            blank_is_absent: false,
            floor_fraction: false,
        })
    }

    struct I64 {
        blank_is_absent: bool,
        /// Unix seconds ([`opt_unix_secs`]): a finite fraction is floored instead of refused.
        floor_fraction: bool,
    }

    impl I64 {
        /// A number given with a fraction or an exponent: an integer as `i64`, or when allowed
        /// a finite fraction floored; None when refused.
        fn of_f64(&self, v: f64) -> Option<i64> {
            let integral = v.fract() == 0.0 || (self.floor_fraction && v.is_finite());
            (integral && v.abs() < 9.0e15).then(|| v.floor() as i64)
        }
    }

    impl<'de> Visitor<'de> for I64 {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("too large"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            self.of_f64(v)
                .map(Some)
                .ok_or_else(|| E::custom("not an integer"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let t = v.trim();
            if t.is_empty() {
                return if self.blank_is_absent {
                    Ok(None)
                } else {
                    Err(E::custom("blank"))
                };
            }
            if let Ok(n) = t.parse::<i64>() {
                return Ok(Some(n));
            }
            decimal_text(t, self.floor_fraction)
                .map(Some)
                .ok_or_else(|| E::custom("not an integer"))
        }
    }

    /// Text such as `1000.00`, `1e3` or `1.5e3` read exactly, digit by digit: an integer, or when
    /// `floor` a fraction floored; None for a fraction otherwise, for text that is no decimal
    /// number, and past ±9·10¹⁵. Never through `f64`, whose rounding made `"999.99999999999999999"`
    /// a whole 1000 (and `"49999.99999999999999"` 50,000 with instalments allowed) where a
    /// fraction is to be refused, not rounded (found by a model-based review).
    fn decimal_text(t: &str, floor: bool) -> Option<i64> {
        let (negative, t) = match t.as_bytes().first()? {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let (mantissa, exponent) = match t.find(['e', 'E']) {
            Some(at) => (&t[..at], t[at + 1..].parse::<i32>().ok()?),
            None => (t, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = || whole.bytes().chain(fraction.bytes());
        if whole.len() + fraction.len() == 0 || !digits().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // The digits, then where the point falls among them.
        let digits: Vec<u8> = digits().map(|b| b - b'0').collect();
        let point = i64::try_from(whole.len()).ok()? + i64::from(exponent);
        let mut value: i64 = 0;
        let mut dropped = false;
        for (i, &d) in digits.iter().enumerate() {
            if (i as i64) < point {
                value = value.checked_mul(10)?.checked_add(i64::from(d))?;
            } else {
                dropped |= d != 0;
            }
        }
        for _ in 0..(point - digits.len() as i64).max(0) {
            if value != 0 {
                value = value.checked_mul(10)?;
            }
            if value >= 9_000_000_000_000_000 {
                return None;
            }
        }
        if dropped && !floor {
            return None;
        }
        let value = match (negative, dropped) {
            (true, true) => -value - 1,
            (true, false) => -value,
            (false, _) => value,
        };
        (value.abs() < 9_000_000_000_000_000).then_some(value)
    }

    /// A boolean as JSON or as a form sends it: `true`/`false`, `1`/`0`, and the strings `true`,
    /// `false` (in any case: Python's `str(True)` is `True`), `1`, `0`, `y`, `n`, `yes`, `no`,
    /// `on`, `off`; blank or null is absent. Anything else is refused rather than read as false:
    /// a merchant asking for a webhook in an unexpected spelling is told, not silently ignored.
    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        let refused = || <D::Error as de::Error>::custom("not a boolean (true or false)");
        match Option::<serde_json::Value>::deserialize(d)? {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Bool(b)) => Ok(Some(b)),
            Some(serde_json::Value::String(s)) => bool_text(&s).ok_or_else(refused),
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(1) => Ok(Some(true)),
                Some(0) => Ok(Some(false)),
                _ => Err(refused()),
            },
            Some(_) => Err(refused()),
        }
    }

    /// A boolean written as text, as [`opt_bool`] reads a string and a query parameter is read
    /// (`include_sandbox`): `Some(None)` when blank, None when it is no boolean.
    pub fn bool_text(s: &str) -> Option<Option<bool>> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" => Some(None),
            "true" | "1" | "y" | "yes" | "on" => Some(Some(true)),
            "false" | "0" | "n" | "no" | "off" => Some(Some(false)),
            _ => None,
        }
    }

    /// iamport stores custom_data as a JSON string: a string is kept, anything else is encoded.
    pub fn opt_json_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Option::<serde_json::Value>::deserialize(d)? {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(v) => Some(v.to_string()),
        })
    }

    /// A string or an array of strings (`domain::text::string_list_as_given`) for a field whose
    /// absence does something of its own (unschedule's `merchant_uid`: all of the customer's
    /// schedules). None only when the field is absent or null; an empty array is `Some([])`, a
    /// request made on purpose. A blank string (`""`, `"  "`, a form's `merchant_uid=`) is one
    /// blank item, not an empty list, and blank or null items are kept or refused, never dropped:
    /// a blank is a client's bug (an unset variable, a NULL rendered as text) that names nothing,
    /// so the caller refuses it rather than let it read as "none named", which would be "all" (as
    /// [`opt_i64_not_blank`] for a cancel's amount).
    pub fn opt_string_list<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<String>>, D::Error> {
        Ok(match Option::<serde_json::Value>::deserialize(d)? {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(vec![s]),
            v => Some(crate::domain::text::string_list_as_given(v).map_err(de::Error::custom)?),
        })
    }

    /// A string or an array of strings (`domain::text::string_list`); absent, null or a blank
    /// string, or a list of only null or blank items: none.
    pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        crate::domain::text::string_list(Option::<serde_json::Value>::deserialize(d)?)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::{field_with_nul, form_json, json_refusal, json_sent_as_form, JSON_DEPTH};
    use serde_json::json;

    #[test]
    fn a_form_body_is_json_sent_as_a_form_only_when_it_is_a_whole_json_object_or_array() {
        for json in [
            &br#"{"merchant_uid":"m1","amount":1000}"#[..],
            br#" {"notice_url":"https://shop.test/?a=b&c=d"}"#,
            br#"[{"merchant_uid":"m1"}]"#,
            b"%7B%22merchant_uid%22%3A%22m1%22%7D",
        ] {
            assert!(json_sent_as_form(json), "{}", String::from_utf8_lossy(json));
        }
        for form in [
            &b"merchant_uid=m1&amount=1000"[..],
            br#"custom_data={"a":1}&merchant_uid=m1"#,
            b"{not json",
            b"%7B%22a%22%3A1%7D=x",
            b"",
        ] {
            assert!(
                !json_sent_as_form(form),
                "{}",
                String::from_utf8_lossy(form)
            );
        }
    }

    #[test]
    fn json_nested_past_the_limit_is_told_as_too_deep_not_as_a_syntax_error() {
        let refusal = |text: &str| {
            let e = serde_json::from_str::<serde_json::Value>(text).unwrap_err();
            json_refusal(&e, None::<fn() -> String>).message
        };
        let deep = format!(
            "{}{}",
            "[".repeat(JSON_DEPTH + 1),
            "]".repeat(JSON_DEPTH + 1)
        );
        assert!(
            refusal(&deep).contains("너무 깊이 중첩"),
            "{}",
            refusal(&deep)
        );
        assert!(refusal("{\"a\":").contains("문법 오류"));
        let fits = format!("{}{}", "[".repeat(JSON_DEPTH), "]".repeat(JSON_DEPTH));
        assert!(serde_json::from_str::<serde_json::Value>(&fits).is_ok());
    }

    #[test]
    fn a_nul_counts_once_decoded_and_is_found_by_its_field() {
        assert_eq!(field_with_nul(b"a=1&b=x%00", true), Some("b".into()));
        assert_eq!(
            field_with_nul(br#"{"a":{"b":["\u0000"]}}"#, false),
            Some("a.b[0]".into())
        );
        assert_eq!(field_with_nul(b"a\0b", false), Some("요청 본문".into()));
        // Text that only spells a NUL: an encoded percent sign, an escaped backslash, a form's
        // encoding inside JSON.
        assert_eq!(field_with_nul(b"a=%2500", true), None);
        assert_eq!(field_with_nul(br#"{"a":"\\u0000"}"#, false), None);
        assert_eq!(
            field_with_nul(br#"{"url":"https://shop.test/?q=%00"}"#, false),
            None
        );
    }

    #[test]
    fn bracketed_and_repeated_form_keys_become_lists_and_nest() {
        let body = b"customer_uid=c&merchant_uid%5B%5D=m1&merchant_uid[]=m2\
            &schedules[1][amount]=2000&schedules[0][merchant_uid]=s0&schedules[0][amount]=1000\
            &notice_url=a&notice_url=b";
        assert_eq!(
            form_json(body),
            Some(json!({
                "customer_uid": "c",
                "merchant_uid": ["m1", "m2"],
                "schedules": [{"merchant_uid": "s0", "amount": "1000"}, {"amount": "2000"}],
                "notice_url": ["a", "b"],
            }))
        );
    }

    #[test]
    fn rails_style_list_items_fill_the_last_item_until_a_field_repeats() {
        let body =
            b"customer_uid=c&schedules[][merchant_uid]=m1&schedules[][schedule_at]=1900000000\
            &schedules[][amount]=1000&schedules[][merchant_uid]=m2&schedules[][amount]=2000";
        assert_eq!(
            form_json(body),
            Some(json!({
                "customer_uid": "c",
                "schedules": [
                    {"merchant_uid": "m1", "schedule_at": "1900000000", "amount": "1000"},
                    {"merchant_uid": "m2", "amount": "2000"},
                ],
            }))
        );
    }

    #[test]
    fn malformed_or_conflicting_form_keys_are_refused() {
        assert_eq!(form_json(b"a[b=1"), None);
        assert_eq!(form_json(b"a=1&a[b]=2"), None);
        assert_eq!(form_json(b"[x]=1"), None);
        assert_eq!(form_json(b"a[1][2][3][4][5]=1"), None);
        assert_eq!(form_json(b""), Some(json!({})));
    }

    #[test]
    fn spaces_a_form_key_starts_with_are_dropped_as_php_drops_them_and_values_stay_as_sent() {
        assert_eq!(
            form_json(b"customer_uid=c& merchant_uid=m&%20%20amount=1000& name= a b "),
            Some(
                json!({"customer_uid": "c", "merchant_uid": "m", "amount": "1000", "name": " a b "})
            )
        );
        assert_eq!(form_json(b" =1"), None, "a key of spaces alone is no key");
    }

    #[test]
    fn a_form_value_that_is_not_utf8_once_decoded_is_refused_not_replaced() {
        assert_eq!(form_json(b"merchant_uid=x%FF%FE&amount=1000"), None);
        assert_eq!(form_json(b"name=%C3%28"), None);
        assert_eq!(form_json(b"%FF=1"), None);
        assert_eq!(
            form_json("name=%EC%83%81%ED%92%88+A&x&y=".as_bytes()),
            Some(json!({"name": "상품 A", "x": "", "y": ""}))
        );
    }

    #[derive(serde::Deserialize, Debug)]
    struct Read {
        #[serde(default, deserialize_with = "super::de::opt_unix_secs")]
        at: Option<i64>,
        #[serde(default, deserialize_with = "super::de::opt_i64")]
        amount: Option<i64>,
    }

    fn read(v: serde_json::Value) -> Option<Read> {
        serde_json::from_value(v).ok()
    }

    #[test]
    fn unix_seconds_with_a_fraction_are_floored_while_money_with_one_is_refused() {
        for (sent, floored) in [
            (json!(1_900_000_000.5), 1_900_000_000),
            (json!(1_900_000_000.999), 1_900_000_000),
            (json!("1900000000.25"), 1_900_000_000),
            (json!(" 1900000000.0 "), 1_900_000_000),
            (json!(1_900_000_000), 1_900_000_000),
            (json!("1900000000"), 1_900_000_000),
            (json!(-0.5), -1),
        ] {
            assert_eq!(
                read(json!({ "at": sent })).unwrap().at,
                Some(floored),
                "{sent}"
            );
        }
        // Milliseconds with a fraction stay milliseconds, for the year-9999 guard to refuse.
        assert_eq!(
            read(json!({"at": 1_900_000_000_123.5})).unwrap().at,
            Some(1_900_000_000_123)
        );
        for absent in [json!(null), json!(""), json!("  ")] {
            assert_eq!(read(json!({ "at": absent })).unwrap().at, None);
        }
        for refused in [
            json!("NaN"),
            json!("inf"),
            json!("-infinity"),
            json!("soon"),
            json!(9.5e15),
            json!("1e300"),
            json!(true),
            json!([1]),
        ] {
            assert!(read(json!({ "at": refused })).is_none(), "{refused}");
        }
        for fraction in [json!(1000.5), json!("1000.5"), json!(0.1)] {
            assert!(read(json!({ "amount": fraction })).is_none(), "{fraction}");
        }
        assert_eq!(read(json!({"amount": 1000.0})).unwrap().amount, Some(1000));
    }

    #[test]
    fn money_as_text_is_read_digit_by_digit_so_a_tiny_fraction_is_refused_not_rounded() {
        for (sent, amount) in [
            ("1000.00", 1000),
            ("1e3", 1000),
            ("1.5E3", 1500),
            ("+1000", 1000),
            ("0001000", 1000),
            ("-1000", -1000),
            ("1000e0", 1000),
            ("123400e-2", 1234),
        ] {
            assert_eq!(
                read(json!({ "amount": sent })).unwrap().amount,
                Some(amount),
                "{sent}"
            );
        }
        for refused in [
            "12345e-2",
            "999.99999999999999999",
            "49999.99999999999999",
            "999999999998.99999",
            "99.99999999999999999",
            "1e-1",
            ".",
            "e3",
            "1e",
            "1.2.3",
            "10 00",
            "1e20",
            "9e15",
            "0x10",
        ] {
            assert!(read(json!({ "amount": refused })).is_none(), "{refused}");
        }
        // Seconds as text are floored exactly too.
        assert_eq!(
            read(json!({"at": "1900000000.99999999999999999"}))
                .unwrap()
                .at,
            Some(1_900_000_000)
        );
        assert_eq!(read(json!({"at": "-0.5"})).unwrap().at, Some(-1));
        assert_eq!(read(json!({"at": "0e5"})).unwrap().at, Some(0));
    }
}
