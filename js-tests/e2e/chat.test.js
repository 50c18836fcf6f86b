// End to end: the [bm_chat] page in Debian's headless Chromium against a
// real site on loopback — a private MariaDB, Debian's WordPress with the
// plugin, `php -S` (4 workers) loading the built extension (and later the
// pure-PHP fallback), and the real relay. Alice, Bob and Carol each have
// their own browser, logged in through wp-login.php. Every check reads
// what a person sees on the page. Screenshots go to run/e2e-artifacts/.
//
// The tests run in order and share the site (starting it takes ~10 s).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cleanup, person, relayPost, shot, sleep, startSite, until } from './site.js';
import { conn, connected, msg, open, react, realErrors, send, startConversation, texts, unshared } from './ui.js';

const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');
/** Browser tokens live this long (s), so the suite sees pages refresh them. */
const TOKEN_TTL = 20;

/** @type {any} */ let site;
/** @type {any} */ let alice;
/** @type {any} */ let bob;
/** @type {any} */ let carol;
/** the Alice–Bob thread */
let lunch = 0;


before(async () => {
  assert.ok(fs.existsSync(EXT), `${EXT} is missing: run \`make ext\``);
  site = await startSite({ ext: EXT, tokenTtl: TOKEN_TTL });
  assert.equal(site.impl, 'extension', 'php -S runs the bm_relay extension');
  [alice, bob] = await Promise.all([person(site, 'alice'), person(site, 'bob')]);
});

after(async () => {
  for (const p of [alice, bob, carol]) {
    if (p) await shot(p.page, `final-${p.login}`).catch(() => {});
  }
  await cleanup();
  if (site) await site.stop();
});

test('Alice finds Bob by name and starts a conversation; it appears on his page', async () => {
  await Promise.all([connected(alice), connected(bob)]);
  const a = alice.page;
  lunch = await startConversation(alice, 'bo', 'Bob', 'Lunch');
  assert.ok(lunch > 0);
  // Pushed to Bob (thread.added, sealed with his user key): no reload.
  await bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Lunch' }).waitFor({ timeout: 5000 });
  await open(bob, 'Lunch');
  await shot(a, '01-alice-new-thread');
});

test('Alice sends; Bob sees it, decrypted, without a reload — as text, not HTML', async (t) => {
  const text = 'Hello Bob <b>not bold</b> 👋';
  const input = alice.page.getByLabel('Message', { exact: true });
  await input.fill(text);
  const t0 = Date.now();
  await input.press('Enter');
  // A bound that only catches a hang: the latency is reported, and
  // measured by the benchmarks, not asserted here.
  await msg(bob, text).waitFor({ timeout: 10000 });
  const elapsed = Date.now() - t0;
  t.diagnostic(`Enter on Alice's page → shown on Bob's: ${elapsed} ms`);
  assert.equal(await bob.page.locator('#bm-chat .bmc-messages b').count(), 0, 'no markup from message text');
  assert.equal(await msg(bob, text).locator('.bmc-author').textContent(), 'Alice');
  assert.ok((await bob.page.evaluate(() => window.bmChat.client.stats.delivered)) >= 1, 'it came through the relay socket');
  // Alice is online: the dot by the conversation and the member line say so.
  const dot = bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Lunch' }).locator('.bmc-dot');
  await until(async () => (await dot.getAttribute('data-online')) === 'true', 5000, 'the online dot');
  await bob.page.locator('#bm-chat .bmc-members', { hasText: 'Alice (online)' }).waitFor({ timeout: 2000 });
  await shot(bob.page, '02-bob-received');
});

