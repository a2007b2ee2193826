// Browser suite: a real headless Chromium (Debian's /usr/bin/chromium, never a downloaded one)
// talking to a running openport (OPENPORT_URL). The IMP checkout tests join this suite with the
// browser-checkout issue; today it proves a page on openport's origin can authenticate and read a
// payment the way front-end code does, with iamport's envelope and content type.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const BASE = (process.env.OPENPORT_URL ?? 'http://127.0.0.1:8080/').replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => { await browser?.close(); });

test('a page on the openport origin gets a token, pays by key-in and reads the payment back', async () => {
  const page = await browser.newPage();
  const res = await page.goto(`${BASE}/openapi.json`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-type'], /application\/json; charset=UTF-8/);
  const result = await page.evaluate(async () => {
    const post = async (path, body, token) => (await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: token } : {}) },
      body: JSON.stringify(body),
    })).json();
    const auth = await post('/users/getToken', {
      imp_key: 'imp_apikey',
      imp_secret: 'ekKoeW8RyKuT0zgaZsUtXXTLQ4AhPFW3ZGseDA6bkA5lamv9OqDMnxyeB9wqOsuO9W3Mx9YSJ4dTqJ3f',
    });
    const token = auth.response.access_token;
    const uid = `browser-${Date.now()}`;
    const paid = await post('/subscribe/payments/onetime', {
      merchant_uid: uid, amount: 1000, card_number: '4111-1111-1111-1111', expiry: '2031-12',
    }, token);
    const looked = await (await fetch(`/payments/${paid.response.imp_uid}`, { headers: { Authorization: `Bearer ${token}` } })).json();
    return { auth, paid, looked };
  });
  assert.equal(result.auth.code, 0);
  assert.equal(result.paid.code, 0, JSON.stringify(result.paid));
  assert.equal(result.paid.response.status, 'paid');
  assert.equal(result.looked.response.imp_uid, result.paid.response.imp_uid);
  assert.equal(result.looked.response.card_number, '411111******1111');
  await page.close();
});

test('the browser gets iamport\'s 401 envelope without a token', async () => {
  const page = await browser.newPage();
  await page.goto(`${BASE}/openapi.json`);
  const body = await page.evaluate(async () => {
    const r = await fetch('/payments/imp_000000000000');
    return { status: r.status, json: await r.json() };
  });
  assert.equal(body.status, 401);
  assert.deepEqual(body.json, { code: -1, message: 'Unauthorized', response: null });
  await page.close();
});
