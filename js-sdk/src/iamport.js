/*
 * openport iamport.js: the browser side of openport's iamport (PortOne V1) compatible checkout.
 *
 * Loaded as <script src="{openport}/js/iamport.js"> (or iamport's other paths, /v1/iamport.js and
 * /js/iamport.payment-{version}.js), it defines window.IMP with IMP.init(code), IMP.agency(code, tier),
 * IMP.request_pay(params, callback?) and IMP.certification(params, callback?), so front-end code
 * written for iamport runs unchanged.
 * Plain ES5, no build step: the gateway serves this exact file (include_str!). Type-checked with
 * `npm run typecheck` (tsc --checkJs) against iamport-typings. js-sdk/README.md has the contract.
 */
// @ts-check
/**
 * @typedef {import('iamport-typings/src/index').default} Iamport
 * @typedef {import('iamport-typings/src/index').RequestPayParams} RequestPayParams
 * @typedef {import('iamport-typings/src/index').RequestPayResponse} RequestPayResponse
 * @typedef {import('iamport-typings/src/index').RequestPayResponseCallback} RequestPayResponseCallback
 *
 * iamport request_pay parameters that iamport-typings lacks.
 * @typedef {Object} OpenportExtraParams
 * @property {Array<{orderNumber: string, name: string, quantity: number, amount: number}>} [kcpProducts]
 *   KCP escrow products (their sum is not compared with amount).
 * @property {{shop_user_id?: string}} [bypass] required by KCP for phone, points and gift certificates.
 * @property {boolean} [popup] on a mobile browser: keep the page and call the callback (overlay).
 * @typedef {RequestPayParams & OpenportExtraParams} OpenportRequestPayParams
 *
 * Documented rsp fields that iamport-typings lacks.
 * @typedef {Object} OpenportExtraResponse
 * @property {string|null} [card_name]
 * @property {string|null} [card_number]
 * @property {number} [card_quota]
 * @property {string} [currency]
 * @property {any} [custom_data] the JSON object or array the page passed, parsed; other text as given
 * @property {string|null} [bank_name] a bank transfer's bank (null otherwise)
 * @property {string|null} [card_code] a card payment's issuer code (null otherwise)
 * @property {number} [paid_at]
 * @property {string|null} [receipt_url]
 * @typedef {RequestPayResponse & OpenportExtraResponse} OpenportRequestPayResponse
 *
 * @typedef {{code: number, message: string|null, response: any}} Envelope
 *
 * One request_pay call, from the checkout request to the callback.
 * @typedef {Object} Checkout
 * @property {OpenportRequestPayParams} params
 * @property {RequestPayResponseCallback|null} callback
 * @property {Array<RequestPayResponseCallback>} followers the callbacks of later request_pay calls for
 *   the same merchant_uid made while this one runs (a double click): each gets this checkout's rsp
 * @property {Array<function(): boolean>} observers whether this call, or a follower, has a callback or
 *   a Promise the page reads (see [callbackOrPromise]); a refusal nobody reads goes to m_redirect_url
 * @property {boolean} done
 * @property {string|null} session
 * @property {string|null} impUid
 * @property {string|null} merchantUid the /checkout/request answer's: openport's own when the page gave none
 * @property {HTMLElement|null} overlay
 * @property {HTMLIFrameElement|null} frame
 * @property {HTMLButtonElement|null} closeButton
 * @property {boolean} cancelling the close button (or the overlay's removal) asked the cancel call
 * @property {boolean} watching the window answered F500: the status call is polled for the outcome
 * @property {HTMLElement|null} status the overlay's "checking the result" line
 * @property {Array<function(): void>} cleanups
 */