test('the connection outlives its token: the page refreshes it through POST /token', async (t) => {
  // Tokens live TOKEN_TTL s; the page's socket, opened with the first one,
  // stays up past its expiry with no reconnect, and messages still flow.
  const a = alice.page;
  const start = await a.evaluate(() => ({ exp: window.bmChat.bundleCache.raw.exp, reconnects: window.bmChat.client.stats.reconnects }));
  const tokenCalls = [];
  const onRequest = (r) => {
    if (r.method() === 'POST' && r.url().endsWith('/wp-json/bm/v1/token')) tokenCalls.push(Date.now());
  };
  a.on('request', onRequest);
  const states = [];
  const wait = (start.exp + 2) * 1000 - Date.now();
  assert.ok(wait < (TOKEN_TTL + 3) * 1000, `token expires in ${wait} ms`);
  for (const end = Date.now() + wait; Date.now() < end; ) {
    states.push(await conn(alice));
    await sleep(250);
  }
  a.off('request', onRequest);
  t.diagnostic(`watched ${wait} ms, until 2 s after the newest token had expired; ${tokenCalls.length} POST /token meanwhile`);
  assert.ok(tokenCalls.length >= 1, 'the page asked WordPress for a new token');
  assert.deepEqual([...new Set(states)], ['connected'], 'never left connected');
  assert.equal(await a.evaluate(() => window.bmChat.client.stats.reconnects), start.reconnects, 'no reconnect');
  await send(bob, 'still here');
  await msg(alice, 'still here').waitFor({ timeout: 1000 });
});

test('Bob sees that Alice is typing (a relay hint, never stored)', async () => {
  await alice.page.getByLabel('Message', { exact: true }).pressSequentially('Are you', { delay: 30 });
  await bob.page.locator('#bm-chat .bmc-typing', { hasText: 'Alice is typing…' }).waitFor({ timeout: 3000 });
  await shot(bob.page, '03-bob-sees-typing');
  await alice.page.getByLabel('Message', { exact: true }).fill('');
  // It goes away by itself, and nothing was stored.
  await bob.page.locator('#bm-chat .bmc-typing', { hasText: 'Alice is typing…' }).waitFor({ state: 'detached', timeout: 8000 });
  assert.ok(!(await texts(bob)).includes('Are you'));
});

test('hints sealed with made-up key epochs do not make Bob\'s page hammer WordPress', async (t) => {
  // Alice (a member, running her own code over her socket) sends hints
  // sealed with keys of epochs nobody has: the next one, and absurd ones.
  const calls = [];
  const onRequest = (r) => {
    const u = r.url();
    if (u.includes('/wp-json/bm/v1/')) calls.push(`${r.method()} ${u.replace(/^.*\/wp-json\/bm\/v1/, '').replace(/\?.*$/, '')}`);
  };
  bob.page.on('request', onRequest);
  const sent = await alice.page.evaluate(async (thread) => {
    const chat = window.bmChat;
    const src = document.querySelector('script[type="module"][src*="bm-chat.js"]').src;
    const c = await import(new URL('bm-crypto.js', src).href);
    const key = await c.importAesKey(crypto.getRandomValues(new Uint8Array(32)));
    const epoch = chat.threads.get(thread).epoch;
    const wire = chat.wire.threads.wire(thread); // what the relay calls it
    let n = 0;
    // The next epoch, a few plausible ones, and absurd ones (up to 2^32-1).
    const epochs = [epoch + 1, epoch + 2, epoch + 5, epoch + 1000000, 4294967295];
    for (let i = 0; i < 40; i++) {
      const e = await c.sealEnvelope(key, chat.client.o.site, `t/${wire}/${epochs[i % epochs.length]}`, 'typing', { on: true });
      try {
        await chat.client._request({ op: 'pub', thread: wire, e });
        n++;
      } catch {
        // rate limited by the relay: fine, fewer hints
      }
      await new Promise((r) => setTimeout(r, 110));
    }
    return n;
  }, lunch);
  await sleep(1000);
  bob.page.off('request', onRequest);
  const tokens = calls.filter((c) => c === 'POST /token').length;
  const lists = calls.filter((c) => c === 'GET /threads').length;
  t.diagnostic(`${sent} bad hints over ~5 s; Bob's page made ${calls.length} REST calls: ${calls.join(', ') || 'none'}`);
  assert.ok(sent >= 20, `only ${sent} hints went out`);
  // One key refetch for the thread at most (plus, maybe, the page's own
  // token refresh: tokens live 20 s in this suite), one resync at most.
  assert.ok(tokens <= 2, `${tokens} POST /token`);
  assert.ok(lists <= 1, `${lists} resyncs (GET /threads)`);
  assert.ok(calls.filter((c) => /^GET \/threads\/\d+\/messages$/.test(c)).length <= 1, 'at most one catch-up of the thread');
  // The page still works.
  await send(alice, 'after the noise');
  await msg(bob, 'after the noise').waitFor({ timeout: 2000 });
});

