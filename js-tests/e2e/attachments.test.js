// End to end, attachments (issue #16): Alice, with the keyboard, attaches
// an image and a text file in the composer (each uploaded at once to
// WordPress, its progress shown), sends them with a line of text; Bob's
// page shows the image as a thumbnail and the file as a link with its name
// and size, live (the sealed `message.new` carries only their references),
// and both come to Bob through the plugin's gated route: the thumbnail is
// the small one, the link gives the file's bytes, the image's link its full
// size. Carol, not a member, gets a 403 for the same URL. Screenshots in
// run/e2e-artifacts/ (att-*).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cleanup, person, shot, startSite, until } from './site.js';
import { connected, msg, open, realErrors, startConversation } from './ui.js';

const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');

/** @type {any} */ let site;
/** @type {any} */ let alice;
/** @type {any} */ let bob;
/** @type {any} */ let carol;

/** A 800 × 600 PNG (PHP's GD: the e2e has no image library of its own). */
function png() {
  const code =
    '$i = imagecreatetruecolor(800, 600); imagefilledrectangle($i, 0, 0, 800, 600, imagecolorallocate($i, 37, 99, 235));' +
    ' imagefilledellipse($i, 400, 300, 420, 420, imagecolorallocate($i, 250, 204, 21)); ob_start(); imagepng($i); echo base64_encode(ob_get_clean());';
  return Buffer.from(execFileSync('php', ['-r', code]).toString(), 'base64');
}

before(async () => {
  assert.ok(fs.existsSync(EXT), `${EXT} is missing: run \`make ext\``);
  site = await startSite({ ext: EXT });
  [alice, bob, carol] = await Promise.all([person(site, 'alice'), person(site, 'bob'), person(site, 'carol')]);
});

after(async () => {
  await cleanup();
  if (site) await site.stop();
});

