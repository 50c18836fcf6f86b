// bm-doctor.js: the connection doctor of Settings → bm-relay
// (includes/class-bm-relay-doctor.php). From the admin's own browser, with a
// relay token WordPress gives the admin, it tries in turn a WebSocket to the
// relay, the relay's stream (PROTOCOL.md §6.1) and one WordPress poll, with
// the very probes bm-client.js uses, and shows for each whether it works,
// why not and how many ms it took. One after another, not at once, so that
// no try's time includes another's.

import { probeSocket, probeStream, streamUrlOf } from './bm-client.js';
import { fmt } from './chat/strings.js';

/** How long one try may take (ms): as long as the client waits for `ready`. */
const TIMEOUT_MS = 10000;

const root = document.getElementById('bm-relay-doctor');
const button = document.getElementById('bm-relay-doctor-run');

if (root && button) {
  const cfg = JSON.parse(root.dataset.config || '{}');
  const t = cfg.strings || {};
  const rest = String(cfg.rest || '').replace(/\/$/, '');
  const headers = { 'X-WP-Nonce': String(cfg.nonce || '') };

  /** A failure's words: the known reasons translated, an HTTP status as such, a relay code as it is. */
  const why = (reason) => {
    if (t[reason]) return t[reason];
    const m = /^http_(\d{3})$/.exec(reason);
    return m ? fmt(t.http, m[1]) : reason;
  };

  /** Shows one way's result (textContent only: nothing from the network becomes markup). */
  const show = (way, result) => {
    const row = root.querySelector(`tr[data-way="${way}"]`);
    if (!row) return;
    row.dataset.result = result ? (result.ok ? 'works' : 'fails') : 'running';
    row.querySelector('.bm-doctor-result').textContent = !result ? t.running : result.ok ? t.works : fmt(t.fails, why(result.reason));
    row.querySelector('.bm-doctor-ms').textContent = result && Number.isFinite(result.ms) ? fmt(t.ms, result.ms) : '—';
  };

  /** One WordPress poll, as the chat page polls: a GET of the admin's threads. */
  const pollOnce = async () => {
    const t0 = performance.now();
    try {
      const r = await fetch(`${rest}/threads?per_page=1`, { headers, credentials: 'same-origin', cache: 'no-store' });
      const ms = Math.round(performance.now() - t0);
      return r.ok ? { ok: true, ms } : { ok: false, ms, reason: `http_${r.status}` };
    } catch {
      return { ok: false, ms: Math.round(performance.now() - t0), reason: 'refused' };
    }
  };

  button.addEventListener('click', async () => {
    button.disabled = true;
    for (const way of ['websocket', 'stream', 'polling']) show(way, null);
    try {
      let bundle = null;
      let noToken = null;
      try {
        const r = await fetch(`${rest}/token`, { method: 'POST', headers, credentials: 'same-origin', cache: 'no-store' });
        if (r.ok) bundle = await r.json();
        else noToken = fmt(t.noToken, why(`http_${r.status}`));
      } catch {
        noToken = fmt(t.noToken, why('refused'));
      }
      const url = bundle && typeof bundle.url === 'string' ? bundle.url : '';
      const token = bundle && typeof bundle.token === 'string' ? bundle.token : '';
      const missing = noToken ?? (!url ? t.noUrl : null);
      if (missing) {
        show('websocket', { ok: false, reason: missing });
        show('stream', { ok: false, reason: missing });
      } else {
        show('websocket', await probeSocket(url, token, { timeout: TIMEOUT_MS }));
        const streamUrl = streamUrlOf(url);
        show('stream', streamUrl ? await probeStream(streamUrl, token, { timeout: TIMEOUT_MS }) : { ok: false, reason: 'noStreamUrl' });
      }
      show('polling', await pollOnce());
    } finally {
      button.disabled = false;
      root.dataset.done = String(Date.now());
    }
  });
}
