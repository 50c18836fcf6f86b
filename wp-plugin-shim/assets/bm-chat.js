// The chat page behind `[bm_chat]`: thread list, conversation, composer.
//
// WordPress (the plugin's REST API bm/v1) is the only store: every write is
// a REST call, and the page shows what WordPress says. The relay (through
// BmClient) only makes it immediate: pushed events are applied as they
// arrive, typing hints travel by `pub` and are never stored, and after
// every (re)connect the page catches up over REST, so nothing pushed while
// the socket was down is missed.
//
// User content is always set with textContent, never as HTML.
//
// This file is the entry point the shortcode loads: the BmChat class (its
// state, set up in the constructor, and start()) and the mount that sets
// `window.bmChat`. Its methods live by concern in ./chat/ (one module each,
// a header saying what it owns) and are installed on BmChat.prototype
// below, so every module's code runs with `this` the one page object: the
// views, the store and the relay glue call each other as before, and
// `window.bmChat` keeps its whole surface (tests and site scripts read
// it). A feature adds its own module there and lists it in install(); a
// method name defined twice is an error at load, not a silent override.

import { WireIds } from './bm-wire.js';
import { DEFAULT_STRINGS, plural, scriptTranslations } from './chat/strings.js';
import { rest } from './chat/rest.js';
import { relay } from './chat/relay.js';
import { presence } from './chat/presence.js';
import { store } from './chat/store.js';
import { catchup } from './chat/catchup.js';
import { events } from './chat/events.js';
import { threadList } from './chat/thread-list.js';
import { newThread } from './chat/new-thread.js';
import { conversation } from './chat/conversation.js';
import { messages } from './chat/messages.js';
import { composer } from './chat/composer.js';
import { frame } from './chat/frame.js';
import { pins } from './chat/pins.js';
import { search } from './chat/search.js';
import { attachments } from './chat/attachments.js';
import { notify } from './chat/notify.js';
import { receipts } from './chat/receipts.js';
import { avatars } from './chat/avatars.js';
import { picker } from './chat/picker.js';
import { calls } from './chat/calls.js';

/** Polling interval when there is no relay at all (ms). */
const NO_RELAY_POLL_MS = 5000;

/**
 * One chat page. `root` is the `#bm-chat` mount element; its `data-config`
 * holds `{rest, nonce, user, strings?}`.
 */
export class BmChat {
  /** @param {HTMLElement} root */
  constructor(root, config) {
    this.root = root;
    this.cfg = config;
    this.me = Number(config.user);
    /** What the relay calls our users and threads (pseudonyms in protocol 2; bm-wire.js). */
    this.wire = new WireIds();
    this.t = { ...DEFAULT_STRINGS, ...(config.strings || {}), ...scriptTranslations(DEFAULT_STRINGS) };
    /** A count-dependent string of the page for `n` (for tests and add-ons too). */
    this.plural = (key, n) => plural(this.t[key], n);
    /** @type {Map<number, any>} thread id → thread state */
    this.threads = new Map();
    /** @type {Map<number, string>} user id → display name */
    this.names = new Map([[this.me, this.t.you]]);
    this.current = null;
    this.bundleCache = null;
    /** @type {Map<string, number>} thread → when its keys were last fetched for an unknown key id */
    this.keyFetchedAt = new Map();
    /** @type {Map<string, number>} thread → when it was last resynced for an unopenable event */
    this.resyncedAt = new Map();
    this.bundlePromise = null;
    this.client = null;
    this.typingSentAt = 0;
    this.readTimer = null;
    this.connState = 'connecting';
    this.polling = false;
    this.loadingThreads = null;
    this.build();
  }

  /** Loads the threads, opens one, connects to the relay. */
  async start() {
    this.setConn('connecting');
    this.startNotify();
    try {
      await this.loadThreads();
    } catch (e) {
      this.showError(e);
    }
    const wanted = Number((/^#thread-(\d+)$/.exec(location.hash) || [])[1]);
    const first = this.threads.has(wanted) ? wanted : this.sortedThreads()[0]?.id;
    if (first) await this.openThread(first, { focus: false });
    let b;
    try {
      b = await this.bundle(true);
    } catch (e) {
      b = null;
    }
    if (!b || !b.raw.url || !b.raw.site) {
      // No relay configured (or /token refused): WordPress alone, polled.
      this.setConn('no-relay');
      this.noRelayTimer = setInterval(() => this.catchUp({ reconnect: true }).catch(() => {}), NO_RELAY_POLL_MS);
      return;
    }
    this.startClient(b.raw);
    this.presenceTimerWhileVisible();
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && this.current) this.scheduleRead(this.current);
      if (!document.hidden) this.refreshPresence();
      this.presenceTimerWhileVisible();
    });
  }
}

/**
 * Puts each part's methods on `cls.prototype`, as class methods are (not
 * enumerable); a name already there (two parts, or a part and the class)
 * throws, so a feature module cannot silently replace another's method.
 */
function install(cls, ...parts) {
  for (const part of parts) {
    for (const [name, desc] of Object.entries(Object.getOwnPropertyDescriptors(part))) {
      if (Object.prototype.hasOwnProperty.call(cls.prototype, name)) throw new Error(`BmChat: ${name} is defined twice`);
      Object.defineProperty(cls.prototype, name, { ...desc, enumerable: false });
    }
  }
}

install(BmChat, rest, relay, presence, store, catchup, events, threadList, newThread, conversation, messages, composer, frame, pins, search, attachments, notify, receipts, avatars, picker, calls);

/** Mounts the chat on `#bm-chat` (the `[bm_chat]` shortcode's element). */
function mount() {
  const root = document.getElementById('bm-chat');
  if (!root || root.dataset.mounted) return;
  root.dataset.mounted = '1';
  let config;
  try {
    config = JSON.parse(root.dataset.config || '{}');
  } catch {
    config = {};
  }
  if (!config.rest || !config.nonce || !config.user) {
    root.textContent = 'bm-chat: missing configuration';
    return;
  }
  const chat = new BmChat(root, config);
  // A handle for the site's own scripts and for tests (e.g. to read state).
  window.bmChat = chat;
  chat.start();
}

if (typeof document !== 'undefined') {
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', mount);
  else mount();
}
