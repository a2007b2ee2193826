// The rest of IMP.request_pay's flows in a real browser against a running openport
// (OPENPORT_URL, test mode, sandbox KCP): points, gift certificates, easy-pay, the billing-key
// window, a virtual account through deposit and webhooks, escrow, confirm_url, KCP's PC script
// failing to load or throwing, and an amount the buyer's browser edits.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  OPENPORT_URL, launch, startMerchant, completeWindow, getPayment, getCustomer, payAgain, rest,
  token, uid, sandboxOrigin, sandbox, MOBILE_UA, callbacks, exactlyOnce,
} from './lib/harness.mjs';
import { params, merchantPages } from './lib/pages.mjs';

let browser;
let merchant;
let payInOverlay;

before(async () => {
  merchant = await startMerchant(OPENPORT_URL);
  browser = await launch();
  ({ payInOverlay } = merchantPages(browser, merchant));
});

after(async () => {
  await browser?.close();
  await merchant?.close();
});

/** Plays the buyer for `method` after handing the sandbox's origin to `seen`. */
const filling = (method, seen) => async (frame, page) => {
  await frame.locator('#pay').waitFor();
  await seen(sandboxOrigin(page));
  await completeWindow(frame, method);
};

for (const [pay_method, extra] of [
  ['point', {}], ['cultureland', {}], ['smartculture', {}], ['happymoney', {}], ['booknlife', {}],
]) {
  test(`${pay_method} in the window: paid, and REST agrees`, { timeout: 90_000 }, async () => {
    const p = params({ pay_method, amount: 3000, ...extra });
    const rsp = await payInOverlay(p);
    assert.equal(rsp.success, true, JSON.stringify(rsp));
    assert.equal(rsp.status, 'paid');
    assert.equal(rsp.pay_method, pay_method);
    const { json } = await getPayment(rsp.imp_uid);
    assert.equal(json.response.status, 'paid');
    assert.equal(json.response.amount, 3000);
    assert.equal(json.response.pay_method, pay_method);
  });
}

test('a gift certificate without bypass.shop_user_id is refused before the window', { timeout: 60_000 }, async () => {
  const { openPage } = merchantPages(browser, merchant);
  const { page, context } = await openPage();
  try {
    await page.evaluate((x) => window.pay(x), params({ pay_method: 'happymoney', bypass: {} }));
    await page.waitForFunction(() => window.__rsps.length === 1);
    const [rsp] = await page.evaluate(() => window.__rsps);
    assert.equal(rsp.success, false);
    assert.equal(rsp.imp_uid, null);
    assert.match(rsp.error_msg, /shop_user_id/);
    assert.equal(await page.locator('#openport-overlay').count(), 0);
  } finally {
    await context.close();
  }
});

for (const easyPay of ['samsung', 'kakaopay', 'naverpay', 'payco']) {
  test(`${easyPay} is refused before the window, never recorded as an easy pay no answer confirmed`, { timeout: 60_000 }, async () => {
    const { openPage } = merchantPages(browser, merchant);
    const { page, context } = await openPage();
    try {
      await page.evaluate((x) => window.pay(x), params({ pay_method: easyPay }));
      await page.waitForFunction(() => window.__rsps.length === 1);
      const [rsp] = await page.evaluate(() => window.__rsps);
      assert.equal(rsp.success, false);
      assert.equal(rsp.imp_uid, null);
      assert.match(rsp.error_msg, new RegExp(`pay_method '${easyPay}'`));
      assert.equal(await page.locator('#openport-overlay').count(), 0);
    } finally {
      await context.close();
    }
  });
}

