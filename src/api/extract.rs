//! Request edges: JSON-or-form bodies, every token transport, lenient scalar types.
//!
//! Deserialization errors never echo the input (it may hold card data): the caller gets a clear
//! message that names the problem, not the value.
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::app::AppState;
use crate::service::auth::Principal;
use crate::store::entity::merchant;

/// A POST/PUT body, JSON or `application/x-www-form-urlencoded` (spec/iamport-v1.md §4).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_request("요청 본문을 읽을 수 없습니다."))?;
        if form {
            return form_json(&bytes)
                .and_then(|v| serde_json::from_value(v).ok())
                .map(Body)
                .ok_or_else(|| ApiError::bad_request("요청 파라미터(form)를 해석할 수 없습니다."));
        }
        let raw: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(raw).map(Body).map_err(|e| {
            ApiError::bad_request(format!(
                "요청 본문(JSON)을 해석할 수 없습니다. (line {}, column {}: {})",
                e.line(),
                e.column(),
                match e.classify() {
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof =>
                        "문법 오류",
                    _ => "필드 형식 오류",
                }
            ))
        })
    }
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
    for (key, value) in form_urlencoded::parse(body) {
        let path: Vec<&str> = match key.split_once('[') {
            None => vec![&key],
            Some((name, rest)) => std::iter::once(name)
                .chain(rest.strip_suffix(']')?.split("]["))
                .collect(),
        };
        if path.len() > FORM_DEPTH || path[0].is_empty() {
            return None;
        }
        insert_form_value(&mut root, &path, value.into_owned())?;
    }
    Some(serde_json::Value::Object(
        root.into_iter()
            .map(|(k, v)| (k, numbered_to_list(v)))
            .collect(),
    ))
}

fn insert_form_value(
    map: &mut serde_json::Map<String, serde_json::Value>,
    path: &[&str],
    value: String,
) -> Option<()> {
    use serde_json::Value;
    let (head, rest) = path.split_first()?;
    // `a[]` appends: the next number of the list being built.
    let key = match *head {
        "" => map.len().to_string(),
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

/// The access token from `Authorization: Bearer t`, `Authorization: t`, `X-ImpTokenHeader: t`
/// or `?_token=t` — in that order of precedence (spec/iamport-v1.md §1).
pub fn token_of(parts: &Parts) -> Option<String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    if let Some(v) = header(AUTHORIZATION.as_str()) {
        let t = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v);
        return Some(t.trim().to_string());
    }
    if let Some(v) = header("x-imptokenheader") {
        return Some(v.to_string());
    }
    parts.uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "_token")
            .map(|(_, v)| v.into_owned())
    })
}

/// Any authenticated caller: a merchant or the operator.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = token_of(parts);
        Ok(Self(state.gateway.authenticate(token.as_deref()).await?))
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

/// The operator token only.
pub struct AdminCaller;

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await?.0 {
            Principal::Admin => Ok(Self),
            Principal::Merchant(_) => Err(ApiError::unauthorized()),
        }
    }
}

/// Query-string pairs, keeping repeats and `name[]` / `name[0]` spellings (multi-get).
pub fn query_values(query: Option<&str>, name: &str) -> Vec<String> {
    let Some(q) = query else { return vec![] };
    form_urlencoded::parse(q.as_bytes())
        .filter(|(k, _)| {
            k == name
                || k.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('[') && rest.ends_with(']'))
        })
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

pub fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query_values(query, name).into_iter().next()
}

/// Lenient field deserializers: iamport clients send numbers as strings and vice versa.
pub mod de {
    use serde::de::{self, Deserializer, Visitor};
    use serde::Deserialize;
    use std::fmt;

    /// Any scalar as a string; null as None.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let v = Option::<serde_json::Value>::deserialize(d)?;
        Ok(match v {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
            Some(_) => return Err(de::Error::custom("문자열이어야 합니다")),
        })
    }

    /// An integer given as a number or a numeric string. Fractions are refused: money is integral.
    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
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
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(Some(v as i64))
                } else {
                    Err(E::custom("not an integer"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let t = v.trim();
                if t.is_empty() {
                    return Ok(None);
                }
                if let Ok(n) = t.parse::<i64>() {
                    return Ok(Some(n));
                }
                match t.parse::<f64>() {
                    Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                    _ => Err(E::custom("not an integer")),
                }
            }
        }
        d.deserialize_option(V)
    }

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Ok(match Option::<serde_json::Value>::deserialize(d)? {
            Some(serde_json::Value::Bool(b)) => Some(b),
            Some(serde_json::Value::String(s)) => {
                Some(matches!(s.as_str(), "true" | "1" | "Y" | "y"))
            }
            Some(serde_json::Value::Number(n)) => Some(n.as_i64() == Some(1)),
            _ => None,
        })
    }

    /// iamport stores custom_data as a JSON string: a string is kept, anything else is encoded.
    pub fn opt_json_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Option::<serde_json::Value>::deserialize(d)? {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(v) => Some(v.to_string()),
        })
    }

    /// A string or an array of strings; None only when the field is absent or null, so that an
    /// empty list given on purpose is not mistaken for "no filter".
    pub fn opt_string_list<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<String>>, D::Error> {
        Ok(match Option::<serde_json::Value>::deserialize(d)? {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => Some(vec![]),
            Some(serde_json::Value::String(s)) => Some(vec![s]),
            Some(serde_json::Value::Array(a)) => Some(
                a.into_iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .filter(|s| !s.trim().is_empty())
                    .collect(),
            ),
            Some(_) => return Err(de::Error::custom("문자열 또는 문자열 배열이어야 합니다")),
        })
    }

    /// A string or an array of strings.
    pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Option::<serde_json::Value>::deserialize(d)? {
            Some(serde_json::Value::String(s)) if !s.is_empty() => vec![s],
            Some(serde_json::Value::Array(a)) => a
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::form_json;
    use serde_json::json;

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
    fn malformed_or_conflicting_form_keys_are_refused() {
        assert_eq!(form_json(b"a[b=1"), None);
        assert_eq!(form_json(b"a=1&a[b]=2"), None);
        assert_eq!(form_json(b"[x]=1"), None);
        assert_eq!(form_json(b"a[1][2][3][4][5]=1"), None);
        assert_eq!(form_json(b""), Some(json!({})));
    }
}
