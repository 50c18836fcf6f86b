// bm-verdict.js: the verdict of Settings → bm-relay
// (includes/class-bm-relay-health.php). WordPress rendered what the server
// can tell (settings, the relay's health, whether it accepts this site's
// key); this adds what only the admin's browser can: whether a browser
// reaches the relay — the connection doctor's own result (bm-doctor.js,
// run once at load) — and, through a relay connection of this page as the
// admin, the measured round trip of "Send test event": from the click,
// through WordPress's push and the relay, to this browser.
//
// Everything from the network is shown with textContent, never as markup.

import { BmClient, probeSocket, probeStream, streamUrlOf } from './bm-client.js';
import { fmt } from './chat/strings.js';

/** How long a test event may take to arrive before the page says it did not (ms). */
const ARRIVAL_TIMEOUT_MS = 5000;
const LEVELS = ['working', 'degraded', 'down'];
/** How long one connection probe may take (ms): as long as the doctor's. */
const PROBE_TIMEOUT_MS = 10000;

const root = document.getElementById('bm-relay-verdict');

if (root) {
  const cfg = JSON.parse(root.dataset.config || '{}');
  const t = cfg.strings || {};
  const rest = String(cfg.rest || '').replace(/\/$/, '');
  const headers = { 'X-WP-Nonce': String(cfg.nonce || '') };
  const out = document.getElementById('bm-relay-roundtrip');
  const browserLine = root.querySelector('.bm-verdict-browser');

  /** Raises the shown level to `level` if it is worse (never lowers what the server found). */
  const raise = (level) => {
    if (LEVELS.indexOf(level) <= LEVELS.indexOf(root.dataset.level)) return;
    root.dataset.level = level;
    root.className = `bm-verdict bm-verdict-${level}`;
    root.querySelector('.bm-verdict-head strong').textContent = t[level];
  };
  const sayBrowser = (level, text) => {
    browserLine.hidden = false;
    browserLine.dataset.level = level;
    browserLine.textContent = text;
    raise(level);
  };

  /** A failure's words, as the connection doctor words them (its strings, passed along). */
  const why = (reason) => {
    if (t.reasons && t.reasons[reason]) return t.reasons[reason];
    const m = /^http_(\d{3})$/.exec(reason);
    return m && t.reasons ? fmt(t.reasons.http, m[1]) : reason;
  };

  /**
   * The connection doctor's check, with its very probes (bm-client.js): a
   * WebSocket to the relay, then the relay's stream. Run here once at load
   * without touching the doctor's own table (the admin may run that too).
   */
  const reach = async (b) => {
    const ws = await probeSocket(b.url, b.token, { timeout: PROBE_TIMEOUT_MS });
    if (ws.ok) return { way: 'websocket' };
    const streamUrl = streamUrlOf(b.url);
    const st = streamUrl ? await probeStream(streamUrl, b.token, { timeout: PROBE_TIMEOUT_MS }) : { ok: false };
    return st.ok ? { way: 'stream' } : { way: null, reason: why(ws.reason) };
  };

  /** This page's relay connection as the admin (the test event is sealed with the admin's user key). */
  const token = async () => {
    const r = await fetch(`${rest}/token`, { method: 'POST', headers, credentials: 'same-origin', cache: 'no-store' });
    const b = r.ok ? await r.json() : null;
    return b && b.url && b.site && b.token && b.user_key ? b : null;
  };
  const connect = (b) => {
    const client = new BmClient({
      url: b.url,
      urls: Array.isArray(b.urls) && b.urls.length ? b.urls : undefined,
      site: b.site,
      getToken: async () => (await token())?.token ?? '',
      getKey: (kid) => (kid === b.user_key.kid ? b.user_key.key : null),
    });
    client.connect();
    return client;
  };

  /** Pending probes: id → resolve(arrival time). */
  const waiting = new Map();
  let client = null;

  const sendTest = async () => {
    if (!client || client.state !== 'connected') {
      out.textContent = t.noClient;
      out.dataset.result = 'noclient';
      return;
    }
    out.textContent = t.sending;
    out.dataset.result = 'sending';
    const probe = Array.from(crypto.getRandomValues(new Uint8Array(12)), (x) => x.toString(16).padStart(2, '0')).join('');
    const t0 = performance.now();
    const arrived = new Promise((resolve) => {
      waiting.set(probe, resolve);
      setTimeout(() => resolve(null), ARRIVAL_TIMEOUT_MS);
    });
    try {
      const body = new URLSearchParams({ action: 'bm_relay_test_ping', nonce: String(cfg.ping_nonce || ''), probe });
      const r = await fetch(String(cfg.ajax), { method: 'POST', body, credentials: 'same-origin', cache: 'no-store' });
      const j = await r.json().catch(() => null);
      if (!r.ok || !j || !j.success) {
        waiting.delete(probe);
        out.textContent = fmt(t.failed, (j && j.data && j.data.detail) || `HTTP ${r.status}`);
        out.dataset.result = 'failed';
        return;
      }
    } catch (e) {
      waiting.delete(probe);
      out.textContent = fmt(t.failed, String(e && e.message ? e.message : e));
      out.dataset.result = 'failed';
      return;
    }
    const at = await arrived;
    waiting.delete(probe);
    if (at === null) {
      out.textContent = t.notArrived;
      out.dataset.result = 'late';
      return;
    }
    const ms = Math.max(0, Math.round(at - t0));
    out.textContent = fmt(t.arrived, ms);
    out.dataset.result = 'arrived';
    out.dataset.ms = String(ms);
  };

  // "Send test event" is a plain form (it works without JavaScript); with
  // a relay connection here, the page sends it itself and times it.
  const form = document.querySelector('input[name="action"][value="bm_relay_test_event"]')?.form;
  form?.addEventListener('submit', (ev) => {
    if (!client || client.state !== 'connected') return;
    ev.preventDefault();
    sendTest();
  });

  (async () => {
    if (root.dataset.level === 'down') return;
    browserLine.hidden = false;
    browserLine.textContent = t.checking;
    const b = await token().catch(() => null);
    if (!b) {
      sayBrowser('down', fmt(t.browserNo, t.reasons?.noUrl || 'no token'));
      return;
    }
    const r = await reach(b);
    if (r.way === 'websocket') sayBrowser('working', t.browserOk);
    else if (r.way === 'stream') sayBrowser('degraded', t.browserStream);
    else {
      sayBrowser('down', fmt(t.browserNo, r.reason));
      return;
    }
    client = connect(b);
    client.on('event', (ev) => {
      const probe = ev && ev.type === 'test' && ev.data && typeof ev.data.probe === 'string' ? ev.data.probe : null;
      const done = probe && waiting.get(probe);
      if (done) done(performance.now());
    });
    client.on('state', ({ state }) => {
      root.dataset.client = state;
    });
  })();
}