test('the billing-key window stores the card as customer_uid, charges nothing, and again charges it', { timeout: 90_000 }, async () => {
  const customerUid = uid('cust');
  const p = params({ pg: 'kcp_billing', customer_uid: customerUid, amount: 0, name: '카드 등록' });
  let origin;
  const rsp = await payInOverlay(p, async (frame, page) => {
    await frame.locator('#card_no').waitFor();
    origin = sandboxOrigin(page);
    await completeWindow(frame, 'card');
  });
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.match(rsp.imp_uid, /^imp_\d{12}$/, JSON.stringify(rsp));
  const ledger = await sandbox(origin, 'GET', '/_sandbox/ledger');
  // KCP knows a payment by openport's order number, never by its merchant_uid.
  const orderNo = `OP${rsp.imp_uid.slice(4)}`;
  assert.ok(!ledger.some((e) => e.order_no === orderNo), 'nothing charged for the key');
  const { json: customer } = await getCustomer(customerUid);
  assert.equal(customer.code, 0, JSON.stringify(customer));
  assert.equal(customer.response.card_number, '411111******1111');
  const { json: again } = await payAgain(customerUid, uid('again'), 4900);
  assert.equal(again.code, 0, JSON.stringify(again));
  assert.equal(again.response.status, 'paid');
  assert.equal(again.response.amount, 4900);
});

test('a virtual account: ready webhook, a deposit at the sandbox, then paid webhook and REST paid', { timeout: 120_000 }, async () => {
  const p = params({ pay_method: 'vbank', amount: 12000, notice_url: `${merchant.origin}/hooks` });
  let origin;
  const rsp = await payInOverlay(p, filling('vbank', (o) => { origin = o; }));
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.equal(rsp.status, 'ready');
  const ready = await merchant.hook((h) => h.imp_uid === rsp.imp_uid && h.status === 'ready');
  assert.equal(ready.merchant_uid, p.merchant_uid);
  const { json: issued } = await getPayment(rsp.imp_uid);
  assert.equal(issued.response.status, 'ready');
  assert.ok(issued.response.pg_tid, 'the account has a KCP tno');

  const deposit = await sandbox(origin, 'POST', '/_sandbox/vbank/deposit', { tno: issued.response.pg_tid });
  assert.equal(deposit.total, 12000);
  const paid = await merchant.hook((h) => h.imp_uid === rsp.imp_uid && h.status === 'paid');
  assert.equal(paid.merchant_uid, p.merchant_uid);
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.status, 'paid');
  assert.equal(json.response.amount, 12000);
  assert.ok(json.response.paid_at > 0);
  const notes = await sandbox(origin, 'GET', '/_sandbox/notifications');
  const mine = notes.filter((n) => n.tno === issued.response.pg_tid);
  assert.equal(mine.length, 1);
  assert.equal(mine[0].acknowledged, true, 'openport answered result=0000');
});

test('escrow with kcpProducts: paid as escrow, and the delivery registers once', { timeout: 90_000 }, async () => {
  const p = params({
    amount: 3000, escrow: true,
    kcpProducts: [
      { orderNumber: 'sock-1', name: '양말', quantity: 2, amount: 1000 },
      { orderNumber: 'cap-1', name: '모자', quantity: 1, amount: 1000 },
    ],
  });
  const rsp = await payInOverlay(p);
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.escrow, true);
  const logis = { logis: { company: 'CJ대한통운', invoice: '123456789', sent_at: Math.floor(Date.now() / 1000) } };
  const first = await rest('POST', `/escrows/logis/${rsp.imp_uid}`, logis, await token());
  assert.equal(first.status, 200, JSON.stringify(first.json));
  assert.equal(first.json.response.invoice, '123456789');
  const second = await rest('POST', `/escrows/logis/${rsp.imp_uid}`, logis, await token());
  assert.equal(second.status, 409);
});

test('a confirm_url that refuses stops the payment before approval, with its reason', { timeout: 90_000 }, async () => {
  const p = params({ confirm_url: `${merchant.origin}/confirm/refuse` });
  const rsp = await payInOverlay(p);
  assert.equal(rsp.success, false, JSON.stringify(rsp));
  assert.equal(rsp.error_msg, '고객사 요청에 의해 결제를 중단합니다. (상세사유 : 재고 없음)');
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.status, 'failed');
});

/** The window ended at once as KCP's failure (W001), never as the buyer's cancel: the callback ran
 * once, the overlay is gone, and the payment failed with that reason. */
