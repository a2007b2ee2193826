// IMP.request_pay end to end against a running openport (OPENPORT_URL, test mode, sandbox KCP):
// a merchant page on its own origin loads {openport}/js/iamport.js, the buyer goes through the
// sandbox KCP window in the overlay (or the whole page on mobile), and the merchant server then
// verifies the payment over REST as iamport tells merchants to.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  OPENPORT_URL, BASE, launch, startMerchant, windowFrame, completeWindow,
  getPayment, prepare, payKeyIn, uid, MOBILE_UA, SCRIPT_PATHS, callbacks, sandboxOrigin, sandbox,
  rest, token,
} from './lib/harness.mjs';
import { params, merchantPages } from './lib/pages.mjs';

let browser;
let merchant;
let openPage;
let payInOverlay;
let refused;

before(async () => {
  merchant = await startMerchant(OPENPORT_URL);
  browser = await launch();
  ({ openPage, payInOverlay, refused } = merchantPages(browser, merchant));
});

after(async () => {
  await browser?.close();
  await merchant?.close();
});

test('openport serves js-sdk/src/iamport.js byte for byte at /js/iamport.js', { timeout: 20_000 }, async () => {
  const res = await fetch(`${BASE}/js/iamport.js`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /javascript/);
  assert.equal(await res.text(), readFileSync(new URL('../src/iamport.js', import.meta.url), 'utf8'));
});

test('PC card payment: callback success, then REST shows it paid for the amount', { timeout: 90_000 }, async () => {
  const p = params({ custom_data: { package: 5000 } });
  const rsp = await payInOverlay(p);
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.equal(rsp.imp_success, true);
  assert.match(rsp.imp_uid, /^imp_\d{12}$/);
  assert.equal(rsp.merchant_uid, p.merchant_uid);
  assert.equal(rsp.pay_method, 'card');
  assert.equal(rsp.paid_amount, 5000);
  assert.equal(rsp.status, 'paid');
  assert.equal(rsp.pg_provider, 'kcp');
  assert.ok(rsp.pg_tid, 'pg_tid');
  assert.ok(rsp.apply_num, 'apply_num');
  const { status, json } = await getPayment(rsp.imp_uid);
  assert.equal(status, 200, JSON.stringify(json));
  assert.equal(json.response.status, 'paid');
  assert.equal(json.response.amount, p.amount);
  assert.equal(json.response.merchant_uid, p.merchant_uid);
  assert.equal(json.response.pay_method, 'card');
  assert.equal(json.response.custom_data, JSON.stringify(p.custom_data));
  assert.equal(json.response.buyer_name, p.buyer_name);
  // The card's issuer code, as REST names it; no bank on a card payment.
  assert.ok(json.response.card_code, JSON.stringify(json.response));
  assert.equal(rsp.card_code, json.response.card_code);
  assert.equal(rsp.bank_name, null);
});

test('buyer cancel inside the window: callback with success false', { timeout: 90_000 }, async () => {
  const p = params();
  const rsp = await payInOverlay(p, (frame) => frame.locator('#cancel').click());
  assert.equal(rsp.success, false, JSON.stringify(rsp));
  assert.equal(rsp.imp_success, false);
  assert.equal(rsp.merchant_uid, p.merchant_uid);
  // KCP's code for the buyer's cancel, passed on as iamport passes the PG's (the close button's too).
  assert.equal(rsp.error_code, '3001', JSON.stringify(rsp));
  assert.equal(rsp.error_msg, '사용자가 결제를 취소하였습니다.');
  // iamport's failure rsp names the payment: the merchant verifies it failed at the gateway.
  assert.match(rsp.imp_uid, /^imp_\d{12}$/, JSON.stringify(rsp));
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.status, 'failed');
});