(function (window, document) {
  'use strict';

  var existing = /** @type {any} */ (window.IMP);
  if (existing && existing.openport) {
    return; // loaded twice: keep the first instance (and its checkout in progress)
  }

  var REQUEST_TIMEOUT_MS = 30000;
  var CANCEL_TIMEOUT_MS = 10000;
  /** After a close click during the approval: how often to ask again, and for how long at most. */
  var CANCEL_POLL_MS = 1000;
  var CANCEL_WAIT_MS = 60000;
  /** Cancel calls in a row without a usable answer before the outcome is reported as unknown. */
  var CANCEL_ATTEMPTS = 3;
  /**
   * Mobile: how long after `location.href = start_url` the checkout still counts as in progress,
   * unless the page is shown again from the back-forward cache first (Back from the window).
   */
  var NAVIGATION_GRACE_MS = 10000;
  /** The gateway's error_code of a payment whose outcome is not known yet (approval in flight). */
  var CHECKING_CODE = 'F500';
  var MOBILE_UA = /Android|iPhone|iPad|iPod|Mobile|BlackBerry|IEMobile|Opera Mini|Windows Phone/i;

  /** @param {string} url @returns {string} */
  function originOf(url) {
    var a = document.createElement('a');
    a.href = url;
    if (a.origin && a.origin !== 'null') {
      return a.origin;
    }
    var defaultPort = (a.protocol === 'http:' && a.port === '80') || (a.protocol === 'https:' && a.port === '443');
    return a.protocol + '//' + a.hostname + (a.port && !defaultPort ? ':' + a.port : '');
  }

  /**
   * The script's own paths, as the gateway serves them (iamport's too: /v1/iamport.js,
   * /js/iamport.payment-{version}.js, and the .min.js name of each under /js/).
   */
  var SCRIPT_PATH = /(js\/iamport(\.payment-[0-9.]+)?(\.min)?\.js|v1\/iamport\.js)([?#]|$)/;

  /** @returns {string} the absolute URL this script was loaded from */
  function scriptSrc() {
    var current = /** @type {HTMLScriptElement|null} */ (document.currentScript);
    if (current && current.src) {
      return current.src;
    }
    var scripts = document.getElementsByTagName('script');
    for (var i = scripts.length - 1; i >= 0; i--) {
      if (SCRIPT_PATH.test(scripts[i].src)) {
        return scripts[i].src;
      }
    }
    return window.location.href;
  }

  var SRC = scriptSrc();
  var cut = SRC.search(SCRIPT_PATH);
  /** The gateway's base URL, with a trailing slash (keeps a path prefix such as /pay/). */
  var BASE = cut > 0 ? SRC.substring(0, cut) : originOf(SRC) + '/';
  var BASE_ORIGIN = originOf(BASE);

  /** @type {string|null} */
  var merchantCode = null;
  /** @type {Checkout|null} */
  var active = null;

  function isMobileUA() {
    return MOBILE_UA.test((window.navigator && window.navigator.userAgent) || '');
  }

  /**
   * Send a request and hand the parsed iamport envelope (or null) to done, exactly once. A GET
   * (body undefined) is a plain one without custom headers: no CORS preflight; a POST sends the
   * body as JSON.
   * @param {string} method
   * @param {string} url
   * @param {any} body
   * @param {number} timeoutMs
   * @param {function(number, Envelope|null): void} done
   */
  function requestJson(method, url, body, timeoutMs, done) {
    var called = false;
    var xhr = new XMLHttpRequest();
    /** @param {Envelope|null} json */
    function end(json) {
      if (!called) {
        called = true;
        done(xhr.status, json);
      }
    }
    try {
      xhr.open(method, url, true);
      if (body !== undefined) {
        xhr.setRequestHeader('Content-Type', 'application/json');
      }
      xhr.timeout = timeoutMs;
      xhr.onload = function () {
        var json = null;
        try {
          json = JSON.parse(xhr.responseText);
        } catch (e) {
          json = null;
        }
        end(json && typeof json === 'object' ? json : null);
      };
      xhr.onerror = function () { end(null); };
      xhr.ontimeout = function () { end(null); };
      xhr.onabort = function () { end(null); };
      xhr.send(body === undefined ? null : JSON.stringify(body));
    } catch (e) {
      window.setTimeout(function () { end(null); }, 0);
    }
  }

  /**
   * The checkout's merchant_uid: the one openport generated when the page gave none (iamport's
   * rsp always names one; iamport-typings declares it required).
   * @param {Checkout} checkout
   * @returns {string}
   */
  function merchantUidOf(checkout) {
    return checkout.merchantUid || checkout.params.merchant_uid;
  }

  /**
   * A failed rsp in iamport's shape.
   * @param {OpenportRequestPayParams} params
   * @param {string} code
   * @param {string} message
   * @param {any} [extra] fields the gateway sent (imp_uid, ...), copied over the defaults
   * @returns {OpenportRequestPayResponse}
   */
  function failure(params, code, message, extra) {
    /** @type {OpenportRequestPayResponse} */
    var rsp = {
      success: false,
      imp_success: false,
      error_code: code,
      error_msg: message,
      imp_uid: null,
      merchant_uid: params.merchant_uid,
      pay_method: params.pay_method,
      paid_amount: 0,
      status: 'failed',
      name: params.name,
      pg_provider: undefined,
      buyer_name: params.buyer_name,
      buyer_email: params.buyer_email,
      buyer_tel: params.buyer_tel,
      buyer_addr: params.buyer_addr
    };
    copyInto(rsp, extra);
    rsp.success = false;
    rsp.imp_success = false;
    if (!rsp.error_msg) {
      rsp.error_msg = message;
    }
    if (!rsp.error_code) {
      rsp.error_code = code;
    }
    return rsp;
  }

  /** @param {any} target @param {any} source */
  function copyInto(target, source) {
    if (source && typeof source === 'object') {
      for (var key in source) {
        if (Object.prototype.hasOwnProperty.call(source, key)) {
          target[key] = source[key];
        }
      }
    }
    return target;
  }

  /**
   * The rsp the gateway's final page sent, with success and imp_success kept in step.
   * @param {any} raw
   * @param {Checkout} checkout
   * @returns {OpenportRequestPayResponse}
   */
  function normalize(raw, checkout) {
    /** @type {OpenportRequestPayResponse} */
    var rsp = copyInto({ imp_uid: checkout.impUid, merchant_uid: merchantUidOf(checkout) }, raw);
    if (typeof rsp.success !== 'boolean') {
      rsp.success = rsp.imp_success === true;
    }
    if (typeof rsp.imp_success !== 'boolean') {
      rsp.imp_success = rsp.success;
    }
    if (rsp.imp_uid === undefined) {
      rsp.imp_uid = null;
    }
    if (typeof rsp.custom_data === 'string') {
      rsp.custom_data = customData(rsp.custom_data);
    }
    return rsp;
  }

  /**
   * custom_data as the page reads it: the gateway answers the JSON text it stores (REST keeps that
   * text), and iamport pages read the object they passed (`rsp.custom_data.productId`), also when
   * they passed it as JSON text. Text that is a JSON object or array is parsed; anything else
   * (plain text, a JSON number, string or null as text) is kept as it came.
   * @param {string} value
   * @returns {any}
   */
  function customData(value) {
    if (!/^\s*[[{]/.test(value)) {
      return value;
    }
    try {
      var parsed = JSON.parse(value);
      return parsed && typeof parsed === 'object' ? parsed : value;
    } catch (e) {
      return value;
    }
  }

  /**
   * m_redirect_url with iamport's result parameters appended ('&' when it already has a query).
   * @param {string} url
   * @param {OpenportRequestPayResponse} rsp
   */
  function redirectUrl(url, rsp) {
    var hash = '';
    var at = url.indexOf('#');
    if (at >= 0) {
      hash = url.substring(at);
      url = url.substring(0, at);
    }
    var pairs = [
      ['imp_uid', rsp.imp_uid || ''],
      ['merchant_uid', rsp.merchant_uid || ''],
      ['imp_success', rsp.imp_success ? 'true' : 'false']
    ];
    if (!rsp.imp_success) {
      pairs.push(['error_code', rsp.error_code || '']);
      pairs.push(['error_msg', rsp.error_msg || '']);
    }
    var query = [];
    for (var i = 0; i < pairs.length; i++) {
      query.push(encodeURIComponent(pairs[i][0]) + '=' + encodeURIComponent(pairs[i][1]));
    }
    var joiner = url.indexOf('?') < 0 ? '?' : /[?&]$/.test(url) ? '' : '&';
    return url + joiner + query.join('&') + hash;
  }

  /**
   * m_redirect_url resolved against this page, as the gateway resolves it (it answers the redirect
   * from its own host); null unless http(s).
   * @param {string} url
   * @returns {string|null}
   */
  function httpUrl(url) {
    if (!url) {
      return null;
    }
    var a = document.createElement('a');
    a.href = url;
    return a.protocol === 'http:' || a.protocol === 'https:' ? a.href : null;
  }

  /**
   * End a call that never opened a window (refused before the page left). As at iamport (seed 001
   * §2.1: on mobile the callback runs for a problem found "before the page moves"), the page stays
   * and the callback (or the Promise) gets the rsp, on mobile too: a merchant page shows the error
   * on its cart. Only a mobile call that nobody reads (no callback, and a Promise the page never
   * looked at, or none) goes to m_redirect_url with the result instead, so that a page written for
   * the redirect alone is not left with a button that silently did nothing. Decided a task later,
   * after the page had its chance to read the Promise it was just handed.
   * @param {OpenportRequestPayParams} params
   * @param {RequestPayResponseCallback} callback
   * @param {Array<function(): boolean>} observers
   * @param {boolean} mobile
   * @param {OpenportRequestPayResponse} rsp
   */
  function endEarly(params, callback, observers, mobile, rsp) {
    window.setTimeout(function () {
      var target = mobile && typeof params.m_redirect_url === 'string' ? httpUrl(params.m_redirect_url) : null;
      if (target && !anyTrue(observers)) {
        window.location.href = redirectUrl(target, rsp);
        return;
      }
      callback(rsp);
    }, 0);
  }

  /** @param {Array<function(): boolean>} checks @returns {boolean} */
  function anyTrue(checks) {
    for (var i = 0; i < checks.length; i++) {
      if (checks[i]()) {
        return true;
      }
    }
    return false;
  }

  /** @param {Checkout} checkout @param {OpenportRequestPayResponse} rsp */
  function finish(checkout, rsp) {
    if (checkout.done) {
      return;
    }
    checkout.done = true;
    for (var i = checkout.cleanups.length - 1; i >= 0; i--) {
      try {
        checkout.cleanups[i]();
      } catch (e) {
        // keep cleaning up
      }
    }
    checkout.cleanups = [];
    if (checkout.overlay && checkout.overlay.parentNode) {
      checkout.overlay.parentNode.removeChild(checkout.overlay);
    }
    checkout.overlay = null;
    checkout.frame = null;
    checkout.closeButton = null;
    checkout.status = null;
    if (active === checkout) {
      active = null;
    }
    answer(checkout, rsp);
  }

  /**
   * Calls the checkout's callback with rsp, then those of the later calls for the same order
   * (each with its own copy), once.
   * @param {Checkout} checkout
   * @param {OpenportRequestPayResponse} rsp
   */
  function answer(checkout, rsp) {
    var followers = checkout.followers;
    checkout.followers = [];
    if (checkout.callback) {
      checkout.callback(rsp);
    }
    for (var i = 0; i < followers.length; i++) {
      followers[i](/** @type {OpenportRequestPayResponse} */ (copyInto({}, rsp)));
    }
  }

  /**
   * Whether request_pay params name the order of the checkout in progress (its merchant_uid).
   * @param {Checkout} checkout
   * @param {OpenportRequestPayParams} params
   */
  function sameOrder(checkout, params) {
    var uid = params.merchant_uid;
    return uid !== undefined && uid !== null && String(uid) !== ''
      && String(uid) === String(checkout.params.merchant_uid);
  }

  /**
   * Mobile: the page goes to the window's start_url. The checkout stays in progress meanwhile: a
   * second tap before the page unloads must not ask for another window with the same merchant_uid,
   * which would retire the payment of the window the buyer is about to see (the gateway replaces
   * a `ready` payment of the merchant_uid), so that the buyer pays in a window whose result is
   * then refused. It ends when the page comes back from the back-forward cache (Back from the
   * window: a new checkout may start) or after NAVIGATION_GRACE_MS (the navigation did not happen).
   * @param {Checkout} checkout
   * @param {string} url
   */
  function leaveFor(checkout, url) {
    /** @param {PageTransitionEvent} event */
    function onShow(event) {
      if (event.persisted) {
        release();
      }
    }
    function release() {
      window.removeEventListener('pageshow', onShow, false);
      if (active === checkout) {
        active = null;
      }
    }
    window.addEventListener('pageshow', onShow, false);
    window.setTimeout(release, NAVIGATION_GRACE_MS);
    window.location.href = url;
  }

  /**
   * Whether an rsp says the payment is still being approved (the gateway's "checking" answer):
   * not an outcome to report as the end of the checkout.
   * @param {OpenportRequestPayResponse} rsp
   */
  function stillApproving(rsp) {
    var status = /** @type {string|undefined} */ (rsp.status);
    return rsp.error_code === CHECKING_CODE || status === 'pending';
  }

  /**
   * The rsp for an outcome the SDK could not learn: not a failure, the merchant looks it up.
   * @param {Checkout} checkout
   * @returns {OpenportRequestPayResponse}
   */
  function checking(checkout) {
    var rsp = failure(checkout.params, CHECKING_CODE, '결제 결과를 확인 중입니다. 잠시 후 결제내역을 조회해 주세요.'
      + (checkout.impUid ? ' (imp_uid: ' + checkout.impUid + ')' : ''),
      { imp_uid: checkout.impUid, merchant_uid: merchantUidOf(checkout) });
    rsp.status = 'ready';
    return rsp;
  }

  /**
   * Waits for the outcome of a payment the gateway answered F500 "checking" (approval in flight):
   * the overlay and the message listener stay, `#openport-status` shows, and `ask` (a call that
   * answers the payment as it stands) is made every CANCEL_POLL_MS until it answers anything but
   * F500/`pending`; that answer or the frame's final message, whichever comes first, is the one
   * callback. After CANCEL_WAIT_MS, or when `ask` gives no usable answer CANCEL_ATTEMPTS times in
   * a row, the callback gets the last F500 rsp (or one made here): the outcome is unknown, never a
   * made-up failure.
   * @param {Checkout} checkout
   * @param {function(function(number, Envelope|null): void): void} ask
   * @param {OpenportRequestPayResponse|null} lastChecking the F500 rsp already in hand, if any
   * @param {boolean} askNow false: the first call only after CANCEL_POLL_MS
   */
  function awaitOutcome(checkout, ask, lastChecking, askNow) {
    var misses = 0;
    /** @type {number|null} */
    var pollTimer = null;
    var deadline = window.setTimeout(function () {
      finish(checkout, lastChecking || checking(checkout));
    }, CANCEL_WAIT_MS);
    checkout.cleanups.push(function () {
      window.clearTimeout(deadline);
      if (pollTimer !== null) {
        window.clearTimeout(pollTimer);
      }
    });

    function later() {
      pollTimer = window.setTimeout(next, CANCEL_POLL_MS);
    }

    function next() {
      pollTimer = null;
      if (checkout.done) {
        return;
      }
      ask(function (_status, json) {
        if (checkout.done) {
          return; // the frame's message (or the deadline) came first
        }
        if (json && json.code === 0 && json.response && typeof json.response === 'object') {
          misses = 0;
          var rsp = normalize(json.response, checkout);
          if (!stillApproving(rsp)) {
            finish(checkout, rsp);
            return;
          }
          lastChecking = rsp;
          showChecking(checkout);
          later();
          return;
        }
        // No usable answer (network, timeout, an error page or envelope): the outcome is unknown.
        misses += 1;
        if (misses >= CANCEL_ATTEMPTS) {
          finish(checkout, lastChecking || checking(checkout));
          return;
        }
        showChecking(checkout);
        later();
      });
    }
    if (askNow) {
      next();
    } else {
      showChecking(checkout);
      later();
    }
  }

  /**
   * The buyer gave up (close button, or the overlay was removed by the page): the gateway fails the
   * payment if it is still `ready` and answers the rsp to report. When the buyer had already
   * submitted the window, the payment is being approved (`pending`) and the answer is F500
   * "checking": then the checkout goes on ([awaitOutcome]) asking the same endpoint again (it
   * changes nothing on a payment that is not `ready`). Nothing to do once the window's own answer
   * said F500 ([watch] waits for the outcome already).
   * @param {Checkout} checkout
   */
  function cancel(checkout) {
    if (checkout.done || checkout.cancelling || checkout.watching) {
      return;
    }
    checkout.cancelling = true;
    var url = BASE + 'checkout/session/' + encodeURIComponent(checkout.session || '') + '/cancel';
    awaitOutcome(checkout, function (done) { requestJson('POST', url, {}, CANCEL_TIMEOUT_MS, done); }, null, true);
  }

  /**
   * The window's own final answer was F500 "checking": the same result was posted twice and the
   * gateway could not wait for the approval the other post is making (or its outcome is not known
   * yet). Not the end: the overlay stays (its close button off, as after a close click) and the
   * read-only status call is polled ([awaitOutcome]) until the outcome is known, so a payment that
   * gets approved reports `success: true` instead of a failure the buyer would pay again after.
   * The status call, unlike the cancel call, never fails a `ready` payment as the buyer's cancel.
   * @param {Checkout} checkout
   * @param {OpenportRequestPayResponse} rsp the window's F500 answer
   */
  function watch(checkout, rsp) {
    if (checkout.done || checkout.cancelling || checkout.watching) {
      return; // the close button's polling already waits for the outcome
    }
    checkout.watching = true;
    if (checkout.closeButton) {
      checkout.closeButton.disabled = true;
    }
    var url = BASE + 'checkout/session/' + encodeURIComponent(checkout.session || '') + '/status';
    awaitOutcome(checkout, function (done) { requestJson('GET', url, undefined, CANCEL_TIMEOUT_MS, done); }, rsp, false);
  }

  /** Shows "checking the result" in the overlay while the SDK waits for the outcome. @param {Checkout} checkout */
  function showChecking(checkout) {
    if (checkout.status) {
      checkout.status.style.setProperty('display', 'block', 'important');
    }
  }

  /** @param {HTMLElement} el @param {Object<string, string>} styles */
  function style(el, styles) {
    for (var key in styles) {
      if (Object.prototype.hasOwnProperty.call(styles, key)) {
        el.style.setProperty(key, styles[key], 'important');
      }
    }
  }

  /** @param {Checkout} checkout @param {string} startUrl */
  function openOverlay(checkout, startUrl) {
    var overlay = document.createElement('div');
    overlay.id = 'openport-overlay';
    overlay.setAttribute('role', 'dialog');
    overlay.setAttribute('aria-modal', 'true');
    overlay.setAttribute('aria-label', '결제창');
    style(overlay, {
      position: 'fixed', top: '0', left: '0', right: '0', bottom: '0', margin: '0', padding: '0',
      'z-index': '2147483646', background: 'rgba(0, 0, 0, 0.55)', display: 'block'
    });

    var box = document.createElement('div');
    style(box, {
      position: 'absolute', top: '50%', left: '50%', transform: 'translate(-50%, -50%)',
      width: '820px', 'max-width': '100%', height: '660px', 'max-height': '100%',
      background: '#fff', 'border-radius': '8px', overflow: 'hidden', 'box-shadow': '0 8px 32px rgba(0,0,0,.35)'
    });

    var frame = document.createElement('iframe');
    frame.id = 'openport-frame';
    frame.name = 'openport-frame';
    frame.title = '결제창';
    frame.setAttribute('allow', 'payment');
    style(frame, { border: '0', width: '100%', height: '100%', display: 'block' });

    var close = document.createElement('button');
    close.id = 'openport-close';
    close.type = 'button';
    close.setAttribute('aria-label', '결제창 닫기');
    close.appendChild(document.createTextNode('\u00d7'));
    style(close, {
      position: 'absolute', top: '6px', right: '8px', width: '36px', height: '36px', 'z-index': '1',
      border: '0', 'border-radius': '18px', background: 'rgba(0,0,0,.06)', color: '#333',
      'font-size': '24px', 'line-height': '36px', cursor: 'pointer', padding: '0'
    });
    close.onclick = function () {
      close.disabled = true; // for good: a second click changes nothing, the wait has to end
      cancel(checkout);
    };

    // Shown after a close click while the gateway finishes an approval already under way.
    var status = document.createElement('div');
    status.id = 'openport-status';
    status.setAttribute('role', 'status');
    status.setAttribute('aria-live', 'polite');
    status.appendChild(document.createTextNode('결제 결과를 확인 중입니다. 잠시만 기다려 주세요.'));
    style(status, {
      position: 'absolute', left: '0', right: '0', bottom: '0', 'z-index': '1', display: 'none',
      margin: '0', padding: '10px 16px', background: 'rgba(255,255,255,.95)', color: '#333',
      'font-size': '14px', 'line-height': '20px', 'text-align': 'center', 'border-top': '1px solid #ddd'
    });

    box.appendChild(frame);
    box.appendChild(close);
    box.appendChild(status);
    overlay.appendChild(box);

    checkout.overlay = overlay;
    checkout.frame = frame;
    checkout.closeButton = close;
    checkout.status = status;

    /** @param {MessageEvent} event */
    function onMessage(event) {
      if (event.origin !== BASE_ORIGIN) {
        return;
      }
      var data = event.data;
      if (typeof data === 'string') {
        try {
          data = JSON.parse(data);
        } catch (e) {
          return;
        }
      }
      if (!data || data.source !== 'openport' || !data.rsp || typeof data.rsp !== 'object') {
        return;
      }
      if (data.session && checkout.session && data.session !== checkout.session) {
        return;
      }
      if (checkout.frame && event.source && event.source !== checkout.frame.contentWindow) {
        return;
      }
      var rsp = normalize(data.rsp, checkout);
      if (stillApproving(rsp)) {
        watch(checkout, rsp); // not the outcome yet
        return;
      }
      finish(checkout, rsp);
    }
    window.addEventListener('message', onMessage, false);
    checkout.cleanups.push(function () { window.removeEventListener('message', onMessage, false); });

    // Escape must not make the payment window vanish without a result: keep the overlay, and keep the
    // key away from the page's own handlers (a merchant modal closing around it).
    /** @param {KeyboardEvent} event */
    function onKey(event) {
      if (event.key === 'Escape' || event.key === 'Esc' || event.keyCode === 27) {
        event.preventDefault();
        event.stopPropagation();
      }
    }
    document.addEventListener('keydown', onKey, true);
    checkout.cleanups.push(function () { document.removeEventListener('keydown', onKey, true); });

    var root = document.body || document.documentElement;
    var previousOverflow = root.style.overflow;
    root.style.overflow = 'hidden';
    checkout.cleanups.push(function () { root.style.overflow = previousOverflow; });

    root.appendChild(overlay);
    frame.src = startUrl;

    // A page that removes the overlay itself (a single-page app re-rendering the body) cancels the
    // checkout the same way the close button does, so the callback still runs once.
    if (typeof window.MutationObserver === 'function') {
      var observer = new window.MutationObserver(function () {
        if (!checkout.done && checkout.overlay && !document.documentElement.contains(checkout.overlay)) {
          cancel(checkout);
        }
      });
      observer.observe(document.documentElement, { childList: true, subtree: true });
      checkout.cleanups.push(function () { observer.disconnect(); });
    }
    try {
      close.focus();
    } catch (e) {
      // focus is best effort
    }
  }

  /**
   * Calls `start` with the callback, or without one returns a Promise of the response (iamport's
   * SDK from 1.3 on); undefined with a callback, as before. `start` also gets whether the page
   * reads the answer: always with a callback, never without a Promise, and with a Promise once
   * the page has asked for its value (`.then(fn)`, `await`, `Promise.resolve`, `Promise.all`...).
   * A mobile page written for m_redirect_url alone calls request_pay without a callback and drops
   * the Promise: a refusal before the window must then go to m_redirect_url, not resolve unseen.
   * `.catch(fn)` alone is no read (this Promise never rejects): Vue 3 calls it on whatever a
   * click handler returns, and such a page would lose its redirect.
   * `await` and `Promise.resolve` take a native Promise's state without calling its `then`, but
   * they read its `constructor` first: an own getter (returning the real Promise, so polyfills'
   * `then`, `new this.constructor(…)`, and `finally` shims keep working) counts that read, except
   * the one `then` itself makes (SpeciesConstructor), which `.catch` goes through.
   * @template T
   * @param {function(function(T): void, function(): boolean): void} start
   * @param {function(T): void} [callback]
   * @returns {Promise<T>|undefined}
   */
  function callbackOrPromise(start, callback) {
    if (typeof callback === 'function') {
      start(callback, function () { return true; });
      return undefined;
    }
    var PromiseCtor = /** @type {any} */ (window).Promise;
    if (typeof PromiseCtor !== 'function') {
      start(function () {}, function () { return false; });
      return undefined;
    }
    var read = false;
    var inThen = false;
    var promise = new PromiseCtor(function (/** @type {function(T): void} */ resolve) {
      start(resolve, function () { return read; });
    });
    var then = promise.then;
    promise.then = function (/** @type {unknown} */ onFulfilled) {
      if (typeof onFulfilled === 'function') {
        read = true;
      }
      var outer = inThen;
      inThen = true;
      try {
        return then.apply(promise, arguments);
      } finally {
        inThen = outer;
      }
    };
    Object.defineProperty(promise, 'constructor', {
      configurable: true,
      get: function () {
        if (!inThen) {
          read = true;
        }
        return PromiseCtor;
      }
    });
    return promise;
  }

  /**
   * @param {OpenportRequestPayParams} params
   * @param {RequestPayResponseCallback} [callback]
   * @returns {Promise<OpenportRequestPayResponse>|undefined}
   */
  function requestPay(params, callback) {
    return callbackOrPromise(function (/** @type {RequestPayResponseCallback} */ done, /** @type {function(): boolean} */ read) {
      startPay(params, done, read);
    }, callback);
  }

  /**
   * @param {OpenportRequestPayParams} params
   * @param {RequestPayResponseCallback} cb
   * @param {function(): boolean} read whether the page reads cb's answer ([callbackOrPromise])
   */
  function startPay(params, cb, read) {
    var p = /** @type {OpenportRequestPayParams} */ (params && typeof params === 'object' ? params : {});
    var mobile = isMobileUA() && p.popup !== true;

    if (!merchantCode) {
      endEarly(p, cb, [read], mobile, failure(p, 'F_NOT_INITIALIZED', 'IMP.init을 먼저 호출해 주세요'));
      return;
    }
    if (active) {
      if (sameOrder(active, p)) {
        // The same order again (a double click or tap): nothing is sent, and no failure is
        // reported for an order that may be about to be paid. The call gets what the checkout in
        // progress gets; nothing when that one has left for the window (mobile), whose result
        // comes back through m_redirect_url.
        if (!active.done) {
          active.followers.push(cb);
          active.observers.push(read);
        }
        return;
      }
      // Another order while one is in progress: refused, the one in progress left alone (no redirect).
      // The message says a window is open, so that a page (or buyer) reading it does not take it for
      // the failure of the payment in that window; iamport's own sample makes a new merchant_uid per
      // click, so a double click lands here (js-sdk/README.md, "Robustness").
      var busy = failure(p, 'F_IN_PROGRESS', '이미 결제창이 열려 있거나 여는 중입니다. 진행 중인 결제를 마친 뒤 다시 시도해 주세요.');
      window.setTimeout(function () { cb(busy); }, 0);
      return;
    }

    /** @type {Checkout} */
    var checkout = {
      params: p, callback: cb, followers: [], observers: [read], done: false, session: null, impUid: null, merchantUid: null,
      overlay: null, frame: null, closeButton: null, status: null, cancelling: false, watching: false,
      cleanups: []
    };
    active = checkout;

    var body = { imp_code: merchantCode, params: p, mobile: mobile, page_url: window.location.href };
    requestJson('POST', BASE + 'checkout/request', body, REQUEST_TIMEOUT_MS, function (status, json) {
      var response = json && json.response && typeof json.response === 'object' ? json.response : null;
      if (json && json.code === 0 && response && typeof response.start_url === 'string') {
        checkout.session = response.session || null;
        checkout.impUid = response.imp_uid || null;
        checkout.merchantUid = typeof response.merchant_uid === 'string' ? response.merchant_uid : null;
        if (mobile) {
          checkout.done = true;
          leaveFor(checkout, response.start_url);
        } else {
          openOverlay(checkout, response.start_url);
        }
        return;
      }
      active = null;
      checkout.done = true;
      var rsp = json
        ? failure(p, String(json.code), json.message || '결제를 시작하지 못했습니다.', response)
        : failure(p, 'F_NETWORK', '결제 서버에 연결하지 못했습니다.' + (status ? ' (HTTP ' + status + ')' : ''));
      endEarly(p, function (r) { answer(checkout, r); }, checkout.observers, mobile, rsp);
    });
  }

  /** @param {string} code */
  function init(code) {
    merchantCode = code ? String(code) : null;
  }

  /**
   * Identity verification is a different product (PASS/SMS through danal and others), which
   * openport does not offer: the merchant's callback gets a failure rather than a TypeError.
   * @param {any} params
   * @param {function(any): void} [callback]
   */
  function certification(params, callback) {
    var p = params && typeof params === 'object' ? params : {};
    return callbackOrPromise(function (/** @type {function(any): void} */ done) {
      var rsp = {
        success: false,
        imp_success: false,
        imp_uid: null,
        merchant_uid: p.merchant_uid,
        pg_provider: null,
        pg_type: null,
        error_code: 'F_NOT_SUPPORTED',
        error_msg: 'openport는 본인인증(IMP.certification)을 지원하지 않습니다.'
      };
      window.setTimeout(function () { done(rsp); }, 0);
    }, callback);
  }

  /**
   * @type {Iamport & {openport: boolean, version: string,
   *   agency: function(string, string=): void,
   *   certification: function(any, function(any): void=): (Promise<any>|undefined)}}
   */
  var IMP = {
    openport: true,
    version: '0.1.0',
    init: init,
    /**
     * iamport's agency (partner) form of init. The tier code names a sub-merchant of an agency at
     * iamport; at openport the imp_code alone names the merchant, so the tier is ignored.
     * @param {string} code
     * @param {string} [_tierCode]
     */
    agency: function (code, _tierCode) {
      init(code);
    },
    request_pay: requestPay,
    certification: certification
  };
  window.IMP = IMP;
})(window, document);
