//! KCP's PC flow (spec/kcp.md §1.1): the script a merchant page loads
//! (`/plugin/kcp_spay_hub.js`), which defines `KCP_Pay_Execute_Web(form)` and `GetField`, and
//! the PC window it opens as a layer inside that page.
//!
//! `KCP_Pay_Execute_Web(form)` adds a fixed-position layer (`#kcp_sandbox_layer`) holding a frame
//! (`#kcp_sandbox_frame`), and posts the form's fields into the frame to the PC window
//! ([`crate::paths::PC_WINDOW`]), with the page's origin. The window records the trade as a
//! registration records a mobile one, then shows the same window page (same element ids, same
//! `/pay/submit`). When the buyer pays or cancels, the answer page hands KCP's answer inputs
//! (`res_cd, res_msg, enc_info, enc_data, ret_pay_method, tran_cd, use_pay_method, ordr_chk,
//! cash_yn, cash_tr_code, cash_id_info`, …) to the page by `postMessage`; the script fills the
//! form's inputs with them, removes its layer and calls the page's
//! `m_Completepayment(form, closeEvent)`. The page then posts the form to its own server, which
//! approves `enc_data` at `gw/enc/v1/payment` as for the mobile window.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{Html, IntoResponse, Response};

use crate::window::{error_page, escape, form_fields, host_of, open_pc_window, window_ui};
use crate::Shared;

/// The field the script adds to the window post: the origin of the page that loaded it, where
/// the answer is handed back.
pub const PAGE_ORIGIN_FIELD: &str = "kcp_page_origin";

/// `GET /plugin/kcp_spay_hub.js`: KCP's PC script. `ORIGIN` is this sandbox as the page reached
/// it: only messages from its own frame at that origin are taken as KCP's answer.
pub(crate) async fn script(headers: HeaderMap) -> Response {
    let origin = json_for_script(&format!("http://{}", host_of(&headers)));
    let body = SCRIPT
        .replace("__ORIGIN__", &origin)
        .replace("__WINDOW__", crate::paths::PC_WINDOW)
        .replace("__PAGE_ORIGIN__", PAGE_ORIGIN_FIELD);
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=UTF-8"),
    );
    res
}

const SCRIPT: &str = r#"(function () {
  var ORIGIN = __ORIGIN__;
  function fieldsOf(form) {
    var out = {};
    for (var i = 0; i < form.elements.length; i++) {
      var e = form.elements[i];
      if (e.name) { out[e.name] = e.value; }
    }
    return out;
  }
  function setField(form, name, value) {
    var e = form.elements.namedItem(name);
    if (e && e.length !== undefined && !e.tagName) { e = e[0]; }
    if (!e) {
      e = document.createElement('input');
      e.type = 'hidden';
      e.name = name;
      form.appendChild(e);
    }
    e.value = value == null ? '' : String(value);
  }
  window.GetField = function (target, source) {
    if (!source || source === target) { return; }
    var values = source.elements ? fieldsOf(source) : source;
    for (var k in values) {
      if (Object.prototype.hasOwnProperty.call(values, k)) { setField(target, k, values[k]); }
    }
  };
  window.KCP_Pay_Execute_Web = function (form) {
    var old = document.getElementById('kcp_sandbox_layer');
    if (old) { old.parentNode.removeChild(old); }
    var layer = document.createElement('div');
    layer.id = 'kcp_sandbox_layer';
    layer.style.cssText = 'position:fixed;left:0;top:0;width:100%;height:100%;z-index:2147483647;background:rgba(0,0,0,.4)';
    var frame = document.createElement('iframe');
    frame.id = 'kcp_sandbox_frame';
    frame.name = 'kcp_sandbox_frame_' + Math.random().toString(36).slice(2);
    frame.style.cssText = 'position:absolute;left:50%;top:50%;width:440px;height:600px;max-width:100%;max-height:100%;transform:translate(-50%,-50%);border:0;background:#fff';
    layer.appendChild(frame);
    document.body.appendChild(layer);
    var post = document.createElement('form');
    post.method = 'post';
    post.action = ORIGIN + '__WINDOW__';
    post.target = frame.name;
    post.acceptCharset = 'UTF-8';
    post.style.display = 'none';
    var values = fieldsOf(form);
    values['__PAGE_ORIGIN__'] = window.location.origin;
    for (var k in values) {
      var i = document.createElement('input');
      i.type = 'hidden';
      i.name = k;
      i.value = values[k];
      post.appendChild(i);
    }
    document.body.appendChild(post);
    post.submit();
    post.parentNode.removeChild(post);
    function close() {
      window.removeEventListener('message', onMessage);
      if (layer.parentNode) { layer.parentNode.removeChild(layer); }
    }
    function onMessage(ev) {
      if (ev.source !== frame.contentWindow || ev.origin !== ORIGIN) { return; }
      var d = ev.data;
      if (!d || d.source !== 'kcp-sandbox-pc' || !d.result) { return; }
      window.GetField(form, d.result);
      close();
      window.m_Completepayment(form, close);
    }
    window.addEventListener('message', onMessage);
  };
})();
"#;

/// `POST /pay/pcWindow.kcp`: the PC window, posted by the script with the merchant form's
/// fields. Served inside the script's own layer frame, so it stays frameable.
pub(crate) async fn window(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let f = form_fields(&body);
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let origin = get(PAGE_ORIGIN_FIELD);
    if !is_web_origin(&origin) {
        return error_page("결제 페이지의 주소를 알 수 없습니다.");
    }
    match open_pc_window(&s, &get, &origin) {
        Ok((trade, key)) => window_ui(&trade, &key),
        Err(message) => error_page(&message),
    }
}

/// Whether `origin` is an http(s) origin (`scheme://host[:port]`, nothing after): the answer is
/// posted to it and to nothing else.
fn is_web_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    rest.is_some_and(|host| {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    })
}

/// The PC window's answer, handed to the page at `origin` that loaded the script (its frame's
/// parent). The inputs are also in a form (`#kcp_result`), for a reader without script.
pub(crate) fn answer_page(origin: &str, fields: &[(&str, String)]) -> Response {
    let inputs: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let result: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    let result = json_for_script(&result);
    let origin = json_for_script(origin);
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"></head><body>\
         <form id=\"kcp_result\">{inputs}</form><p>결제창 처리가 끝났습니다.</p>\
         <script>(function(){{var result={result};\
         parent.postMessage({{source:'kcp-sandbox-pc',result:result}},{origin});}})();</script></body></html>"
    ))
    .into_response()
}

/// JSON to embed in a `<script>`: `<`, `>`, `&`, U+2028 and U+2029 escaped, so no text in it
/// ends or changes the script element.
fn json_for_script<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}
