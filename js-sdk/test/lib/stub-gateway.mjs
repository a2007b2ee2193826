// A stand-in for openport's checkout endpoints, written from the contract in js-sdk/README.md, so
// the SDK's own behaviour (overlay, messages, cancel, redirects) is tested without a gateway.
// The same flows against the real gateway are in checkout.test.mjs.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

const SDK = new URL('../../src/iamport.js', import.meta.url);
const DEMO = new URL('../../demo/index.html', import.meta.url);

export async function startStubGateway() {
  const sessions = new Map();
  const requests = [];
  const cancels = [];
  const statuses = [];
  const starts = [];
  let origin;

  const cors = {
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
    'Access-Control-Allow-Headers': 'Content-Type',
  };
  const json = (res, status, body) => {
    res.writeHead(status, { 'Content-Type': 'application/json; charset=UTF-8', ...cors });
    res.end(JSON.stringify(body));
  };
  const readBody = (req) => new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(data));
  });
  const rspFor = (s, success) => ({
    success, imp_success: success, error_code: success ? null : '3001',
    error_msg: success ? null : '사용자가 결제를 취소하였습니다.',
    imp_uid: s.impUid, merchant_uid: s.merchantUid, pay_method: s.params.pay_method,
    paid_amount: success ? s.params.amount : 0, status: success ? 'paid' : 'failed', name: s.params.name,
    pg_provider: 'kcp', pg_tid: success ? `T${s.impUid}` : null,
    // As the gateway stores and answers it: the page's text as given, anything else as JSON text.
    custom_data: s.params.custom_data == null ? null
      : typeof s.params.custom_data === 'string' ? s.params.custom_data : JSON.stringify(s.params.custom_data),
  });

  // The gateway's answer while the approval is in flight (Rsp::of on a pending payment).
  const pendingRsp = (s) => ({
    ...rspFor(s, false), status: 'ready', error_code: 'F500',
    error_msg: `결제 결과를 확인 중입니다. 잠시 후 결제내역을 조회해 주세요. (imp_uid: ${s.impUid})`,
  });

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://stub');
    const parts = url.pathname.split('/').filter(Boolean);
    if (req.method === 'OPTIONS') { res.writeHead(204, cors).end(); return; }
    if (req.method === 'GET' && url.pathname === '/js/iamport.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(readFileSync(SDK));
      return;
    }
    if (req.method === 'GET' && url.pathname === '/') { // the demo shop, as the gateway serves it
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(readFileSync(DEMO));
      return;
    }
    if (req.method === 'GET' && parts[0] === 'demo' && parts[1] === 'api' && parts[2] === 'verify') {
      const s = [...sessions.values()].find((x) => x.impUid === parts[3]);
      if (!s) { json(res, 404, { verified: false, payment: null }); return; }
      const expected = Number(s.params.merchant_uid.split('-')[2]);
      res.writeHead(200, { 'Content-Type': 'application/json; charset=UTF-8' });
      res.end(JSON.stringify({ verified: expected === s.params.amount, payment: {
        imp_uid: s.impUid, merchant_uid: s.params.merchant_uid, status: 'paid', amount: s.params.amount,
        pay_method: s.params.pay_method, card_name: '신한카드', card_number: '411111******1111', apply_num: '12345678',
      } }));
      return;
    }
    if (req.method === 'POST' && url.pathname === '/checkout/request') {
      let body;
      try { body = JSON.parse(await readBody(req)); } catch { json(res, 400, { code: -1, message: 'bad json', response: null }); return; }
      requests.push({ body, contentType: req.headers['content-type'] });
      // Generated as the gateway does when the page gives none.
      const mid = body.params?.merchant_uid ?? `nouid_${randomBytes(6).toString('hex')}`;
      if (body.imp_code === 'imp_unknown') { json(res, 404, { code: -1, message: '존재하지 않는 가맹점입니다.', response: null }); return; }
      if (mid.startsWith('refuse')) {
        json(res, 200, { code: 1, message: '이미 결제가 완료된 주문번호입니다.', response: { imp_uid: null, merchant_uid: mid } });
        return;
      }
      const token = randomBytes(12).toString('hex');
      const impUid = `imp_${String(Date.now()).slice(-12)}`;
      sessions.set(token, { ...body, impUid, merchantUid: mid, merchantOrigin: new URL(body.page_url).origin });
      json(res, 200, { code: 0, message: null, response: {
        imp_uid: impUid, merchant_uid: mid, session: token, start_url: `${origin}/checkout/session/${token}`,
      } });
      return;
    }
    if (parts[0] === 'checkout' && parts[1] === 'session' && sessions.has(parts[2])) {
      const s = sessions.get(parts[2]);
      if (req.method === 'POST' && parts[3] === 'cancel') {
        cancels.push(parts[2]);
        s.cancels = (s.cancels ?? 0) + 1;
        // What the cancel call does is chosen by the page's merchant_uid, or by its `name` when it
        // gave none.
        const mid = s.params.merchant_uid ?? s.params.name ?? '';
        // merchant_uid `pending<N>-…`: the approval is in flight for the first N cancel calls
        // (the gateway's F500 "checking" answer), then the payment is paid.
        const pending = /^pending(\d+)-/.exec(mid);
        if (pending) {
          json(res, 200, { code: 0, message: null, response: s.cancels <= Number(pending[1]) ? pendingRsp(s) : rspFor(s, true) });
          return;
        }
        if (mid.startsWith('cancel-drop-')) { req.socket.destroy(); return; } // no answer at all
        if (mid.startsWith('cancel-garbage-')) { // a proxy's error page
          res.writeHead(502, { 'Content-Type': 'text/html', ...cors }).end('<html>502 Bad Gateway</html>');
          return;
        }
        json(res, 200, { code: 0, message: null, response: rspFor(s, false) });
        return;
      }
      if (req.method === 'GET' && parts[3] === 'status') { // read-only: the payment as it stands
        statuses.push(parts[2]);
        s.statuses = (s.statuses ?? 0) + 1;
        // merchant_uid `checking<N>-…`: the approval is in flight for the first N status calls.
        const checking = /^checking(\d+)-/.exec(s.params.merchant_uid ?? '');
        const inFlight = checking && s.statuses <= Number(checking[1]);
        json(res, 200, { code: 0, message: null, response: inFlight ? pendingRsp(s) : rspFor(s, true) });
        return;
      }
      if (req.method === 'GET' && parts[3] === 'finish') { // the mobile end: 302 to m_redirect_url
        const target = s.params.m_redirect_url || s.page_url;
        const q = new URLSearchParams({ imp_uid: s.impUid, merchant_uid: s.merchantUid, imp_success: 'true' });
        res.writeHead(302, { Location: `${target}${target.includes('?') ? '&' : '?'}${q}` }).end();
        return;
      }
      if (req.method === 'GET' && parts.length === 3) {
        starts.push(parts[2]);
        // merchant_uid `slow-start-…`: the window page takes 3 s to come, so the merchant page
        // stays up (and tappable) meanwhile, as on a slow phone network.
        if ((s.params.merchant_uid ?? '').startsWith('slow-start')) await new Promise((r) => setTimeout(r, 3_000));
        const post = (rsp, extra = {}) => `window.parent.postMessage(${JSON.stringify({ source: 'openport', rsp, ...extra })}, ${JSON.stringify(s.merchantOrigin)})`;
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(`<!doctype html><meta charset="utf-8"><title>stub window</title>
<p id="kind">${s.mobile ? 'mobile' : 'pc'}</p>
<button id="complete" onclick='${s.mobile ? `location.href="/checkout/session/${parts[2]}/finish"` : post(rspFor(s, true))}'>pay</button>
<button id="complete-twice" onclick='${post(rspFor(s, true))}; ${post(rspFor(s, true))}'>pay twice</button>
<button id="complete-checking" onclick='${post(pendingRsp(s))}'>answered while another post approves</button>
<button id="wrong-session" onclick='${post(rspFor(s, true), { session: 'someone-else' })}'>other session</button>`);
        return;
      }
    }
    json(res, 404, { code: -1, message: 'not found', response: null });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${server.address().port}`;
  return {
    url: `${origin}/`, origin, requests, cancels, statuses, starts,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}