test('the overlay close button: the session is cancelled at the gateway, callback success false', { timeout: 90_000 }, async () => {
  const p = params();
  const rsp = await payInOverlay(p, async (frame) => {
    await frame.locator('#card_no').waitFor(); // the KCP window is up
    await frame.owner().page().locator('#openport-close').click();
  });
  assert.equal(rsp.success, false, JSON.stringify(rsp));
  assert.equal(rsp.merchant_uid, p.merchant_uid);
  // The same answer as a close inside KCP's window: the same event for the merchant.
  assert.equal(rsp.error_code, '3001', JSON.stringify(rsp));
  assert.equal(rsp.error_msg, '사용자가 결제를 취소하였습니다.');
  assert.match(rsp.imp_uid, /^imp_\d{12}$/, JSON.stringify(rsp));
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.status, 'failed');
});

test('the overlay frame reloaded after the payment ended elsewhere: one callback with the outcome as recorded', { timeout: 90_000 }, async () => {
  const p = params();
  let recorded;
  const rsp = await payInOverlay(p, async (frame, page) => {
    await frame.locator('#card_no').waitFor(); // the KCP window is up
    const handOff = page.frame({ name: 'openport-frame' });
    const startUrl = handOff.url();
    const session = new URL(startUrl).pathname.split('/').pop();
    // The window ends without this page (the buyer's other tab, say): the gateway records the
    // cancel, and the overlay still shows KCP's window.
    const res = await fetch(`${BASE}/checkout/session/${encodeURIComponent(session)}/cancel`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}',
      signal: AbortSignal.timeout(20_000),
    });
    recorded = (await res.json()).response;
    // The frame is reloaded: the hand-off page of an ended window hands the payment as recorded
    // to this page, as the window's own end does, instead of a dead end the buyer must close.
    // Its message ends the checkout, which takes the frame away: no waiting for its load.
    await handOff.goto(startUrl, { waitUntil: 'commit' }).catch((e) => {
      if (!/detached/i.test(String(e))) throw e;
    });
  });
  assert.equal(rsp.success, false, JSON.stringify(rsp));
  assert.equal(rsp.imp_uid, recorded.imp_uid);
  assert.equal(rsp.merchant_uid, p.merchant_uid);
  assert.equal(rsp.status, 'failed');
  assert.equal(rsp.error_code, recorded.error_code);
  assert.equal(rsp.error_msg, recorded.error_msg);
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.status, 'failed');
});

test('the close button clicked while the approval is in flight: one callback, paid, as REST says', { timeout: 120_000 }, async () => {
  const p = params({ amount: 6000 });
  let origin;
  try {
    const rsp = await payInOverlay(p, async (frame, page) => {
      await frame.locator('#card_no').waitFor(); // the KCP window is up
      origin = sandboxOrigin(page);
      // KCP takes 4 s to approve: the payment is `pending` at the gateway meanwhile.
      await sandbox(origin, 'POST', '/_sandbox/faults', {
        path: '/gw/enc/v1/payment', fault: { kind: 'delay', ms: 4000 },
      });
      const returned = page.waitForRequest((r) => r.url().includes('/checkout/kcp/return'), { timeout: 20_000 });
      await completeWindow(frame, 'card');
      await returned; // the window posted its result to Ret_URL: the gateway is approving
      await page.waitForTimeout(500);
      await page.locator('#openport-close').click();
    });
    assert.equal(rsp.success, true, JSON.stringify(rsp));
    assert.equal(rsp.imp_success, true);
    assert.equal(rsp.status, 'paid');
    assert.equal(rsp.merchant_uid, p.merchant_uid);
    assert.equal(rsp.paid_amount, 6000);
    const { json } = await getPayment(rsp.imp_uid);
    assert.equal(json.response.status, 'paid');
    assert.equal(json.response.amount, 6000);
  } finally {
    if (origin) await sandbox(origin, 'DELETE', '/_sandbox/faults');
  }
});

