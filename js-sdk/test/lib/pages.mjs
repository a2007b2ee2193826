// The merchant page as a buyer's browser sees it: open it, pay in the overlay, or be refused
// before the window. Shared by the checkout suites.
import assert from 'node:assert/strict';
import { callbacks, exactlyOnce, windowFrame, completeWindow, uid } from './harness.mjs';

/** request_pay parameters of an ordinary KCP card order, with `extra` on top. */
export const params = (extra = {}) => ({
  pg: 'kcp', pay_method: 'card', merchant_uid: uid('web'), name: '포인트 5,000', amount: 5000,
  buyer_name: '홍길동', buyer_tel: '010-1234-5678', buyer_email: 'buyer@example.com',
  bypass: { shop_user_id: 'user123' }, ...extra,
});

/** Pages of `merchant` (startMerchant) in `browser`. */
export function merchantPages(browser, merchant) {
  async function openPage(options = {}) {
    const context = await browser.newContext(options);
    const page = await context.newPage();
    page.setDefaultTimeout(20_000);
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    await page.goto(`${merchant.origin}/pay`);
    await page.waitForFunction(() => typeof window.IMP === 'object' && typeof window.IMP.request_pay === 'function',
      undefined, { timeout: 5_000 });
    return { page, context, errors };
  }

  /**
   * PC flow: request_pay, the sandbox window in the overlay, the callback. `fill(frame, page)`
   * plays the buyer; `prepare(context)` runs before request_pay (routes, say).
   */
  async function payInOverlay(p, fill = (frame) => completeWindow(frame, p.pay_method), prepare = async () => {}) {
    const { page, context, errors } = await openPage();
    try {
      await prepare(context);
      await page.evaluate((x) => window.pay(x), p);
      await page.locator('#openport-overlay #openport-frame').waitFor();
      await fill(windowFrame(page), page);
      const [rsp] = await callbacks(page);
      assert.equal(await exactlyOnce(page), 1, 'the callback ran more than once');
      assert.equal(await page.locator('#openport-overlay').count(), 0, 'the overlay is still there');
      assert.deepEqual(errors, []);
      return rsp;
    } finally {
      await context.close();
    }
  }

  /** A refusal before the window: callback, and no overlay ever. */
  async function refused(p) {
    const { page, context } = await openPage();
    try {
      await page.evaluate((x) => window.pay(x), p);
      const [rsp] = await callbacks(page, 1, 20_000);
      assert.equal(await page.locator('#openport-overlay').count(), 0);
      return rsp;
    } finally {
      await context.close();
    }
  }

  return { openPage, payInOverlay, refused };
}
