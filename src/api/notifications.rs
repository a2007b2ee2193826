//! `POST /kcp/notify`: KCP's common notification (spec/kcp.md §2.12). The form is unsigned, so the
//! service verifies it with an inquiry before it changes anything (service/notifications.rs). The
//! reply body is exactly KCP's `result=0000` HTML once the notification is decided (now or
//! before); anything else makes KCP send it again, which is what a notification that could not be
//! recorded or verified needs.
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::app::AppState;
use crate::net::{client_address, AddressList};
use crate::service::notifications::{Notification, ACK};

/// Any reply but `result=0000` makes KCP send the notification again (spec §2.12).
pub(crate) const RETRY: &str =
    "<html><body><form><input type=\"hidden\" name=\"result\" value=\"9999\"></form></body></html>";

/// The TCP peer of the request, when the server recorded it.
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

pub async fn notify(
    State(s): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Only KCP's senders: the form is unsigned, and each one costs a row and an inquiry at KCP.
    // Nothing is recorded for anyone else; the answer is not `0000`, so if KCP itself sends from
    // an address missing from the list, it keeps re-sending until the list is fixed.
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let sources = &s.notify_sources;
    let client = client_address(peer, &forwarded, &sources.proxies);
    // A sender whose address is unknown gets through only where every address does.
    let allowed = match client {
        Some(ip) => sources.allowed.contains(ip),
        None => sources.allowed == AddressList::Any,
    };
    if !allowed {
        tracing::warn!(
            peer = ?peer,
            client = ?client,
            "KCP notification from an address not in OPENPORT_KCP__NOTIFY_SOURCES refused"
        );
        return (StatusCode::FORBIDDEN, Html(RETRY)).into_response();
    }
    let form = decode_form(&headers, &body);
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let n = Notification {
        site_cd: get("site_cd"),
        tno: get("tno"),
        tx_cd: get("tx_cd"),
        tx_tm: get("tx_tm"),
        noti_id: get("noti_id"),
        op_cd: Some(get("op_cd")).filter(|s| !s.is_empty()),
        // Kept for the operator only.
        amount: get("ipgm_mnyx").parse::<i64>().unwrap_or(0),
        // Absent or unreadable is unknown, never 0: a full deposit whose total did not come
        // through as a number is asked about, not taken for a partial one.
        total: Notification::total_from(&get("totl_mnyx")),
        // Believed only once KCP confirms the deposit, and only within the account's life.
        deposited_at: Notification::deposited_at_from(&get("ipgm_time")),
    };
    match s.gateway.handle_notification(n).await {
        Ok(_) => Html(ACK).into_response(),
        Err(e) => {
            tracing::warn!("KCP notification not acknowledged (KCP will send it again): {e}");
            (StatusCode::OK, Html(RETRY)).into_response()
        }
    }
}

/// KCP posts form-urlencoded UTF-8 (with `encoding_trans=UTF-8`) or EUC-KR (legacy): decode the
/// percent-escapes to bytes first, then the charset (spec/kcp.md §2.3).
pub fn decode_form(headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let euc_kr_declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("euc-kr"));
    let decode = |bytes: Vec<u8>| -> String {
        if !euc_kr_declared {
            if let Ok(s) = String::from_utf8(bytes.clone()) {
                return s;
            }
        }
        encoding_rs::EUC_KR.decode(&bytes).0.into_owned()
    };
    let unplus = |s: &[u8]| {
        s.iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect::<Vec<u8>>()
    };
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let k: Vec<u8> =
                percent_encoding::percent_decode(&unplus(it.next().unwrap_or_default())).collect();
            let v: Vec<u8> =
                percent_encoding::percent_decode(&unplus(it.next().unwrap_or_default())).collect();
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_euc_kr_form_and_a_utf8_form_decode_to_the_same_text() {
        let (euc, _, _) = encoding_rs::EUC_KR.encode("홍길동");
        let escaped: String = euc.iter().map(|b| format!("%{b:02X}")).collect();
        let body = format!("ipgm_name={escaped}&tno=123");
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=euc-kr"
                .parse()
                .unwrap(),
        );
        assert_eq!(decode_form(&h, body.as_bytes())[0].1, "홍길동");
        let utf8 = "ipgm_name=%ED%99%8D%EA%B8%B8%EB%8F%99+A&tno=1";
        assert_eq!(
            decode_form(&HeaderMap::new(), utf8.as_bytes())[0].1,
            "홍길동 A"
        );
        // Undeclared EUC-KR (invalid UTF-8) is still read.
        assert_eq!(
            decode_form(&HeaderMap::new(), body.as_bytes())[0].1,
            "홍길동"
        );
    }
}