test('PC: the window result posted twice while the approval is slow: one callback, paid, as REST says', { timeout: 120_000 }, async () => {
  const p = params({ amount: 7000 });
  let origin;
  const posts = [];
  try {
    const rsp = await payInOverlay(p, async (frame, page) => {
      await frame.locator('#card_no').waitFor(); // the KCP window is up
      origin = sandboxOrigin(page);
      // KCP takes 3 s to approve: the payment is `pending` at the gateway meanwhile.
      await sandbox(origin, 'POST', '/_sandbox/faults', {
        path: '/gw/enc/v1/payment', fault: { kind: 'delay', ms: 3000 },
      });
      page.on('request', (r) => { if (r.url().includes('/checkout/kcp/return')) posts.push(r.method()); });
      // The hand-off page's m_Completepayment posts the form a second time shortly after the first
      // (a double submit): the frame shows the answer to the second post.
      await page.frame({ name: 'openport-frame' }).evaluate(() => {
        const complete = window.m_Completepayment;
        window.m_Completepayment = function (form, close) {
          complete(form, close);
          window.setTimeout(() => document.getElementById('order_info').submit(), 300);
        };
      });
      await completeWindow(frame, 'card');
    });
    assert.equal(posts.length, 2, `the result was posted twice: ${posts}`);
    assert.equal(rsp.success, true, JSON.stringify(rsp));
    assert.equal(rsp.imp_success, true);
    assert.equal(rsp.status, 'paid');
    assert.equal(rsp.merchant_uid, p.merchant_uid);
    assert.equal(rsp.paid_amount, 7000);
    const { json } = await getPayment(rsp.imp_uid);
    assert.equal(json.response.status, 'paid');
    assert.equal(json.response.amount, 7000);
  } finally {
    if (origin) await sandbox(origin, 'DELETE', '/_sandbox/faults');
  }
});

test('an already-paid merchant_uid is refused before the window', { timeout: 60_000 }, async () => {
  const mid = uid('paid');
  const paid = await payKeyIn(mid, 1000);
  assert.equal(paid.json.code, 0, JSON.stringify(paid.json));
  const rsp = await refused(params({ merchant_uid: mid, amount: 1000 }));
  assert.equal(rsp.success, false);
  assert.equal(rsp.imp_success, false);
  assert.equal(rsp.imp_uid, null);
  assert.equal(rsp.merchant_uid, mid);
  assert.ok(rsp.error_msg);
  const { json } = await getPayment(paid.json.response.imp_uid);
  assert.equal(json.response.status, 'paid');
});

test('a prepared amount that differs is refused before the window', { timeout: 60_000 }, async () => {
  const mid = uid('prep');
  const prepared = await prepare(mid, 1000);
  assert.equal(prepared.json.code, 0, JSON.stringify(prepared.json));
  const rsp = await refused(params({ merchant_uid: mid, amount: 900 }));
  assert.equal(rsp.success, false);
  assert.equal(rsp.merchant_uid, mid);
  assert.ok(rsp.error_msg);
  // Refused before anything is written: no payment to name, none under the merchant_uid.
  assert.equal(rsp.imp_uid, null, JSON.stringify(rsp));
  const found = await rest('GET', `/payments/find/${encodeURIComponent(mid)}`, undefined, await token());
  assert.equal(found.status, 404, JSON.stringify(found.json));
});

test('a prepared amount that matches goes through', { timeout: 90_000 }, async () => {
  const mid = uid('prep-ok');
  assert.equal((await prepare(mid, 3000)).json.code, 0);
  const rsp = await payInOverlay(params({ merchant_uid: mid, amount: 3000 }));
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.equal(rsp.paid_amount, 3000);
});

for (const [path, script] of Object.entries(SCRIPT_PATHS)) {
  test(`the SDK loaded from iamport's path /${script} pays through the same gateway`, { timeout: 90_000 }, async () => {
    const served = await fetch(`${BASE}/${script}`);
    assert.equal(served.status, 200);
    assert.match(served.headers.get('content-type'), /javascript/);
    assert.equal(await served.text(), await (await fetch(`${BASE}/js/iamport.js`)).text());
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(20_000);
    try {
      await page.goto(`${merchant.origin}${path}`);
      const p = params();
      await page.evaluate((x) => window.pay(x), p);
      await page.locator('#openport-overlay #openport-frame').waitFor();
      await completeWindow(windowFrame(page), 'card');
      const [rsp] = await callbacks(page);
      assert.equal(rsp.success, true, JSON.stringify(rsp));
      assert.equal(rsp.merchant_uid, p.merchant_uid);
    } finally {
      await context.close();
    }
  });
}

