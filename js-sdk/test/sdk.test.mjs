// The SDK's own behaviour in a real Chromium, against a stub of the gateway's checkout endpoints
// (test/lib/stub-gateway.mjs): runs without openport. The merchant page is on another origin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startMerchant, callbacks, exactlyOnce, MOBILE_UA, uid } from './lib/harness.mjs';
import { startStubGateway } from './lib/stub-gateway.mjs';

let browser;
let gateway;
let merchant;

before(async () => {
  gateway = await startStubGateway();
  merchant = await startMerchant(gateway.url);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await merchant?.close();
  await gateway?.close();
});

const params = (extra = {}) => ({
  pg: 'kcp', pay_method: 'card', merchant_uid: uid('sdk'), name: '포인트 1,000', amount: 1000,
  buyer_name: '홍길동', buyer_tel: '010-1234-5678', buyer_email: 'buyer@example.com', ...extra,
});

async function openPage(options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(`${merchant.origin}${options.path ?? '/pay'}`);
  return { page, context, errors };
}

test('request_pay before IMP.init calls back with an error and opens nothing', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage({ path: '/pay-no-init' });
  const before = gateway.requests.length;
  await page.evaluate((p) => window.pay(p), params());
  const [rsp] = await callbacks(page, 1, 10_000);
  assert.equal(rsp.success, false);
  assert.equal(rsp.imp_success, false);
  assert.equal(rsp.imp_uid, null);
  assert.match(rsp.error_msg, /IMP\.init을 먼저 호출해 주세요/);
  assert.equal(await page.locator('#openport-overlay').count(), 0);
  assert.equal(gateway.requests.length, before);
  await context.close();
});

test('PC: the overlay loads start_url, the final message closes it and calls back once', { timeout: 30_000 }, async () => {
  const { page, context, errors } = await openPage();
  const p = params({ kcpProducts: [{ orderNumber: 'o1', name: 'pts', quantity: 1, amount: 1000 }],
    bypass: { shop_user_id: 'user123' }, custom_data: { package: 1000 } });
  await page.evaluate((x) => window.pay(x), p);
  await page.locator('#openport-overlay #openport-frame').waitFor();
  assert.equal(await page.locator('#openport-overlay').count(), 1);
  assert.equal(await page.locator('#openport-close').count(), 1);
  const sent = gateway.requests.at(-1);
  assert.match(sent.contentType, /^application\/json/);
  assert.equal(sent.body.imp_code, 'imp00000000');
  assert.equal(sent.body.mobile, false);
  assert.equal(sent.body.page_url, `${merchant.origin}/pay`);
  assert.deepEqual(sent.body.params, p);
  const frame = page.frameLocator('#openport-frame');
  assert.equal(await frame.locator('#kind').textContent(), 'pc');
  await frame.locator('#complete-twice').click();
  const [rsp] = await callbacks(page);
  assert.equal(rsp.success, true);
  assert.equal(rsp.imp_success, true);
  assert.match(rsp.imp_uid, /^imp_\d{12}$/);
  assert.equal(rsp.merchant_uid, p.merchant_uid);
  assert.equal(rsp.paid_amount, 1000);
  assert.equal(await exactlyOnce(page), 1);
  assert.equal(await page.locator('#openport-overlay').count(), 0);
  assert.equal(await page.evaluate(() => document.body.style.overflow), '');
  assert.deepEqual(errors, []);
  await context.close();
});

test('custom_data that is JSON object or array text reaches the callback parsed; other text unchanged', { timeout: 30_000 }, async () => {
  // The gateway answers custom_data as the JSON text it stores (REST keeps it so); iamport pages
  // read it as the object they passed, also when they passed it as JSON text.
  const { page, context, errors } = await openPage();
  const cases = [
    [{ productId: 42, items: [1, 2] }, { productId: 42, items: [1, 2] }],
    ['{"reservNum":"R-1"}', { reservNum: 'R-1' }],
    [[{ id: 1 }, { id: 2 }], [{ id: 1 }, { id: 2 }]],
    ['abc', 'abc'],
    ['42', '42'],
    ['"quoted"', '"quoted"'],
    ['null', 'null'],
    ['{not json', '{not json'],
    ['', ''],
  ];
  for (const [i, [given, expected]] of cases.entries()) {
    await page.evaluate((x) => window.pay(x), params({ custom_data: given }));
    await page.frameLocator('#openport-frame').locator('#complete').click();
    const rsps = await callbacks(page, i + 1);
    assert.deepEqual(rsps[i].custom_data, expected, JSON.stringify(given));
  }
  // No custom_data: null, as the gateway sends it.
  await page.evaluate((x) => window.pay(x), params());
  await page.frameLocator('#openport-frame').locator('#complete').click();
  const rsps = await callbacks(page, cases.length + 1);
  assert.equal(rsps.at(-1).custom_data, null);
  assert.deepEqual(errors, []);
  await context.close();
});