async function assertEndedAsKcpUnavailable(page, rsp) {
  assert.equal(await exactlyOnce(page), 1, 'the callback ran more than once');
  assert.equal(await page.locator('#openport-overlay').count(), 0, 'the overlay is still there');
  assert.equal(rsp.success, false, JSON.stringify(rsp));
  assert.equal(rsp.error_code, 'W001', JSON.stringify(rsp));
  assert.equal(rsp.error_msg, '[W001] KCP 결제창을 불러오지 못했습니다.');
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.status, 'failed');
  assert.equal(json.response.fail_reason, '[W001] KCP 결제창을 불러오지 못했습니다.');
}

test('KCP\'s PC script failing to load ends the window at once as KCP\'s failure, never as the buyer\'s cancel', { timeout: 60_000 }, async () => {
  // KCP down, or a network or an ad-blocker dropping its script: the hand-off page ends the window
  // as a refusal in KCP's window does, so the callback runs without the buyer pressing ×, which
  // would record the outage as the buyer's cancel (3001).
  const { openPage } = merchantPages(browser, merchant);
  const { page, context, errors } = await openPage();
  try {
    await context.route('**/plugin/kcp_spay_hub.js', (route) => route.abort('connectionrefused'));
    await page.evaluate((x) => window.pay(x), params({ amount: 2000 }));
    const [rsp] = await callbacks(page, 1, 15_000);
    await assertEndedAsKcpUnavailable(page, rsp);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('KCP\'s PC call throwing before its layer is up ends the window at once as KCP\'s failure, never as the buyer\'s cancel', { timeout: 60_000 }, async () => {
  // KCP's script loads but its call fails before it renders anything (a KCP-side script error, a
  // broken deploy): the buyer would see an empty page whose only way out, the overlay's ×, is
  // recorded as the buyer's cancel (3001). The hand-off page ends it as when the script does not load.
  const { openPage } = merchantPages(browser, merchant);
  const { page, context, errors } = await openPage();
  try {
    let served = 0;
    await context.route('**/plugin/kcp_spay_hub.js', (route) => {
      served += 1;
      route.fulfill({
        contentType: 'application/javascript; charset=UTF-8',
        body: 'window.KCP_Pay_Execute_Web = function (form) { return form.no_such_field.value; };',
      });
    });
    await page.evaluate((x) => window.pay(x), params({ amount: 2000 }));
    const [rsp] = await callbacks(page, 1, 15_000);
    assert.equal(served, 1, 'KCP\'s script was not the throwing one');
    await assertEndedAsKcpUnavailable(page, rsp);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('KCP\'s PC call throwing once its layer is up leaves the window open, and the buyer pays in it', { timeout: 90_000 }, async () => {
  // Only an empty page is ended: a throw after KCP rendered its window must not fail a payment
  // the buyer may be making in it.
  const p = params({ amount: 4000 });
  let served = 0;
  const rsp = await payInOverlay(p, undefined, async (context) => {
    await context.route('**/plugin/kcp_spay_hub.js', async (route) => {
      const kcp = await route.fetch();
      served += 1;
      route.fulfill({
        response: kcp,
        body: `${await kcp.text()}
;(function () {
  var execute = window.KCP_Pay_Execute_Web;
  window.KCP_Pay_Execute_Web = function (form) { execute(form); throw new Error('after the layer'); };
})();`,
      });
    });
  });
  assert.equal(served, 1, 'KCP\'s script was not the throwing one');
  assert.equal(rsp.success, true, JSON.stringify(rsp));
  assert.equal(rsp.status, 'paid');
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.status, 'paid');
  assert.equal(json.response.amount, 4000);
});

test('an amount the buyer edits on the way to the window is caught and nothing is charged', { timeout: 90_000 }, async () => {
  const p = params({ amount: 50000 });
  let origin;
  const rsp = await payInOverlay(p, filling('card', (o) => { origin = o; }), async (context) => {
    // The buyer rewrites good_mny in the form KCP's PC script posts to its window (spec/kcp.md
    // §1.1); KCP's answer then names that amount in ordr_chk, which openport compares.
    await context.route('**/pay/pcWindow.kcp', (route) => {
      const body = new URLSearchParams(route.request().postData() ?? '');
      body.set('good_mny', '500');
      route.continue({ postData: body.toString() });
    });
  });
  assert.equal(rsp.success, false, JSON.stringify(rsp));
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.status, 'failed');
  assert.equal(json.response.amount, 50000);
  const ledger = await sandbox(origin, 'GET', '/_sandbox/ledger');
  assert.ok(!ledger.some((e) => e.amount === 500 && e.state !== 'STSC'), 'no approval of the edited amount stands');
});

test('a KCP approval for another amount than the order is net-cancelled and reported as a failure', { timeout: 90_000 }, async () => {
  const p = params({ amount: 7000, notice_url: `${merchant.origin}/hooks` });
  let origin;
  try {
    const rsp = await payInOverlay(p, filling('card', async (o) => {
      origin = o;
      await sandbox(o, 'POST', '/_sandbox/faults', {
        path: '/gw/enc/v1/payment', fault: { kind: 'answer_field', field: 'amount', value: '700' },
      });
    }));
    assert.equal(rsp.success, false, JSON.stringify(rsp));
    assert.match(rsp.error_msg, /자동취소/);
    assert.match(rsp.imp_uid, /^imp_\d{12}$/, JSON.stringify(rsp));
    const { json } = await getPayment(rsp.imp_uid);
    assert.equal(json.response.status, 'failed');
    // The sandbox is shared by the whole run: the approval is found by this payment's order
    // number, never by its amount.
    const ledger = await sandbox(origin, 'GET', '/_sandbox/ledger');
    const entry = ledger.find((e) => e.order_no === `OP${rsp.imp_uid.slice(4)}`);
    assert.ok(entry, 'KCP approved it');
    assert.equal(entry.tno, json.response.pg_tid);
    assert.equal(entry.state, 'STSC', 'and it was net-cancelled');
    // A `paid` webhook, had one been written, was written with the failure, before this key-in
    // payment's own: once that one has arrived, so has anything written before it (the outbox
    // sends oldest first, a few at a time, hence the short grace).
    const later = await rest('POST', '/subscribe/payments/onetime', {
      merchant_uid: uid('after-mismatch'), amount: 1000, card_number: '4111-1111-1111-1111',
      expiry: '2031-12', notice_url: `${merchant.origin}/hooks`,
    }, await token());
    assert.equal(later.json.code, 0, JSON.stringify(later.json));
    await merchant.hook((h) => h.imp_uid === later.json.response.imp_uid && h.status === 'paid');
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(!merchant.hooks.some((h) => h.imp_uid === rsp.imp_uid && h.status === 'paid'), 'no paid webhook');
  } finally {
    if (origin) await sandbox(origin, 'DELETE', '/_sandbox/faults');
  }
});

test('a window result whose use_pay_method the browser changed is refused before approval', { timeout: 90_000 }, async () => {
  const p = params({ amount: 4000 });
  let origin;
  const rsp = await payInOverlay(p, filling('card', (o) => { origin = o; }), async (context) => {
    // The buyer's browser rewrites the method in what KCP's window posts back to Ret_URL.
    await context.route('**/checkout/kcp/return', (route) => {
      const body = new URLSearchParams(route.request().postData() ?? '');
      body.set('use_pay_method', '001000000000');
      route.continue({ postData: body.toString() });
    });
  });
  assert.equal(rsp.success, false, JSON.stringify(rsp));
  assert.match(rsp.error_msg, /use_pay_method/);
  const { json } = await getPayment(rsp.imp_uid);
  assert.equal(json.response.status, 'failed');
  assert.equal(json.response.pay_method, 'card');
  const ledger = await sandbox(origin, 'GET', '/_sandbox/ledger');
  const orderNo = `OP${rsp.imp_uid.replace(/^imp_/, '')}`; // openport's KCP ordr_idxx
  assert.ok(!ledger.some((e) => e.order_no === orderNo), 'nothing approved at KCP');
});

test('a mobile refusal before the window calls the callback and stays on the page', { timeout: 60_000 }, async () => {
  // iamport's KCP guide (seed 001 §2.1): on mobile the callback is not called at the end of the
  // payment, "but it is for a problem found in validation before the page moves". A cart page that
  // shows rsp.error_msg must keep the buyer, not land on its completion page with an empty imp_uid.
  const { openPage } = merchantPages(browser, merchant);
  const { page, context, errors } = await openPage({ userAgent: MOBILE_UA, viewport: { width: 390, height: 844 } });
  try {
    const navigations = [];
    page.on('framenavigated', (frame) => { if (frame === page.mainFrame()) navigations.push(frame.url()); });
    const before = page.url();
    const p = params({ amount: 0, m_redirect_url: `${merchant.origin}/done?order=zero` });
    await page.evaluate((x) => window.pay(x), p);
    const [rsp] = await callbacks(page, 1, 20_000);
    assert.equal(rsp.success, false, JSON.stringify(rsp));
    assert.equal(rsp.imp_success, false);
    assert.equal(rsp.imp_uid, null);
    assert.equal(rsp.merchant_uid, p.merchant_uid);
    assert.ok(rsp.error_msg);
    assert.equal(await exactlyOnce(page), 1);
    assert.equal(page.url(), before);
    assert.deepEqual(navigations, [], 'the page never moved');
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('a mobile refusal before the window that no callback or Promise reads goes to m_redirect_url', { timeout: 60_000 }, async () => {
  // A page written for the redirect alone (iamport's mobile sample passes no callback) would
  // otherwise see its button do nothing.
  const { openPage } = merchantPages(browser, merchant);
  const { page, context } = await openPage({ userAgent: MOBILE_UA, viewport: { width: 390, height: 844 } });
  try {
    const p = params({ amount: 0, m_redirect_url: `${merchant.origin}/done?order=zero` });
    await page.evaluate((x) => window.pay(x, false), p);
    await page.waitForURL((url) => url.href.startsWith(`${merchant.origin}/done`), { timeout: 20_000 });
    const q = new URL(page.url()).searchParams;
    assert.equal(q.get('order'), 'zero');
    assert.equal(q.get('imp_success'), 'false');
    assert.equal(q.get('imp_uid'), '');
    assert.equal(q.get('merchant_uid'), p.merchant_uid);
    assert.ok(q.get('error_msg'));
  } finally {
    await context.close();
  }
});

test('mobile: Back from the KCP window returns to the merchant page instead of reopening the window', { timeout: 90_000 }, async () => {
  // On mobile the hand-off page posts the window's form to KCP's PayUrl, full page, while it is
  // still loading, which replaces its own history entry (HTML's form submission algorithm). Back
  // from KCP's window then returns to the merchant page. A hand-off page that kept its entry
  // (one submitting on load or on a timer) would be loaded again by Back and post to KCP again,
  // so Back could never leave KCP's window (or, from a back-forward cache, show a blank page).
  const { openPage } = merchantPages(browser, merchant);
  const { page, context, errors } = await openPage({ userAgent: MOBILE_UA, viewport: { width: 390, height: 844 } });
  try {
    const windowPosts = [];
    page.on('request', (req) => {
      if (req.method() === 'POST' && req.isNavigationRequest() && new URL(req.url()).pathname.startsWith('/pay/')) {
        windowPosts.push(req.url());
      }
    });
    const p = params({ m_redirect_url: `${merchant.origin}/done?order=back` });
    await page.evaluate((x) => window.pay(x), p);
    await page.waitForURL((url) => url.origin !== merchant.origin);
    await page.locator('#pay').waitFor();
    assert.equal(windowPosts.length, 1, JSON.stringify(windowPosts));

    await page.goBack({ waitUntil: 'commit' }).catch(() => {}); // a hand-off page would move on at once
    await page.waitForURL(`${merchant.origin}/pay`, { timeout: 20_000 });
    // It stays there: the hand-off page did not post to KCP again on its way.
    await page.waitForTimeout(1_000);
    assert.equal(page.url(), `${merchant.origin}/pay`);
    assert.equal(windowPosts.length, 1, `the window was posted again: ${JSON.stringify(windowPosts)}`);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