test('a request_pay without merchant_uid is given one, named in the rsp', { timeout: 90_000 }, async () => {
  const p = params({ amount: 1100 });
  delete p.merchant_uid;
  const rsp = await payInOverlay(p);
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.match(rsp.merchant_uid, /^mid_\d+_[0-9a-f]{8}$/);
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.merchant_uid, rsp.merchant_uid);
});

test('buyer_name and custom_data holding </script> and <!--<script> reach the callback unchanged', { timeout: 90_000 }, async () => {
  const buyerName = '홍</script><!--<script>길동\u2028';
  const customData = { note: '</script><script>window.__injected = true</script><!--<script>', amp: 'a&b' };
  const rsp = await payInOverlay(params({ buyer_name: buyerName, custom_data: customData }));
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.equal(rsp.buyer_name, buyerName);
  assert.deepEqual(rsp.custom_data, customData);
});

test('custom_data passed as an object comes back to the callback as that object; REST keeps its JSON text', { timeout: 90_000 }, async () => {
  // iamport pages read fields straight off it after paying (`rsp.custom_data.productId`).
  const p = params({ custom_data: { productId: 42, items: [1, 2] } });
  const rsp = await payInOverlay(p);
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.deepEqual(rsp.custom_data, { productId: 42, items: [1, 2] });
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.custom_data, '{"productId":42,"items":[1,2]}');
});

test('bank transfer in the window', { timeout: 90_000 }, async () => {
  const p = params({ pay_method: 'trans' });
  const rsp = await payInOverlay(p);
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.equal(rsp.pay_method, 'trans');
  assert.equal(rsp.status, 'paid');
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.status, 'paid');
  assert.equal(json.response.pay_method, 'trans');
  assert.equal(json.response.amount, p.amount);
  // The rsp names the bank as REST does (iamport pages forward rsp.bank_name to their server).
  assert.ok(json.response.bank_name, JSON.stringify(json.response));
  assert.equal(rsp.bank_name, json.response.bank_name);
  assert.equal(rsp.card_code, null);
});

test('phone payment in the window', { timeout: 90_000 }, async () => {
  const p = params({ pay_method: 'phone', amount: 1000 });
  const rsp = await payInOverlay(p);
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.equal(rsp.pay_method, 'phone');
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.status, 'paid');
  assert.equal(json.response.amount, 1000);
});

test('virtual account: issued, rsp status ready with the account', { timeout: 90_000 }, async () => {
  const p = params({ pay_method: 'vbank', amount: 10000 });
  const rsp = await payInOverlay(p);
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.equal(rsp.pay_method, 'vbank');
  assert.equal(rsp.status, 'ready');
  assert.equal(rsp.paid_amount, 10000, 'iamport: 가상계좌 입금예정 금액');
  assert.ok(rsp.vbank_num, 'vbank_num');
  assert.ok(rsp.vbank_name, 'vbank_name');
  assert.ok(rsp.vbank_date > 0, 'vbank_date');
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.status, 'ready');
  assert.equal(json.response.vbank_num, rsp.vbank_num);
});