test('messages from another origin or another session are ignored', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage();
  await page.evaluate((x) => window.pay(x), params());
  await page.locator('#openport-frame').waitFor();
  await page.evaluate(() => window.postMessage({ source: 'openport', rsp: { success: true, imp_uid: 'imp_forged' } }, '*'));
  await page.frameLocator('#openport-frame').locator('#wrong-session').click();
  await page.waitForTimeout(500);
  assert.equal(await page.evaluate(() => window.__rsps.length), 0);
  assert.equal(await page.locator('#openport-overlay').count(), 1);
  await page.frameLocator('#openport-frame').locator('#complete').click();
  const [rsp] = await callbacks(page);
  assert.notEqual(rsp.imp_uid, 'imp_forged');
  await context.close();
});

test('the close button cancels the session at the gateway and calls back with success false', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage();
  await page.evaluate((x) => window.pay(x), params());
  await page.locator('#openport-frame').waitFor();
  const sent = gateway.requests.at(-1);
  await page.locator('#openport-close').click();
  const [rsp] = await callbacks(page);
  assert.equal(rsp.success, false);
  assert.equal(rsp.imp_success, false);
  assert.equal(rsp.merchant_uid, sent.body.params.merchant_uid);
  assert.match(rsp.imp_uid, /^imp_/);
  assert.equal(gateway.cancels.length >= 1, true);
  assert.equal(await page.locator('#openport-overlay').count(), 0);
  assert.equal(await exactlyOnce(page), 1);
  await context.close();
});