test('Alice attaches an image and a text file; Bob sees the thumbnail and the link live, and downloads both', async (t) => {
  await Promise.all([connected(alice), connected(bob)]);
  await startConversation(alice, 'bo', 'Bob', 'Files');
  await bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Files' }).waitFor({ timeout: 5000 });
  await open(bob, 'Files');

  const a = alice.page;
  const image = png();
  const notes = 'Agenda\n1. budget\n2. venue\n'.repeat(200);
  // The attach button is a labelled button reached with the keyboard.
  const attach = a.getByRole('button', { name: 'Attach files' });
  // Focus it, check it still holds the focus, press Enter: the page asks
  // the hidden file input for the browser's chooser (its click, counted
  // here with the OS dialog prevented). Not Playwright's file-chooser
  // event: whether its interception is armed in the browser before the
  // key lands is a race of Playwright's (in two CI runs the first Enter
  // of a fresh page gave no event, with the button focused), not ours.
  const fileInput = a.locator('#bm-chat input[type="file"]');
  await fileInput.evaluate((input) => {
    window.__chooser = 0;
    input.addEventListener('click', (ev) => {
      window.__chooser++;
      ev.preventDefault();
    });
  });
  await attach.focus();
  assert.ok(await attach.evaluate((b) => document.activeElement === b), 'the attach button holds the focus');
  await a.keyboard.press('Enter');
  await until(() => a.evaluate(() => window.__chooser === 1), 5000, 'Enter on the focused "Attach files" button to open the file chooser');
  assert.equal(await fileInput.evaluate((i) => i.multiple), true, 'several files at once');
  await fileInput.setInputFiles([
    { name: 'venue.png', mimeType: 'image/png', buffer: image },
    { name: 'agenda.txt', mimeType: 'text/plain', buffer: Buffer.from(notes) },
  ]);
  const uploads = a.locator('#bm-chat .bmc-uploads');
  await uploads.getByRole('progressbar', { name: 'Uploading venue.png' }).waitFor({ state: 'attached', timeout: 5000 });
  await uploads.locator('.bmc-upload[data-state="ready"]').nth(1).waitFor({ timeout: 15000 });
  await shot(a, 'att-01-alice-composer-files-ready');
  assert.deepEqual(await uploads.locator('.bmc-upload-name').allTextContents(), [`venue.png (${await sizeText(a, image.length)})`, `agenda.txt (${await sizeText(a, notes.length)})`]);

  const text = 'Venue photo and agenda';
  const input = a.getByLabel('Message', { exact: true });
  await input.fill(text);
  const t0 = Date.now();
  await input.press('Enter');
  const got = msg(bob, text);
  const thumb = got.getByRole('link', { name: 'Open venue.png full size' }).locator('img');
  await thumb.waitFor({ timeout: 10000 });
  t.diagnostic(`Enter on Alice's page → message with both files on Bob's: ${Date.now() - t0} ms`);
  assert.equal(await uploads.locator('.bmc-upload').count(), 0, 'the composer is empty again');
  // The thumbnail loaded (through the gated route) and is the small size.
  await bob.page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await thumb.elementHandle(), { timeout: 10000 });
  assert.deepEqual(await thumb.evaluate((img) => [img.naturalWidth, img.naturalHeight, img.alt]), [300, 225, 'venue.png']);
  const link = got.getByRole('link', { name: `agenda.txt (${await sizeText(bob.page, notes.length)})` });
  await link.waitFor({ timeout: 2000 });
  await got.scrollIntoViewIfNeeded();
  await shot(bob.page, 'att-02-bob-sees-thumbnail-and-link');
  await shot(alice.page, 'att-03-alice-sent');

  // The downloads, as Bob's browser gets them (his login cookie, the page's nonce).
  const fetchAs = (page, href) =>
    page.evaluate(async (u) => {
      const r = await fetch(u, { credentials: 'same-origin' });
      const b = new Uint8Array(await r.arrayBuffer());
      return { status: r.status, type: r.headers.get('content-type'), disposition: r.headers.get('content-disposition'), nosniff: r.headers.get('x-content-type-options'), bytes: Array.from(b) };
    }, href);
  const file = await fetchAs(bob.page, await link.getAttribute('href'));
  assert.equal(file.status, 200);
  assert.match(file.type, /^text\/plain/);
  assert.match(file.disposition, /^attachment; filename="agenda.txt"/);
  assert.equal(file.nosniff, 'nosniff');
  assert.equal(Buffer.from(file.bytes).toString(), notes, 'the same bytes');
  const fullHref = await got.getByRole('link', { name: 'Open venue.png full size' }).getAttribute('href');
  const full = await fetchAs(bob.page, fullHref);
  assert.deepEqual([full.status, full.type], [200, 'image/png']);
  assert.ok(Buffer.from(full.bytes).equals(image), 'the full image, as uploaded');

  // Carol is not in the conversation: the same URL (with her own nonce) is refused.
  const carolUrl = await carol.page.evaluate((u) => {
    const x = new URL(u);
    x.searchParams.set('_wpnonce', window.bmChat.cfg.nonce);
    return x.toString();
  }, fullHref);
  const refused = await fetchAs(carol.page, carolUrl);
  assert.equal(refused.status, 403);
  assert.equal(Buffer.from(refused.bytes).includes(image.subarray(0, 64)), false);

  // A files-only message: Bob's list previews it by the file's name,
  // live and after a reload (the thread's shape carries the references).
  await fileInput.setInputFiles({ name: 'minutes.txt', mimeType: 'text/plain', buffer: Buffer.from('minutes\n') });
  await uploads.locator('.bmc-upload[data-state="ready"]').waitFor({ timeout: 15000 });
  await input.press('Enter');
  const preview = bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Files' }).locator('.bmc-preview');
  await until(async () => (await preview.textContent()) === 'Alice: 📎 minutes.txt', 10000, 'the live preview of a files-only message');
  await bob.page.reload();
  await connected(bob);
  await until(async () => (await preview.textContent()) === 'Alice: 📎 minutes.txt', 10000, 'the same preview after a reload');

  for (const p of [alice, bob, carol]) assert.deepEqual(realErrors(p), [], `${p.login}'s page errors`);
});

/** The size as the page writes it (the browser's locale). */
function sizeText(page, n) {
  return page.evaluate(async (bytes) => (await import(new URL('chat/attachments.js', document.querySelector('script[src*="bm-chat.js"]').src).href)).formatBytes(bytes), n);
}
