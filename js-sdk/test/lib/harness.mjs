// Shared pieces of the browser suite: Debian's Chromium through playwright-core (never a downloaded
// browser), a merchant site on its own origin, and iamport REST calls the way a merchant server makes them.
import http from 'node:http';
import { chromium } from 'playwright-core';

export const OPENPORT_URL = (process.env.OPENPORT_URL ?? 'http://127.0.0.1:8080/').replace(/\/?$/, '/');
export const BASE = OPENPORT_URL.replace(/\/$/, '');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const IMP_CODE = process.env.OPENPORT_IMP_CODE ?? 'imp00000000';
export const IMP_KEY = 'imp_apikey';
export const IMP_SECRET = 'ekKoeW8RyKuT0zgaZsUtXXTLQ4AhPFW3ZGseDA6bkA5lamv9OqDMnxyeB9wqOsuO9W3Mx9YSJ4dTqJ3f';
export const MOBILE_UA = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 '
  + '(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1';

export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export function launch() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/** A merchant order id unique to this run. */
export function uid(prefix) {
  return `${prefix}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * The merchant's checkout page: loads iamport.js from `gatewayUrl` (another origin), calls
 * IMP.init, and records every callback in window.__rsps.
 */
export function merchantPage(gatewayUrl, { init = true, script = 'js/iamport.js' } = {}) {
  return `<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><title>merchant</title>
<script src="${gatewayUrl}${script}"></script></head>
<body><h1>가맹점 결제 페이지</h1>
<script>
  window.__rsps = [];
  ${init ? `IMP.init(${JSON.stringify(IMP_CODE)});` : ''}
  window.pay = function (params, withCallback) {
    if (withCallback === false) { IMP.request_pay(params); return; }
    IMP.request_pay(params, function (rsp) { window.__rsps.push(rsp); });
  };
</script></body></html>`;
}

/** Merchant pages that load the SDK from iamport's other script paths. */
export const SCRIPT_PATHS = {
  '/pay-v1': 'v1/iamport.js',
  '/pay-1.2.0': 'js/iamport.payment-1.2.0.js',
  '/pay-1.1.5': 'js/iamport.payment-1.1.5.js',
  '/pay-min': 'js/iamport.min.js',
  '/pay-1.2.0-min': 'js/iamport.payment-1.2.0.min.js',
};

/**
 * The merchant's own web server on 127.0.0.1:<random>: `/pay` is the checkout page, anything else
 * (m_redirect_url targets) a small page that shows its URL.
 */
export async function startMerchant(gatewayUrl) {
  /** Webhooks received at `/hooks`, in order: the parsed body (JSON or form) of each. */
  const hooks = [];
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://merchant');
    res.setHeader('Cache-Control', 'no-store');
    if (req.method === 'POST' && url.pathname === '/hooks') {
      let body = '';
      for await (const chunk of req) body += chunk;
      const json = (req.headers['content-type'] ?? '').includes('json');
      hooks.push(json ? JSON.parse(body) : Object.fromEntries(new URLSearchParams(body)));
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
      return;
    }
    if (req.method === 'POST' && url.pathname === '/confirm/refuse') {
      for await (const _ of req); // eslint-disable-line no-unused-vars
      res.writeHead(400, { 'Content-Type': 'application/json' }).end(JSON.stringify({ reason: '재고 없음' }));
      return;
    }
    if (url.pathname === '/pay' || url.pathname === '/pay-no-init') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(merchantPage(gatewayUrl, { init: url.pathname === '/pay' }));
      return;
    }
    if (SCRIPT_PATHS[url.pathname]) { // the page as written for iamport's own script paths
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(merchantPage(gatewayUrl, { script: SCRIPT_PATHS[url.pathname] }));
      return;
    }
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><meta charset="utf-8"><title>returned</title><p id="where">${
      url.pathname.replace(/[<>&"]/g, '')}</p>`);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    hooks,
    /** Waits until a webhook matching `pred` arrived and returns it. */
    async hook(pred, timeout = 30_000) {
      const until = Date.now() + timeout;
      for (;;) {
        const found = hooks.find(pred);
        if (found) return found;
        if (Date.now() > until) throw new Error(`no such webhook; received ${JSON.stringify(hooks)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}

/** Waits for the page's n-th callback and returns every rsp seen so far. */
export async function callbacks(page, n = 1, timeout = 60_000) {
  await page.waitForFunction((count) => window.__rsps.length >= count, n, { timeout });
  return page.evaluate(() => window.__rsps);
}

/** Proves a callback ran exactly once: waits a little more and counts again. */
export async function exactlyOnce(page) {
  await page.waitForTimeout(700);
  return page.evaluate(() => window.__rsps.length);
}

// --- iamport REST, as the merchant's server calls it -------------------------------------------

export async function rest(method, path, body, token) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(`${BASE}${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(20_000),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = { code: null, message: text, response: null }; }
  return { status: res.status, json };
}

let cachedToken;
export async function token() {
  if (cachedToken) return cachedToken;
  const { json } = await rest('POST', '/users/getToken', { imp_key: IMP_KEY, imp_secret: IMP_SECRET });
  if (json.code !== 0) throw new Error(`getToken failed: ${JSON.stringify(json)}`);
  cachedToken = json.response.access_token;
  return cachedToken;
}

export async function getPayment(impUid) {
  return rest('GET', `/payments/${encodeURIComponent(impUid)}`, undefined, await token());
}

export async function prepare(merchantUid, amount) {
  return rest('POST', '/payments/prepare', { merchant_uid: merchantUid, amount }, await token());
}

export async function getCustomer(customerUid) {
  return rest('GET', `/subscribe/customers/${encodeURIComponent(customerUid)}`, undefined, await token());
}

/** Charges a stored billing key (`POST /subscribe/payments/again`). */
export async function payAgain(customerUid, merchantUid, amount) {
  return rest('POST', '/subscribe/payments/again', {
    customer_uid: customerUid, merchant_uid: merchantUid, amount, name: '정기결제',
  }, await token());
}

/** Pays a merchant_uid without a window (key-in), so a later request_pay with it must be refused. */
export async function payKeyIn(merchantUid, amount) {
  return rest('POST', '/subscribe/payments/onetime', {
    merchant_uid: merchantUid, amount, card_number: '4111-1111-1111-1111', expiry: '2031-12',
  }, await token());
}

// --- the sandbox KCP window inside the frame ---------------------------------------------------

/** Test card data for the sandbox KCP card page (docs/sandbox.md test cards). */
export const CARD = { number: '4111111111111111', expiry: process.env.OPENPORT_TEST_CARD_EXPIRY ?? '3112' };

/** Sets a field whichever element it is: a <select> gets its value (or its first real option). */
export async function setField(scope, selector, value) {
  const el = scope.locator(selector);
  await el.waitFor({ state: 'visible', timeout: 20_000 });
  const tag = await el.evaluate((node) => node.tagName.toLowerCase());
  if (tag === 'select') {
    const options = await el.locator('option').evaluateAll(
      (nodes) => nodes.map((o) => o.value).filter((v) => v !== ''),
    );
    await el.selectOption(value !== undefined && options.includes(value) ? value : options[0]);
  } else {
    await el.fill(String(value ?? ''));
  }
}

/** Fills the KCP sandbox window for a pay method (inside `scope`, a frame or a page) and submits. */
export async function completeWindow(scope, payMethod) {
  switch (payMethod) {
    case 'card':
      await setField(scope, '#card_no', CARD.number);
      await setField(scope, '#card_expiry', CARD.expiry);
      if (await scope.locator('#quota').count()) await setField(scope, '#quota', '00');
      break;
    case 'trans':
    case 'vbank':
      if (await scope.locator('#bank').count() || payMethod === 'trans') await setField(scope, '#bank');
      break;
    case 'phone':
      await setField(scope, '#mobile_no', '01012345678');
      break;
    default: // points and gift certificates
      await setField(scope, '#pin', process.env.OPENPORT_TEST_PIN ?? '1234567890123456');
  }
  await scope.locator('#pay').click();
}

/**
 * KCP's window in the overlay, as playwright-core sees it across navigations and origins: on PC
 * openport's hand-off page runs KCP's PC flow (spec/kcp.md §1.1), and KCP's PC script renders
 * its window as a layer with its own frame (`#kcp_sandbox_frame`) inside that page.
 */
export function windowFrame(page) {
  return page.frameLocator('#openport-frame').frameLocator('#kcp_sandbox_frame');
}

// --- the KCP sandbox's control API (docs/sandbox.md) ---------------------------------------------

/**
 * The sandbox's origin (it listens on its own port): OPENPORT_SANDBOX_URL, or read off the page
 * the window was opened on — a frame (or the page) whose path is KCP's window path.
 */
export function sandboxOrigin(page) {
  if (process.env.OPENPORT_SANDBOX_URL) return process.env.OPENPORT_SANDBOX_URL.replace(/\/$/, '');
  const frame = page.frames().find((f) => /\/pay\//.test(new URL(f.url(), 'http://x').pathname));
  if (!frame) throw new Error('the KCP window is not open');
  return new URL(frame.url()).origin;
}

/** Calls the sandbox control API; throws on a non-2xx answer. */
export async function sandbox(origin, method, path, body) {
  const res = await fetch(`${origin}${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(20_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`sandbox ${method} ${path}: ${res.status} ${text}`);
  try { return JSON.parse(text); } catch { return text; }
}