/** Waits until the stub has had `n` cancel calls more than `before`. */
async function cancelCalls(before, n, timeout = 10_000) {
  const until = Date.now() + timeout;
  while (gateway.cancels.length - before < n) {
    if (Date.now() > until) throw new Error(`${gateway.cancels.length - before} cancel calls, waited for ${n}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('close while the approval is in flight: F500 keeps the overlay, the next poll\'s paid rsp is the one callback', { timeout: 30_000 }, async () => {
  const { page, context, errors } = await openPage();
  const p = params({ merchant_uid: uid('pending1') });
  await page.evaluate((x) => window.pay(x), p);
  await page.locator('#openport-frame').waitFor();
  const before = gateway.cancels.length;
  await page.locator('#openport-close').click();
  await cancelCalls(before, 1);
  // The gateway said "checking": no callback yet, the overlay and the frame stay, the button stays off.
  assert.equal(await page.evaluate(() => window.__rsps.length), 0, 'called back on the F500 answer');
  assert.equal(await page.locator('#openport-overlay #openport-frame').count(), 1, 'the overlay went');
  assert.equal(await page.locator('#openport-close').isDisabled(), true);
  await page.locator('#openport-status', { hasText: '결제 결과를 확인 중입니다' }).waitFor();
  const [rsp] = await callbacks(page, 1, 15_000);
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.equal(rsp.imp_success, true);
  assert.equal(rsp.status, 'paid');
  assert.equal(rsp.merchant_uid, p.merchant_uid);
  assert.equal(gateway.cancels.length - before, 2, 'one poll after the F500 answer');
  assert.equal(await exactlyOnce(page), 1);
  assert.equal(await page.locator('#openport-overlay').count(), 0);
  assert.equal(await page.evaluate(() => document.body.style.overflow), '');
  assert.deepEqual(errors, []);
  await context.close();
});

test('close while the approval is in flight: the frame\'s final message wins over the polling, once', { timeout: 30_000 }, async () => {
  const { page, context, errors } = await openPage();
  await page.evaluate((x) => window.pay(x), params({ merchant_uid: uid('pending99') }));
  await page.locator('#openport-frame').waitFor();
  const before = gateway.cancels.length;
  await page.locator('#openport-close').click();
  await cancelCalls(before, 2); // the F500 answer and one poll (F500 again)
  assert.equal(await page.evaluate(() => window.__rsps.length), 0);
  await page.frameLocator('#openport-frame').locator('#complete').click();
  const [rsp] = await callbacks(page);
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.equal(rsp.status, 'paid');
  const polled = gateway.cancels.length;
  await page.waitForTimeout(1_500);
  assert.equal(gateway.cancels.length, polled, 'the polling went on after the callback');
  assert.equal(await exactlyOnce(page), 1);
  assert.equal(await page.locator('#openport-overlay').count(), 0);
  assert.deepEqual(errors, []);
  await context.close();
});

test('the window answering F500 (a double-submitted result) keeps the overlay and polls the read-only status: one callback, paid', { timeout: 30_000 }, async () => {
  const { page, context, errors } = await openPage();
  const p = params({ merchant_uid: uid('checking1') });
  await page.evaluate((x) => window.pay(x), p);
  await page.locator('#openport-frame').waitFor();
  const session = new URL(await page.locator('#openport-frame').getAttribute('src')).pathname.split('/').pop();
  const cancels = gateway.cancels.length;
  await page.frameLocator('#openport-frame').locator('#complete-checking').click();
  // F500 is "being checked", not the end: no callback, the overlay stays, its close button goes off.
  await page.locator('#openport-status', { hasText: '결제 결과를 확인 중입니다' }).waitFor();
  assert.equal(await page.evaluate(() => window.__rsps.length), 0, 'called back on the F500 answer');
  assert.equal(await page.locator('#openport-overlay #openport-frame').count(), 1, 'the overlay went');
  assert.equal(await page.locator('#openport-close').isDisabled(), true);
  const [rsp] = await callbacks(page, 1, 15_000);
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.equal(rsp.imp_success, true);
  assert.equal(rsp.status, 'paid');
  assert.equal(rsp.merchant_uid, p.merchant_uid);
  assert.equal(gateway.statuses.filter((t) => t === session).length, 2, 'F500 once, then paid');
  assert.equal(gateway.cancels.length, cancels, 'the cancel call, which fails a ready payment, was never made');
  assert.equal(await exactlyOnce(page), 1);
  assert.equal(await page.locator('#openport-overlay').count(), 0);
  assert.deepEqual(errors, []);
  await context.close();
});

for (const [kind, prefix] of [['never answers', 'cancel-drop'], ['answers an error page', 'cancel-garbage']]) {
  test(`a cancel call that ${kind} is retried, then ends with F500 "checking" (not F_CANCEL)`, { timeout: 40_000 }, async () => {
    const { page, context, errors } = await openPage();
    const p = params({ merchant_uid: uid(prefix) });
    await page.evaluate((x) => window.pay(x), p);
    await page.locator('#openport-frame').waitFor();
    const before = gateway.cancels.length;
    await page.locator('#openport-close').click();
    const [rsp] = await callbacks(page, 1, 30_000);
    assert.equal(rsp.success, false);
    assert.equal(rsp.imp_success, false);
    assert.equal(rsp.error_code, 'F500', JSON.stringify(rsp));
    assert.notEqual(rsp.error_code, 'F_CANCEL');
    assert.match(rsp.imp_uid, /^imp_\d{12}$/);
    assert.match(rsp.error_msg, /결제 결과를 확인 중입니다/);
    assert.ok(rsp.error_msg.includes(rsp.imp_uid), rsp.error_msg);
    assert.doesNotMatch(rsp.error_msg, /취소/);
    assert.equal(rsp.merchant_uid, p.merchant_uid);
    assert.ok(gateway.cancels.length - before >= 2, 'the cancel call was retried');
    assert.equal(await exactlyOnce(page), 1);
    assert.equal(await page.locator('#openport-overlay').count(), 0);
    assert.deepEqual(errors, []);
    await context.close();
  });
}

test('an F500 the SDK makes itself names the merchant_uid openport generated when the page gave none', { timeout: 40_000 }, async () => {
  const { page, context, errors } = await openPage();
  const { merchant_uid: _none, ...p } = params({ name: uid('cancel-drop') });
  await page.evaluate((x) => window.pay(x), p);
  await page.locator('#openport-frame').waitFor();
  assert.equal(gateway.requests.at(-1).body.params.merchant_uid, undefined);
  await page.locator('#openport-close').click(); // the cancel call never answers: the SDK gives up
  const [rsp] = await callbacks(page, 1, 30_000);
  assert.equal(rsp.error_code, 'F500', JSON.stringify(rsp));
  assert.match(rsp.merchant_uid ?? '', /^nouid_[0-9a-f]{12}$/, JSON.stringify(rsp));
  assert.match(rsp.imp_uid, /^imp_\d{12}$/);
  assert.equal(await exactlyOnce(page), 1);
  assert.deepEqual(errors, []);
  await context.close();
});

test('Escape leaves the window open and calls nothing back', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage();
  await page.evaluate(() => { window.__escapes = 0; document.body.addEventListener('keydown', (e) => { if (e.key === 'Escape') window.__escapes += 1; }); });
  await page.evaluate((x) => window.pay(x), params());
  await page.locator('#openport-frame').waitFor();
  await page.keyboard.press('Escape');
  await page.waitForTimeout(300);
  assert.equal(await page.locator('#openport-overlay').count(), 1);
  assert.equal(await page.evaluate(() => window.__rsps.length), 0);
  assert.equal(await page.evaluate(() => window.__escapes), 0);
  await page.frameLocator('#openport-frame').locator('#complete').click();
  await callbacks(page);
  await context.close();
});

test('one checkout at a time: a second request_pay is refused and the first one goes on', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage();
  const count = gateway.requests.length;
  const first = params();
  await page.evaluate((x) => window.pay(x), first);
  await page.evaluate((x) => window.pay(x), params());
  const [busy] = await callbacks(page);
  assert.equal(busy.success, false);
  assert.equal(busy.error_code, 'F_IN_PROGRESS');
  assert.equal(busy.error_msg, '이미 결제창이 열려 있거나 여는 중입니다. 진행 중인 결제를 마친 뒤 다시 시도해 주세요.');
  await page.locator('#openport-frame').waitFor();
  assert.equal(await page.locator('#openport-overlay').count(), 1);
  assert.equal(gateway.requests.length, count + 1);
  await page.frameLocator('#openport-frame').locator('#complete').click();
  const rsps = await callbacks(page, 2);
  assert.equal(rsps[1].success, true);
  assert.equal(rsps[1].merchant_uid, first.merchant_uid);
  // and after it ends, the next checkout opens normally
  await page.evaluate((x) => window.pay(x), params());
  await page.locator('#openport-frame').waitFor();
  await page.frameLocator('#openport-frame').locator('#complete').click();
  assert.equal((await callbacks(page, 3))[2].success, true);
  assert.equal(await exactlyOnce(page), 3);
  await context.close();
});

test('a second request_pay for the same merchant_uid while it runs sends nothing and gets the first one\'s outcome', { timeout: 30_000 }, async () => {
  const { page, context, errors } = await openPage();
  const count = gateway.requests.length;
  const p = params();
  await page.evaluate((x) => window.pay(x), p);
  await page.evaluate((x) => window.pay(x), p); // a double click
  await page.locator('#openport-frame').waitFor();
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => window.__rsps.length), 0, 'no failure reported for the order being paid');
  assert.equal(gateway.requests.length, count + 1, 'one checkout request');
  await page.frameLocator('#openport-frame').locator('#complete').click();
  const rsps = await callbacks(page, 2);
  for (const rsp of rsps) {
    assert.equal(rsp.success, true, JSON.stringify(rsp));
    assert.equal(rsp.merchant_uid, p.merchant_uid);
    assert.equal(rsp.imp_uid, rsps[0].imp_uid);
  }
  assert.equal(await exactlyOnce(page), 2, 'each call called back once');
  assert.deepEqual(errors, []);
  await context.close();
});

test('mobile: taps while the page leaves for the window send no second checkout request', { timeout: 30_000 }, async () => {
  const { page, context, errors } = await openPage({ userAgent: MOBILE_UA });
  const before = gateway.requests.length;
  const starts = gateway.starts.length;
  const p = params({ merchant_uid: uid('slow-start'), m_redirect_url: `${merchant.origin}/done` });
  const other = params({ m_redirect_url: `${merchant.origin}/done` });
  // The window's page takes 3 s to come (the stub's slow-start): the merchant page stays up and the
  // buyer keeps tapping, every 100 ms for 2 s, then once for another order (a page that makes a new
  // merchant_uid per tap). The page reports each callback to its server (it is about to unload).
  await page.evaluate(({ p, other, hooks }) => {
    const report = (tap) => (rsp) => fetch(hooks, {
      method: 'POST', keepalive: true, headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ tap, merchant_uid: rsp.merchant_uid, error_code: rsp.error_code, success: rsp.success }),
    });
    IMP.request_pay(p, report('first'));
    for (let i = 1; i <= 20; i++) setTimeout(() => IMP.request_pay(p, report(`again-${i}`)), i * 100);
    setTimeout(() => IMP.request_pay(other, report('other')), 2_100);
  }, { p, other, hooks: `${merchant.origin}/hooks` });
  const refused = await merchant.hook((h) => h.tap === 'other', 10_000);
  assert.equal(refused.error_code, 'F_IN_PROGRESS');
  assert.equal(refused.merchant_uid, other.merchant_uid);
  assert.equal(gateway.starts.length, starts + 1, 'the page was on its way to the window meanwhile');
  await page.waitForURL(`${gateway.origin}/checkout/session/**`);
  assert.equal(await page.locator('#kind').textContent(), 'mobile');
  assert.equal(gateway.requests.length - before, 1, 'one checkout request: the window the buyer goes to stays the order\'s');
  assert.deepEqual(merchant.hooks.filter((h) => h.tap !== 'other' && h.merchant_uid === p.merchant_uid), [],
    'no callback for the order on its way to its window');
  assert.deepEqual(errors, []);
  await context.close();
});

test('without a callback nothing breaks', { timeout: 30_000 }, async () => {
  const { page, context, errors } = await openPage();
  await page.evaluate((x) => window.pay(x, false), params());
  await page.locator('#openport-frame').waitFor();
  await page.frameLocator('#openport-frame').locator('#complete').click();
  await page.locator('#openport-overlay').waitFor({ state: 'detached' });
  await page.evaluate((x) => window.pay(x, false), params({ merchant_uid: uid('refuse') }));
  await page.waitForTimeout(300);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a refusal before the window calls back with the gateway message and imp_uid null', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage();
  const p = params({ merchant_uid: uid('refuse') });
  await page.evaluate((x) => window.pay(x), p);
  const [rsp] = await callbacks(page);
  assert.equal(rsp.success, false);
  assert.equal(rsp.imp_uid, null);
  assert.equal(rsp.merchant_uid, p.merchant_uid);
  assert.equal(rsp.error_msg, '이미 결제가 완료된 주문번호입니다.');
  assert.equal(rsp.error_code, '1');
  assert.equal(await page.locator('#openport-overlay').count(), 0);
  await context.close();
});

test('an unknown merchant code (HTTP 4xx envelope) is reported through the callback', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage();
  await page.evaluate(() => IMP.init('imp_unknown'));
  await page.evaluate((x) => window.pay(x), params());
  const [rsp] = await callbacks(page);
  assert.equal(rsp.success, false);
  assert.equal(rsp.error_msg, '존재하지 않는 가맹점입니다.');
  await context.close();
});

test('a page that removes the overlay itself still gets one callback (cancelled)', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage();
  await page.evaluate((x) => window.pay(x), params());
  await page.locator('#openport-frame').waitFor();
  const cancels = gateway.cancels.length;
  await page.evaluate(() => document.getElementById('openport-overlay').remove());
  const [rsp] = await callbacks(page);
  assert.equal(rsp.success, false);
  assert.equal(gateway.cancels.length, cancels + 1);
  assert.equal(await exactlyOnce(page), 1);
  await context.close();
});

test('PC with m_redirect_url still uses the overlay and the callback', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage();
  await page.evaluate((x) => window.pay(x), params({ m_redirect_url: `${merchant.origin}/done?order=1` }));
  await page.locator('#openport-frame').waitFor();
  assert.equal(gateway.requests.at(-1).body.mobile, false);
  await page.frameLocator('#openport-frame').locator('#complete').click();
  assert.equal((await callbacks(page))[0].success, true);
  assert.equal(new URL(page.url()).pathname, '/pay');
  await context.close();
});

test('mobile: the page moves to start_url and comes back to m_redirect_url', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage({ userAgent: MOBILE_UA });
  const p = params({ m_redirect_url: `${merchant.origin}/done?order=42` });
  await page.evaluate((x) => window.pay(x), p);
  await page.waitForURL(`${gateway.origin}/checkout/session/**`);
  assert.equal(gateway.requests.at(-1).body.mobile, true);
  assert.equal(await page.locator('#kind').textContent(), 'mobile');
  await page.locator('#complete').click();
  await page.waitForURL(`${merchant.origin}/done?**`);
  assert.match(page.url(), /\/done\?order=42&imp_uid=/);
  const q = new URL(page.url()).searchParams;
  assert.equal(q.get('merchant_uid'), p.merchant_uid);
  assert.equal(q.get('imp_success'), 'true');
  await context.close();
});

test('mobile: a refusal before the window calls back, or resolves the Promise the page awaits, and the page stays', { timeout: 30_000 }, async () => {
  // iamport (seed 001 §2.1): on mobile the callback runs for a problem found before the page moves.
  const { page, context, errors } = await openPage({ userAgent: MOBILE_UA });
  const navigations = [];
  page.on('framenavigated', (frame) => { if (frame === page.mainFrame()) navigations.push(frame.url()); });
  const p = params({ merchant_uid: uid('refuse'), m_redirect_url: `${merchant.origin}/done?order=7` });
  await page.evaluate((x) => window.pay(x), p);
  const [rsp] = await callbacks(page, 1, 10_000);
  assert.equal(rsp.success, false);
  assert.equal(rsp.imp_uid, null);
  assert.equal(rsp.merchant_uid, p.merchant_uid);
  assert.equal(rsp.error_code, '1');
  assert.equal(rsp.error_msg, '이미 결제가 완료된 주문번호입니다.');
  const awaited = await page.evaluate(async (x) => { const r = await IMP.request_pay(x); return r; },
    params({ merchant_uid: uid('refuse'), m_redirect_url: `${merchant.origin}/done?order=8` }));
  assert.equal(awaited.success, false);
  assert.equal(awaited.error_msg, '이미 결제가 완료된 주문번호입니다.');
  const chained = await page.evaluate((x) => IMP.request_pay(x).then((r) => r.error_code),
    params({ merchant_uid: uid('refuse'), m_redirect_url: `${merchant.origin}/done?order=9` }));
  assert.equal(chained, '1');
  await page.waitForTimeout(500);
  assert.equal(new URL(page.url()).pathname, '/pay');
  assert.deepEqual(navigations, [], 'the page never moved');
  assert.equal(await exactlyOnce(page), 1);
  assert.deepEqual(errors, []);
  await context.close();
});

test('mobile: a refusal before the window that nobody reads (no callback, the Promise dropped) goes to m_redirect_url with imp_success=false', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage({ userAgent: MOBILE_UA });
  const p = params({ merchant_uid: uid('refuse'), m_redirect_url: `${merchant.origin}/done?order=7#top` });
  await page.evaluate((x) => window.pay(x, false), p);
  await page.waitForURL(`${merchant.origin}/done?**`);
  const url = new URL(page.url());
  assert.match(page.url(), /\/done\?order=7&imp_uid=&merchant_uid=/);
  assert.equal(url.hash, '#top');
  assert.equal(url.searchParams.get('order'), '7');
  assert.equal(url.searchParams.get('imp_uid'), '');
  assert.equal(url.searchParams.get('merchant_uid'), p.merchant_uid);
  assert.equal(url.searchParams.get('imp_success'), 'false');
  assert.equal(url.searchParams.get('error_code'), '1');
  assert.equal(url.searchParams.get('error_msg'), '이미 결제가 완료된 주문번호입니다.');
  // A browser without Promise: no callback means nobody reads it either.
  await page.goto(`${merchant.origin}/pay-no-init`);
  await page.evaluate((x) => { window.Promise = undefined; IMP.request_pay(x); },
    params({ m_redirect_url: `${merchant.origin}/done?order=10` }));
  await page.waitForURL(`${merchant.origin}/done?**`);
  const q = new URL(page.url()).searchParams;
  assert.equal(q.get('order'), '10');
  assert.equal(q.get('imp_success'), 'false');
  assert.equal(q.get('error_code'), 'F_NOT_INITIALIZED');
  await context.close();
});

test('mobile: a Promise the page only .catch()es is nobody\'s read: the refusal goes to m_redirect_url', { timeout: 30_000 }, async () => {
  // Vue 3 calls .catch on whatever a click handler returns; the Promise never rejects, so the
  // page still sees nothing and must be sent to m_redirect_url.
  const { page, context } = await openPage({ userAgent: MOBILE_UA });
  await page.evaluate((x) => { IMP.request_pay(x).catch(() => {}); },
    params({ merchant_uid: uid('refuse'), m_redirect_url: `${merchant.origin}/done?order=11` }));
  await page.waitForURL(`${merchant.origin}/done?**`);
  const q = new URL(page.url()).searchParams;
  assert.equal(q.get('order'), '11');
  assert.equal(q.get('imp_success'), 'false');
  await context.close();
});

test('under a Promise polyfill whose then builds on this.constructor, .then and a finally shim get the rsp', { timeout: 30_000 }, async () => {
  // promise-polyfill, es6-promise and older zone.js make then's next promise with
  // `new this.constructor(noop)`, and finally shims call `this.constructor.resolve`.
  const { page, context, errors } = await openPage();
  const got = await page.evaluate(async (x) => {
    const Native = Promise;
    function P(exec) {
      const self = this;
      self.done = false; self.value = undefined; self.queue = [];
      exec((v) => {
        if (self.done) return;
        self.done = true; self.value = v;
        setTimeout(() => self.queue.forEach((h) => h()), 0);
      }, () => {});
    }
    P.prototype.then = function (f) {
      const self = this;
      const next = new this.constructor(() => {});
      const run = () => {
        next.value = typeof f === 'function' ? f(self.value) : self.value;
        next.done = true;
        next.queue.forEach((h) => h());
      };
      if (self.done) setTimeout(run, 0); else self.queue.push(run);
      return next;
    };
    P.prototype.catch = function (r) { return this.then(null, r); };
    P.prototype.finally = function (f) {
      const C = this.constructor;
      return this.then((v) => C.resolve(f()).then(() => v));
    };
    P.resolve = (v) => new P((res) => res(v));
    window.Promise = P;
    try {
      return await new Native((resolve, reject) => {
        let finallyRan = false;
        const p = IMP.request_pay(x);
        p.finally(() => { finallyRan = true; });
        p.then((r) => setTimeout(() => resolve({ code: r.error_code, finallyRan }), 50));
        setTimeout(() => reject(new Error('no answer')), 10_000);
      });
    } finally {
      window.Promise = Native;
    }
  }, params({ merchant_uid: uid('refuse') }));
  assert.deepEqual(got, { code: '1', finallyRan: true });
  assert.deepEqual(errors, []);
  await context.close();
});

test('mobile: a relative m_redirect_url is the merchant page\'s and a javascript: one is never followed', { timeout: 30_000 }, async () => {
  const { page, context, errors } = await openPage({ userAgent: MOBILE_UA });
  await page.evaluate((x) => window.pay(x, false), params({ merchant_uid: uid('refuse'), m_redirect_url: 'done?order=8#top' }));
  await page.waitForURL(`${merchant.origin}/done?**`);
  const url = new URL(page.url());
  assert.equal(url.searchParams.get('order'), '8');
  assert.equal(url.searchParams.get('imp_success'), 'false');
  assert.equal(url.hash, '#top');
  await page.goto(`${merchant.origin}/pay`);
  await page.evaluate(() => { window.__hijacked = false; });
  await page.evaluate((x) => window.pay(x, false), params({ merchant_uid: uid('refuse'), m_redirect_url: 'javascript:window.__hijacked=true' }));
  await page.waitForTimeout(500);
  assert.equal(await page.evaluate(() => window.__hijacked), false);
  assert.equal(new URL(page.url()).pathname, '/pay');
  assert.deepEqual(errors, []);
  await context.close();
});

test('request_pay without a callback returns a Promise of the rsp; with one it returns undefined', { timeout: 30_000 }, async () => {
  const { page, context, errors } = await openPage();
  const p = params();
  const pending = page.evaluate((x) => {
    const returned = IMP.request_pay(x);
    window.__isPromise = returned instanceof Promise;
    return returned;
  }, p);
  await page.locator('#openport-frame').waitFor();
  assert.equal(await page.evaluate(() => window.__isPromise), true);
  await page.frameLocator('#openport-frame').locator('#complete').click();
  const rsp = await pending;
  assert.equal(rsp.success, true);
  assert.equal(rsp.merchant_uid, p.merchant_uid);
  // A refusal before the window resolves too (it never rejects: rsp.success says how it went).
  const refused = await page.evaluate((x) => IMP.request_pay(x), params({ merchant_uid: uid('refuse') }));
  assert.equal(refused.success, false);
  assert.equal(refused.error_msg, '이미 결제가 완료된 주문번호입니다.');
  const withCallback = await page.evaluate((x) => {
    const returned = IMP.request_pay(x, (r) => window.__rsps.push(r));
    return returned === undefined;
  }, params({ merchant_uid: uid('refuse') }));
  assert.equal(withCallback, true);
  await callbacks(page);
  assert.deepEqual(errors, []);
  await context.close();
});

test('IMP.agency is init with the tier code ignored', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage({ path: '/pay-no-init' });
  await page.evaluate(() => IMP.agency('imp00000000', 'tier-42'));
  await page.evaluate((x) => window.pay(x), params());
  await page.locator('#openport-frame').waitFor();
  assert.equal(gateway.requests.at(-1).body.imp_code, 'imp00000000');
  await page.frameLocator('#openport-frame').locator('#complete').click();
  assert.equal((await callbacks(page))[0].success, true);
  await context.close();
});

test('IMP.certification calls back with a failure saying openport does not verify identities', { timeout: 30_000 }, async () => {
  const { page, context, errors } = await openPage();
  const before = gateway.requests.length;
  const viaCallback = await page.evaluate(() => new Promise((resolve) => {
    IMP.certification({ merchant_uid: 'cert-1', popup: true }, resolve);
  }));
  assert.equal(viaCallback.success, false);
  assert.equal(viaCallback.imp_uid, null);
  assert.equal(viaCallback.merchant_uid, 'cert-1');
  assert.match(viaCallback.error_msg, /본인인증/);
  assert.match(viaCallback.error_msg, /지원하지 않습니다/);
  const viaPromise = await page.evaluate(() => IMP.certification({ merchant_uid: 'cert-2' }));
  assert.equal(viaPromise.success, false);
  assert.equal(viaPromise.merchant_uid, 'cert-2');
  assert.equal(gateway.requests.length, before, 'nothing was sent');
  assert.equal(await page.locator('#openport-overlay').count(), 0);
  assert.deepEqual(errors, []);
  await context.close();
});

test('mobile with popup: true keeps the page and uses the overlay', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage({ userAgent: MOBILE_UA });
  await page.evaluate((x) => window.pay(x), params({ popup: true, m_redirect_url: `${merchant.origin}/done` }));
  await page.locator('#openport-frame').waitFor();
  assert.equal(gateway.requests.at(-1).body.mobile, false);
  await page.frameLocator('#openport-frame').locator('#complete').click();
  assert.equal((await callbacks(page))[0].success, true);
  await context.close();
});

test('the script served twice keeps one IMP', { timeout: 30_000 }, async () => {
  const { page, context } = await openPage();
  await page.addScriptTag({ url: `${gateway.url}js/iamport.js` });
  await page.evaluate((x) => window.pay(x), params());
  await page.locator('#openport-frame').waitFor();
  await page.frameLocator('#openport-frame').locator('#complete').click();
  assert.equal((await callbacks(page))[0].success, true);
  await context.close();
});

test('the demo shop drives IMP and shows the server-verified result', { timeout: 30_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(gateway.url);
  await page.locator('#package-10000').check();
  await page.locator('#method-phone').check();
  await page.locator('#pay-button').click();
  const sent = () => gateway.requests.at(-1).body;
  await page.locator('#openport-frame').waitFor();
  assert.equal(sent().imp_code, 'imp00000000');
  assert.equal(sent().params.amount, 10000);
  assert.equal(sent().params.pay_method, 'phone');
  assert.deepEqual(sent().params.bypass, { shop_user_id: 'user123' });
  await page.frameLocator('#openport-frame').locator('#complete').click();
  await page.locator('#result[data-status="paid"]').waitFor();
  assert.equal(await page.locator('#result').getAttribute('data-verified'), 'true');
  const text = await page.locator('#result').textContent();
  assert.match(text, /paid/);
  assert.match(text, /imp_\d{12}/);
  assert.equal(await page.locator('#pay-button').isDisabled(), false);
  if (process.env.DEMO_SCREENSHOT) await page.screenshot({ path: process.env.DEMO_SCREENSHOT, fullPage: true });
  assert.deepEqual(errors, []);
  await context.close();
});
