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

Alice and Bob send N messages (default 50) in turn on the chat page; each
is timed from the Enter keydown on the sender's page to the moment it is
added to the other's page. Runs with the extension, then the fallback, and
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

/** Watches a page: when each message is added to its conversation, and when Enter is pressed on its composer. */
async function watch(p) {
  await p.page.evaluate(() => {
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
  const input = p.page.getByLabel('Message', { exact: true });
  await input.evaluate((el) => {
    window.__sent = {};
    el.addEventListener(
      'keydown',
      (e) => {
        if (e.key === 'Enter') window.__sent[el.value] = performance.timeOrigin + performance.now();
      },
      { capture: true },
    );
  });
  return input;
}

/**
 * Sends N messages, Alice and Bob in turn (the site allows 30 messages a
 * minute per person); resolves with the send→render times (ms) and the
 * POST …/messages times.
 */
async function run(alice, bob, label) {
  const inputs = [await watch(alice), await watch(bob)];
  const people = [alice, bob];
  const times = [];
  for (let i = 0; i < N; i++) {
    const from = people[i % 2];
    const to = people[(i + 1) % 2];
    const text = `${label} bench ${i} ${Math.random().toString(36).slice(2, 8)}`;
    await inputs[i % 2].fill(text);
    await inputs[i % 2].press('Enter');
    await to.page.waitForFunction((t) => t in window.__seen, text, { timeout: 15000, polling: 20 });
    const [sent, seen] = await Promise.all([from.page.evaluate((t) => window.__sent[t], text), to.page.evaluate((t) => window.__seen[t], text)]);
    times.push(seen - sent);
    process.stderr.write(`\r${label}: ${i + 1}/${N} (last ${(seen - sent).toFixed(1)} ms)   `);
    await new Promise((r) => setTimeout(r, 50));
  }
  process.stderr.write('\n');
  // WordPress's time per send as the pages saw it: the POST …/messages
  // requests' request-to-response time (Resource Timing), loopback included.
  const posts = [];
  for (const p of people) {
    posts.push(
      ...(await p.page.evaluate(() =>
        performance
          .getEntriesByType('resource')
          .filter((e) => /\/threads\/\d+\/messages(\?|$)/.test(e.name) && e.initiatorType === 'fetch' && e.responseEnd > 0)
          .map((e) => e.responseEnd - e.requestStart),
      )),
    );
    await p.page.evaluate(() => performance.clearResourceTimings());
  }
  return { times, posts };
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
      // A minute between the runs: each person may send 30 messages a minute.
      process.stderr.write('waiting 61 s (the rate limit window)…\n');
      // (site.php reads its commands with PHP's 60 s stream timeout: ask it
      // something now and then so that it does not take the silence for EOF.)
      for (let waited = 0; waited < 61000; waited += 15000) {
        await new Promise((r) => setTimeout(r, 15000));
        await site.command('impl');
      }
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