test('mobile: full-page window, then m_redirect_url with the result appended by &', { timeout: 90_000 }, async () => {
  const { page, context } = await openPage({ userAgent: MOBILE_UA, viewport: { width: 390, height: 844 } });
  try {
    const p = params({ m_redirect_url: `${merchant.origin}/done?order=42` });
    await page.evaluate((x) => window.pay(x), p);
    await page.waitForURL((url) => url.origin !== merchant.origin);
    assert.equal(await page.locator('#openport-overlay').count(), 0);
    await completeWindow(page, 'card');
    await page.waitForURL((url) => url.href.startsWith(`${merchant.origin}/done`), { timeout: 60_000 });
    assert.match(page.url(), /\/done\?order=42&/);
    const q = new URL(page.url()).searchParams;
    assert.equal(q.get('order'), '42');
    assert.equal(q.get('merchant_uid'), p.merchant_uid);
    assert.equal(q.get('imp_success'), 'true');
    assert.match(q.get('imp_uid'), /^imp_\d{12}$/);
    const { json } = await getPayment(q.get('imp_uid'));
    assert.equal(json.response.status, 'paid');
    assert.equal(json.response.amount, p.amount);
    assert.equal(json.response.channel, 'mobile');
  } finally {
    await context.close();
  }
});

test('mobile: buyer cancel comes back with imp_success=false and the error', { timeout: 90_000 }, async () => {
  const { page, context } = await openPage({ userAgent: MOBILE_UA });
  try {
    const p = params({ m_redirect_url: `${merchant.origin}/done?order=43` });
    await page.evaluate((x) => window.pay(x), p);
    await page.waitForURL((url) => url.origin !== merchant.origin);
    await page.locator('#cancel').click();
    await page.waitForURL((url) => url.href.startsWith(`${merchant.origin}/done`), { timeout: 60_000 });
    const q = new URL(page.url()).searchParams;
    assert.equal(q.get('order'), '43');
    assert.equal(q.get('merchant_uid'), p.merchant_uid);
    assert.equal(q.get('imp_success'), 'false');
    assert.equal(q.get('error_code'), '3001');
    assert.equal(q.get('error_msg'), '사용자가 결제를 취소하였습니다.');
  } finally {
    await context.close();
  }
});

test('mobile: an already-paid merchant_uid is told to the callback on the page; nobody reading it, to m_redirect_url', { timeout: 60_000 }, async () => {
  const mid = uid('paid-m');
  assert.equal((await payKeyIn(mid, 1000)).json.code, 0);
  const { page, context } = await openPage({ userAgent: MOBILE_UA });
  try {
    const p = params({ merchant_uid: mid, amount: 1000, m_redirect_url: `${merchant.origin}/done?order=44` });
    await page.evaluate((x) => window.pay(x), p);
    const [rsp] = await callbacks(page, 1, 20_000);
    assert.equal(rsp.success, false);
    assert.equal(rsp.imp_uid, null);
    assert.equal(rsp.merchant_uid, mid);
    assert.ok(rsp.error_msg);
    assert.equal(new URL(page.url()).pathname, '/pay');
    await page.evaluate((x) => window.pay(x, false), p); // no callback, the Promise dropped
    await page.waitForURL((url) => url.href.startsWith(`${merchant.origin}/done`));
    const q = new URL(page.url()).searchParams;
    assert.equal(q.get('imp_success'), 'false');
    assert.equal(q.get('imp_uid'), '');
    assert.equal(q.get('merchant_uid'), mid);
    assert.equal(q.get('error_msg'), rsp.error_msg);
  } finally {
    await context.close();
  }
});

test('the demo point shop at / pays and shows the verified result', { timeout: 90_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  try {
    const res = await page.goto(`${BASE}/`);
    assert.equal(res.status(), 200);
    await page.locator('#package-5000').check();
    await page.locator('#method-card').check();
    await page.locator('#pay-button').click();
    await completeWindow(windowFrame(page), 'card');
    await page.locator('#result[data-status="paid"]').waitFor({ timeout: 60_000 });
    const text = await page.locator('#result').textContent();
    const impUid = text.match(/imp_\d{12}/)?.[0];
    assert.ok(impUid, text);
    assert.match(text, /paid/);
    assert.equal(await page.locator('#result').getAttribute('data-verified'), 'true');
    const { json } = await getPayment(impUid);
    assert.equal(json.response.status, 'paid');
    assert.equal(json.response.amount, 5000);
  } finally {
    await context.close();
  }
});