test('the read mark reaches Alice', async () => {
  // Bob has the conversation open: his page marks it read; Alice's page
  // shows "Read" on her message.
  const mark = msg(alice, 'Hello Bob <b>not bold</b> 👋').locator('.bmc-mark');
  await until(async () => (await mark.getAttribute('data-status')) === 'read', 5000, 'the read mark');
  assert.equal(await mark.locator('.bmc-mark-label').textContent(), 'Read');
  assert.equal(await bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Lunch' }).locator('.bmc-unread').count(), 0, 'no unread badge for Bob');
  await shot(alice.page, '04-alice-read-mark');
});

test('after a reload Alice still sees Bob\'s read mark: WordPress gives every member\'s', async () => {
  await alice.page.reload();
  await connected(alice);
  await open(alice, 'Lunch');
  // Bob reads nothing new meanwhile (no `read` event after the reload): the
  // mark can only come from the thread's REST shape.
  const mark = msg(alice, 'Hello Bob <b>not bold</b> 👋').locator('.bmc-mark');
  await until(async () => (await mark.getAttribute('data-status')) === 'read', 5000, 'the read mark after the reload');
  assert.equal(await mark.locator('.bmc-mark-label').textContent(), 'Read');
  const fromRest = await alice.page.evaluate(([t, b]) => window.bmChat.threads.get(t).readBy.get(b), [lunch, bob.id]);
  assert.ok(fromRest > 0, `Bob's mark on Alice's page: ${fromRest}`);
  await shot(alice.page, '04b-alice-read-mark-after-reload');
});

test('reactions, edit and delete reach the other page', async () => {
  await send(alice, 'typo here');
  await msg(bob, 'typo here').waitFor({ timeout: 2000 });
  await react(bob, 'typo here', '👍');
  await msg(alice, 'typo here').locator('.bmc-reaction', { hasText: '👍 1' }).waitFor({ timeout: 3000 });

  await msg(alice, 'typo here').getByRole('button', { name: 'Edit' }).click();
  await alice.page.locator('#bm-chat .bmc-editform textarea').fill('no typo here');
  await alice.page.locator('#bm-chat .bmc-editform').getByRole('button', { name: 'Save' }).click();
  await msg(bob, 'no typo here').locator('.bmc-edited').waitFor({ timeout: 3000 });
  assert.equal(await msg(bob, 'no typo here').locator('.bmc-reaction').textContent(), '👍 1', 'the reaction survives the edit');

  alice.page.once('dialog', (d) => d.accept());
  await msg(alice, 'no typo here').getByRole('button', { name: 'Delete' }).click();
  await until(async () => !(await texts(bob)).includes('no typo here'), 3000, 'the deletion on Bob’s page');
  assert.ok((await texts(bob)).includes('Message deleted'));
  await shot(bob.page, '05-bob-reaction-edit-delete');
});

test('Alice pins a message: Bob\'s page shows the pinned bar live; Bob unpins it, Alice\'s bar empties live', async () => {
  const text = 'Meet at 12:30 by the fountain';
  await send(alice, text);
  await msg(bob, text).waitFor({ timeout: 2000 });
  await msg(alice, text).getByRole('button', { name: 'Pin', exact: true }).click();
  const aliceBar = alice.page.locator('#bm-chat .bmc-pins');
  const bobBar = bob.page.locator('#bm-chat .bmc-pins');
  // Pushed (message.pin, sealed with the thread key): no reload on Bob's side.
  await bobBar.getByRole('button', { name: `Show pinned message: Alice: ${text}` }).waitFor({ timeout: 5000 });
  assert.equal(await bobBar.getByRole('heading').textContent(), 'Pinned messages');
  assert.equal(await bobBar.locator('.bmc-pin-show').textContent(), `Alice: ${text}`);
  await aliceBar.getByRole('button', { name: `Show pinned message: You: ${text}` }).waitFor({ timeout: 2000 });
  assert.equal(await msg(bob, text).getByRole('button', { name: 'Unpin', exact: true }).count(), 1, 'the message\'s own button says Unpin');
  assert.equal(await msg(bob, text).evaluate((li) => li.classList.contains('bmc-pinned')), true);

  // With the keyboard: each pin is a button; Enter on it scrolls to the message and focuses it.
  await bobBar.getByRole('button', { name: `Show pinned message: Alice: ${text}` }).focus();
  await bob.page.keyboard.press('Enter');
  await until(
    async () => bob.page.evaluate(() => !!document.activeElement && document.activeElement.matches('li.bmc-msg') && document.activeElement.textContent.includes('fountain')),
    3000,
    'focus on the pinned message',
  );
  await shot(bob.page, '05b-bob-pinned-bar');
  await shot(alice.page, '05c-alice-pinned-bar');

  await bobBar.getByRole('button', { name: `Unpin: ${text}` }).click();
  await until(async () => !(await aliceBar.isVisible()), 5000, 'Alice\'s pinned bar to empty');
  assert.equal(await aliceBar.locator('li').count(), 0);
  assert.equal(await msg(alice, text).getByRole('button', { name: 'Pin', exact: true }).count(), 1);
  await until(async () => !(await bobBar.isVisible()), 2000, 'Bob\'s own bar to empty');
  assert.equal(await bob.page.evaluate(() => document.activeElement?.classList.contains('bmc-input')), true, 'focus left the emptied bar for the composer, not the page body');
  await shot(alice.page, '05d-alice-unpinned');
});

test('Bob’s socket is killed; Alice sends three; Bob reconnects and shows all three once, in order', async () => {
  // The relay itself closes Bob's sockets (POST /v1/disconnect, close code
  // 4003), and Bob's page cannot get a new token from WordPress until
  // Alice has sent — so the three can only reach him by the catch-up
  // after his reconnect.
  let release;
  const gate = new Promise((r) => (release = r));
  const held = '**/wp-json/bm/v1/token';
  await bob.page.route(held, async (route) => {
    await gate;
    await route.continue().catch(() => {});
  });
  const relayKey = Buffer.from(site.relay_key, 'base64url');
  const r = await relayPost(site.relay_port, site.site, relayKey, '/v1/disconnect', { users: [bob.wire] });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.ok(r.body.closed >= 1, 'Bob had a socket');
  await until(async () => (await conn(bob)) !== 'connected', 5000, 'Bob’s page to show it lost the connection');

  for (const t of ['one', 'two', 'three']) await send(alice, t);
  await sleep(300);
  assert.ok(!(await texts(bob)).includes('one'), 'nothing reached Bob while he was cut off');
  assert.equal(await msg(alice, 'one').locator('.bmc-mark').getAttribute('data-status'), 'sent', 'not "Delivered": Bob had no socket');
  await shot(bob.page, '06-bob-cut-off');

  release();
  await until(async () => (await texts(bob)).includes('three'), 10000, 'the three messages on Bob’s page');
  await connected(bob);
  await bob.page.unroute(held);
  const shown = await texts(bob);
  for (const t of ['one', 'two', 'three']) assert.equal(shown.filter((x) => x === t).length, 1, `"${t}" shown once: ${JSON.stringify(shown)}`);
  assert.deepEqual(shown.slice(-3), ['one', 'two', 'three']);
  await sleep(500);
  assert.deepEqual((await texts(bob)).slice(-3), ['one', 'two', 'three'], 'still once each after the dust settles');
  await shot(bob.page, '07-bob-caught-up');
});

test('relay stopped: Alice’s message is stored; relay restarted: Bob gets it by catch-up', async () => {
  await site.command('stop-relay');
  await Promise.all(
    [alice, bob].map((p) => until(async () => (await conn(p)) !== 'connected', 10000, `${p.login}'s page to show offline`)),
  );
  await send(alice, 'sent while the relay was down');
  // Stored by WordPress: the request succeeded, it is not "Not sent".
  const mark = msg(alice, 'sent while the relay was down').locator('.bmc-mark');
  assert.equal(await mark.getAttribute('data-status'), 'sent');
  await shot(alice.page, '08-alice-relay-down');

  await site.command('start-relay');
  await until(async () => (await texts(bob)).includes('sent while the relay was down'), 20000, 'the message on Bob’s page');
  assert.equal((await texts(bob)).filter((x) => x === 'sent while the relay was down').length, 1);
  await Promise.all([connected(alice, 40000), connected(bob, 40000)]);
  await shot(bob.page, '09-bob-after-restart');
});

test('a removed member can no longer subscribe nor open new messages', async (t) => {
  carol = await person(site, 'carol');
  await connected(carol);
  const trio = await alice.page.evaluate(([b, c]) => window.bmChat.createThread([{ id: b }, { id: c }], 'Trio', '').then(() => window.bmChat.current), [bob.id, carol.id]);
  await carol.page.locator('#bm-chat .bmc-thread', { hasText: 'Trio' }).waitFor({ timeout: 5000 });
  await open(carol, 'Trio');
  await open(bob, 'Trio');
  await send(alice, 'before removal');
  await msg(carol, 'before removal').waitFor({ timeout: 2000 });
  // What Carol holds before she is removed: the thread token and key of epoch 0.
  const old = await carol.page.evaluate((t) => ({ ...window.bmChat.bundleCache.threads.get(t) }), trio);
  assert.equal(old.kid, `t/${old.wire}/0`, 'the key id names what the relay calls the thread');

  const removed = await alice.page.evaluate(([t, c]) => window.bmChat.rest('DELETE', `/threads/${t}/participants/${c}`), [trio, carol.id]);
  assert.equal(removed.epoch, 1);
  // Carol's page: the conversation is gone, and she is told.
  await carol.page.locator('#bm-chat .bmc-thread', { hasText: 'Trio' }).waitFor({ state: 'detached', timeout: 5000 });
  await carol.page.locator('#bm-chat .bmc-notice', { hasText: 'You are no longer a member of “Trio”.' }).waitFor({ timeout: 3000 });

  // WordPress gives her no thread token and no messages.
  const wp = await carol.page.evaluate(async (t) => {
    const b = await window.bmChat.bundle(true);
    const status = await window.bmChat.rest('GET', `/threads/${t}/messages`).then(() => 200, (e) => e.status);
    const sub = await window.bmChat.client.subscribe(window.bmChat.wire.threads.wire(t)).then(() => 'subscribed', (e) => e.code);
    return { hasToken: b.threads.has(t), status, sub };
  }, trio);
  assert.deepEqual(wp, { hasToken: false, status: 403, sub: 'token_refused' });

  // Even with the old thread token and key she kept, what is sent now does
  // not open for her (it is sealed with the epoch-1 key).
  const resub = await carol.page.evaluate(
    ([t, keys]) => {
      const chat = window.bmChat;
      chat.bundleCache.threads.set(t, keys);
      chat.bundleCache.freshFor = 3600e3;
      chat.threads.set(t, { id: t, subject: 'Trio (kept)', participants: [], messages: new Map(), online: new Set(), readBy: new Map(), deliveredTo: new Map(), typing: new Map(), unread: 0 });
      return chat.client.subscribe(chat.wire.threads.wire(t)).then(() => 'subscribed', (e) => e.code);
    },
    [trio, old],
  );
  const dropped0 = await carol.page.evaluate(() => window.bmChat.client.stats.dropped);
  await send(alice, 'after removal');
  await msg(bob, 'after removal').waitFor({ timeout: 2000 });
  await sleep(2500);
  const seen = await carol.page.evaluate((t) => {
    const th = window.bmChat.threads.get(t);
    return th ? [...th.messages.values()].map((m) => m.text) : [];
  }, trio);
  assert.ok(!seen.includes('after removal'), `Carol's page holds no new message: ${JSON.stringify(seen)}`);
  assert.ok(!(await carol.page.content()).includes('after removal'));
  // The removal revoked her thread scope on the relay (/v1/disconnect with
  // the thread, PROTOCOL.md §6): a token issued before it is refused.
  t.diagnostic(`the relay answered Carol's old thread token with: ${resub}`);
  assert.equal(resub, 'forbidden', "the relay refuses Carol's old thread token");
  assert.equal(await carol.page.evaluate(() => window.bmChat.client.stats.dropped), dropped0, 'nothing was routed to her');
  await shot(carol.page, '10-carol-removed');
});

test('the page shows a member online from the relay\'s presence, with no REST /presence call', async () => {
  // From the reload on: no request to WordPress's presence routes, and
  // presence frames over the socket instead.
  const rest = [];
  const frames = [];
  const onRequest = (r) => {
    if (/\/wp-json\/bm\/v1\/(threads\/\d+\/)?presence|[?&]rest_route=\/bm\/v1\/presence/.test(r.url())) rest.push(r.url());
  };
  const onSocket = (ws) => ws.on('framesent', (f) => {
    if (/"op":"presence"/.test(String(f.payload))) frames.push(String(f.payload));
  });
  bob.page.on('request', onRequest);
  bob.page.on('websocket', onSocket);
  try {
    // The page's own socket (?bm_shared=0: Playwright sees a page's
    // WebSockets, not those of the tabs' SharedWorker, docs/CLIENT.md).
    await bob.page.goto(unshared(bob.page.url()));
    await connected(bob);
    await open(bob, 'Lunch');
    // Alice's tab is subscribed to Lunch (on the relay): Bob sees her online.
    const dot = bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Lunch' }).locator('.bmc-dot');
    await until(async () => (await dot.getAttribute('data-online')) === 'true', 5000, 'the online dot');
    await bob.page.locator('#bm-chat .bmc-members', { hasText: 'Alice (online)' }).waitFor({ timeout: 2000 });
    // The timer's ask goes over the socket too.
    const before = frames.length;
    await bob.page.evaluate(() => window.bmChat.refreshPresence());
    await until(async () => frames.length > before, 2000, 'a presence frame');
  } finally {
    bob.page.off('request', onRequest);
    bob.page.off('websocket', onSocket);
  }
  assert.deepEqual(rest, [], 'no REST presence call');
  assert.ok(frames.length >= 1, 'presence asked over the socket');
});

test('counts are plural-correct through WordPress\'s _n(): 1 and 2 unread, and a three-form language', async () => {
  await open(alice, 'Lunch');
  // Bob looks at another conversation while Alice writes in Lunch.
  const other = await bob.page.evaluate((lunchId) => window.bmChat.sortedThreads().find((t) => t.id !== lunchId)?.id, lunch);
  assert.ok(other, 'Bob has another conversation');
  await bob.page.evaluate((id) => window.bmChat.openThread(id), other);
  const badge = bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Lunch' }).locator('.bmc-unread');
  await send(alice, 'plural one');
  await until(async () => (await badge.getAttribute('aria-label').catch(() => null)) === '1 unread message', 5000, '“1 unread message”');
  await send(alice, 'plural two');
  await until(async () => (await badge.getAttribute('aria-label').catch(() => null)) === '2 unread messages', 5000, '“2 unread messages”');
  // The page's forms are what WordPress's _n() says for each count: with
  // a three-form rule (Polish's, through the ngettext filter) too, past
  // the 200 counts the page holds as well.
  await site.command('plural-test on');
  try {
    await bob.page.reload();
    await connected(bob);
    const said = await bob.page.evaluate(() => [1, 2, 5, 22, 112, 212, 222, 1001].map((n) => window.bmChat.plural('unread', n)));
    assert.deepEqual(said, ['one:1', 'few:2', 'many:5', 'few:22', 'many:112', 'many:212', 'few:222', 'many:1001']);
    await until(async () => (await badge.getAttribute('aria-label').catch(() => null)) === 'few:2', 5000, 'the badge in the three-form language');
  } finally {
    await site.command('plural-test off');
  }
  await bob.page.reload();
  await connected(bob);
  await open(bob, 'Lunch');
});

test('the same main flow with the pure-PHP fallback (extension unloaded)', async (t) => {
  const r = await site.command('http fallback');
  assert.equal(r.impl, 'fallback');
  await Promise.all([alice.page.reload(), bob.page.reload()]);
  await Promise.all([connected(alice), connected(bob)]);
  await open(alice, 'Lunch');
  await open(bob, 'Lunch');

  const text = 'through the fallback';
  const input = alice.page.getByLabel('Message', { exact: true });
  await input.fill(text);
  const t0 = Date.now();
  await input.press('Enter');
  await msg(bob, text).waitFor({ timeout: 10000 });
  const elapsed = Date.now() - t0;
  t.diagnostic(`fallback: Enter on Alice's page → shown on Bob's: ${elapsed} ms`);

  await bob.page.getByLabel('Message', { exact: true }).pressSequentially('ok', { delay: 30 });
  await alice.page.locator('#bm-chat .bmc-typing', { hasText: 'Bob is typing…' }).waitFor({ timeout: 3000 });
  await bob.page.getByLabel('Message', { exact: true }).press('Enter');
  await msg(alice, 'ok').waitFor({ timeout: 2000 });

  const mark = msg(alice, text).locator('.bmc-mark');
  await until(async () => (await mark.getAttribute('data-status')) === 'read', 5000, 'the read mark');
  const shown = await texts(bob);
  assert.equal(shown.filter((x) => x === text).length, 1);
  await shot(alice.page, '11-alice-fallback');

  // A message in the conversation Bob does not have open: an unread badge,
  // gone once he opens it (and reads it).
  await open(alice, 'Trio');
  await send(alice, 'unread check');
  const badge = bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Trio' }).locator('.bmc-unread');
  await until(async () => (await badge.count()) === 1 && (await badge.textContent()) === '1', 3000, 'the unread badge');
  assert.equal(await badge.getAttribute('aria-label'), '1 unread message');
  // Bob's page got it (and acknowledged it) but he has not read it: Alice sees "Delivered".
  await until(async () => (await msg(alice, 'unread check').locator('.bmc-mark').getAttribute('data-status')) === 'delivered', 5000, 'the delivered mark');
  await shot(bob.page, '12-bob-unread');
  await open(bob, 'Trio');
  await msg(bob, 'unread check').waitFor({ timeout: 2000 });
  await until(async () => (await badge.count()) === 0, 3000, 'the badge to go');
  await until(async () => (await msg(alice, 'unread check').locator('.bmc-mark').getAttribute('data-status')) === 'read', 5000, 'the read mark');
});

test('readable at phone width (360 px) and no script errors on any page', async () => {
  await bob.page.setViewportSize({ width: 360, height: 740 });
  await bob.page.reload();
  await connected(bob);
  // One pane at a time: the list first, the conversation after a tap.
  await open(bob, 'Lunch');
  assert.ok(await bob.page.getByRole('button', { name: 'Back to conversations' }).isVisible());
  const overflow = await bob.page.evaluate(() => document.querySelector('#bm-chat .bmc').scrollWidth - document.querySelector('#bm-chat .bmc').clientWidth);
  assert.ok(overflow <= 0, `the chat is ${overflow}px wider than the screen`);
  const box = await bob.page.locator('#bm-chat .bmc-input').boundingBox();
  assert.ok(box && box.x >= 0 && box.x + box.width <= 360, 'the composer fits');
  await shot(bob.page, '13-bob-phone');
  for (const p of [alice, bob, carol]) assert.deepEqual(realErrors(p), [], `${p.login}'s page`);
  // No placeholder leaks into what people read (a missing badge once printed "null").
  for (const p of [alice, bob, carol]) {
    const text = await p.page.locator('#bm-chat').innerText();
    assert.ok(!/\b(null|undefined|NaN)\b/.test(text), `${p.login}'s page shows a placeholder: ${text}`);
  }
});

test('a tab open past its nonce\'s life recovers by itself', async () => {
  await bob.page.setViewportSize({ width: 1100, height: 800 });
  await open(bob, 'Lunch');
  await open(alice, 'Lunch');
  // What 24 h do to an open tab: WordPress no longer accepts its nonce.
  await bob.page.evaluate(() => {
    window.bmChat.cfg.nonce = '0123456789';
  });
  await send(bob, 'sent with a stale nonce');
  await msg(alice, 'sent with a stale nonce').waitFor({ timeout: 5000 });
  assert.equal(await msg(bob, 'sent with a stale nonce').locator('.bmc-mark').getAttribute('data-status') !== 'failed', true);
  assert.match(await bob.page.evaluate(() => window.bmChat.cfg.nonce), /^[0-9a-f]{10}$/);
  assert.notEqual(await bob.page.evaluate(() => window.bmChat.cfg.nonce), '0123456789', 'a fresh nonce');
});

test('typing in a new conversation before its messages have loaded: the focus stays in the composer', async () => {
  // The first page of a new thread's messages is held back, as on a slow
  // site: Alice types as soon as the conversation shows. Closing the "New
  // conversation" form used to send the focus back to its button once
  // that page came, so the rest of her words went nowhere (and a mention
  // list she had opened closed).
  const a = alice.page;
  let release;
  const gate = new Promise((r) => (release = r));
  let held = 0;
  const page1 = /\/wp-json\/bm\/v1\/threads\/\d+\/messages\?before=/;
  await a.route(page1, async (route) => {
    held++;
    await gate;
    await route.continue().catch(() => {});
  });
  await startConversation(alice, 'bo', 'Bob', 'Quick question');
  const input = a.getByLabel('Message', { exact: true });
  await input.click();
  await input.pressSequentially('Hi ');
  assert.equal(held, 1, "the new thread's messages were asked for, and held");
  release();
  await a.locator('#bm-chat .bmc-newform').waitFor({ state: 'hidden', timeout: 5000 });
  // The keyboard, not the locator (which would focus the field first).
  await a.keyboard.type('there');
  await a.unroute(page1);
  assert.equal(await input.inputValue(), 'Hi there', 'every key went to the message field');
  assert.ok(await input.evaluate((e) => e === document.activeElement), 'the message field kept the focus');
  // Cancel still returns the focus to the button that opened the form.
  await a.getByRole('button', { name: 'New conversation' }).click();
  await a.locator('#bm-chat .bmc-newform').getByRole('button', { name: 'Cancel' }).click();
  assert.ok(await a.getByRole('button', { name: 'New conversation' }).evaluate((e) => e === document.activeElement), 'Cancel: the focus is back on "New conversation"');
  await input.fill('');
});

test('past 500 conversations the oldest still works: listed, live', async (t) => {
  await bob.page.setViewportSize({ width: 1100, height: 800 });
  // 505 newer conversations between Bob and Carol: Lunch is now past the
  // 500 most active ones (the /token bundle and five pages of the list).
  const r = await site.command('bulk-threads 505 bob carol');
  t.diagnostic(`Bob now has ${r.threads} conversations`);
  assert.ok(r.threads > 505);
  await bob.page.reload();
  await connected(bob, 30000);
  await bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Lunch' }).waitFor({ timeout: 20000 });
  assert.equal(await bob.page.locator('#bm-chat', { hasText: 'no longer a member' }).count(), 0, 'not taken for a removal');
  await open(bob, 'Lunch');
  await open(alice, 'Lunch');
  await send(alice, 'still in touch after 505 others');
  // Live, through the relay: its key came with the thread (GET /threads/{id}).
  await msg(bob, 'still in touch after 505 others').waitFor({ timeout: 5000 });
  assert.ok(await bob.page.evaluate((t) => window.bmChat.bundleCache.keys.has(`t/${window.bmChat.wire.threads.wire(t)}/${window.bmChat.threads.get(t).epoch}`), lunch), 'Bob\'s page holds Lunch\'s key');
});
