// Time from Alice's send to Bob's render on the [bm_chat] page, p50/p90
// over N messages, with the extension and then with the pure-PHP fallback
// (the figure issue #16 asks for, before and after its features). The same
// site as the e2e (js-tests/e2e/site.js: private MariaDB, Debian's
// WordPress, php -S, the real relay, Debian's headless Chromium).
//
// Both timestamps are taken inside the browsers on the same clock
// (performance.timeOrigin + now()): Alice's at the Enter keydown on the
// composer, Bob's when the message's <li> is added to his conversation
// (MutationObserver), so Playwright's own round trips are not counted.
//
//   node bench/send-render.js [--messages N] [--out FILE] [--help]
//   env: BM_PLUGIN_ZIP (the plugin to install; `make plugin-zip`),
//        BM_EXT_SO, BM_RELAY_BIN (as the e2e)

import fs from 'node:fs';
import path from 'node:path';
import { ROOT, cleanup, person, startSite } from '../e2e/site.js';
import { connected, startConversation } from '../e2e/ui.js';

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log(`usage: node bench/send-render.js [--messages N] [--out FILE]

Alice sends N messages (default 50) one after another on the chat page;
each is timed from the Enter keydown on her page to the moment it is
added to Bob's page. Runs with the extension, then the fallback, and
prints p50/p90/max per implementation, and the p50 of the POST
…/messages request (WordPress's time per send, loopback included), JSON to
--out as well.
Environment: BM_PLUGIN_ZIP, BM_EXT_SO, BM_RELAY_BIN (see mk/e2e.mk).`);
  process.exit(0);
}
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const N = Number(opt('--messages', '50'));
const OUT = opt('--out', null);
const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/** Sends N messages from Alice; resolves with the send→render times (ms). */
async function run(alice, bob, label) {
  await bob.page.evaluate(() => {
    window.__seen = {};
    const ul = document.querySelector('#bm-chat .bmc-messages');
    new MutationObserver((muts) => {
      const now = performance.timeOrigin + performance.now();
      for (const m of muts)
        for (const n of m.addedNodes) {
          const t = n.querySelector?.('.bmc-text')?.textContent;
          if (t && !(t in window.__seen)) window.__seen[t] = now;
        }
    }).observe(ul, { childList: true, subtree: true });
  });
  const input = alice.page.getByLabel('Message', { exact: true });
  await input.evaluate((el) => {
    window.__sent = {};
    el.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') window.__sent[el.value] = performance.timeOrigin + performance.now();
    }, { capture: true });
  });
  const times = [];
  for (let i = 0; i < N; i++) {
    const text = `${label} bench ${i} ${Math.random().toString(36).slice(2, 8)}`;
    await input.fill(text);
    await input.press('Enter');
    await bob.page.waitForFunction((t) => t in window.__seen, text, { timeout: 15000, polling: 20 });
    const [sent, seen] = await Promise.all([
      alice.page.evaluate((t) => window.__sent[t], text),
      bob.page.evaluate((t) => window.__seen[t], text),
    ]);
    times.push(seen - sent);
    process.stderr.write(`\r${label}: ${i + 1}/${N} (last ${(seen - sent).toFixed(1)} ms)   `);
    await new Promise((r) => setTimeout(r, 50));
  }
  process.stderr.write('\n');
  // WordPress's time per send as Alice's page saw it: the POST …/messages
  // requests' request-to-response time (Resource Timing), loopback included.
  const posts = await alice.page.evaluate(() =>
    performance
      .getEntriesByType('resource')
      .filter((e) => /\/threads\/\d+\/messages(\?|$)/.test(e.name) && e.initiatorType === 'fetch' && e.responseEnd > 0)
      .map((e) => e.responseEnd - e.requestStart),
  );
  await alice.page.evaluate(() => performance.clearResourceTimings());
  return { times, posts: posts.slice(-N) };
}

const site = await startSite({ ext: EXT });
const result = {};
try {
  const [alice, bob] = await Promise.all([person(site, 'alice'), person(site, 'bob')]);
  await Promise.all([connected(alice), connected(bob)]);
  await startConversation(alice, 'bo', 'Bob', 'Bench');
  await bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Bench' }).click();
  for (const impl of ['extension', 'fallback']) {
    if (impl === 'fallback') {
      const r = await site.command('http fallback');
      if (r.impl !== 'fallback') throw new Error(`php did not switch to the fallback: ${JSON.stringify(r)}`);
    }
    const { times: t, posts } = await run(alice, bob, impl);
    result[impl] = {
      n: t.length,
      p50_ms: +pct(t, 50).toFixed(1),
      p90_ms: +pct(t, 90).toFixed(1),
      max_ms: +Math.max(...t).toFixed(1),
      post_n: posts.length,
      post_p50_ms: posts.length ? +pct(posts, 50).toFixed(1) : null,
    };
    const r = result[impl];
    console.log(`${impl}: send→render p50 ${r.p50_ms} ms, p90 ${r.p90_ms} ms, max ${r.max_ms} ms over ${t.length}; POST …/messages p50 ${r.post_p50_ms} ms over ${r.post_n}`);
  }
} finally {
  await cleanup();
  await site.stop();
}
if (OUT) fs.writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
