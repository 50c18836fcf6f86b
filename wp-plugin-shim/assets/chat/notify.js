// Mentions and notifications on the chat page (issue #16):
// - the composer's `@` completion among the open thread's members (a
//   listbox: arrows move, Enter or Tab insert `@Name`, Escape closes);
//   WordPress parses the sent text against the members itself, the page
//   sends no list;
// - mentions of me highlighted in messages, and an "@" on a thread in the
//   list while a message mentioning me is unread;
// - browser notifications while the tab is hidden (asked for with a
//   button, never on load; a "Not now" is remembered in this browser),
//   with the sender and the decrypted text; a click focuses the tab and
//   opens the thread; never for my own messages;
// - the global unread count (admin bar, [bm_unread]) kept live by the
//   page's own connection (unread.js's UnreadCounter).

import { el } from './dom.js';
import { fmt } from './strings.js';
import { UnreadCounter } from './unread.js';

/** Names offered at most in the completion list. */
const MAX_OPTIONS = 8;
/** A notification's text is cut to this many characters. */
const NOTE_CHARS = 140;
/** Messages older than this (ms) are not notified (a catch-up after a long sleep). */
const NOTE_MAX_AGE_MS = 5 * 60 * 1000;
/** localStorage key remembering "Not now" (or a refusal) for this browser. */
const DECLINED_KEY = 'bm-relay-notify-declined';

/** Case-folded, for comparing names. */
const fold = (s) => String(s).toLocaleLowerCase();
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Methods of BmChat (installed by bm-chat.js): mentions, notifications, the global count. */
export const notify = {
  /** Sets up the completion, the notifications button and the live count (once, at start). */
  startNotify() {
    this.notified = new Set();
    this.unreadCounter = new UnreadCounter(() => this.rest('GET', '/unread'));
    window.bmUnread = this.unreadCounter;
    this.setupMentions();
    this.buildNotifyButton();
  },

  /** Every stored event (events.js, before it is applied). */
  notifyEvent(ev) {
    this.unreadCounter?.soon();
    if (ev.type !== 'message.new') return;
    const d = ev.data || {};
    const sender = Number(d.sender);
    if (sender === this.me) return;
    const t = this.threads.get(Number(d.thread));
    const mentioned = Array.isArray(d.mentions) && d.mentions.map(Number).includes(this.me);
    const visible = this.current === Number(d.thread) && !document.hidden;
    if (t) {
      // Everything before this was read: an older "@" is gone.
      if (!t.unread) t.mentioned = false;
      if (mentioned && !visible) t.mentioned = true;
    }
    if (document.hidden) this.showNotification(d, t, mentioned);
  },

  /** A browser notification for a message, when allowed (once per message). */
  showNotification(d, t, mentioned) {
    if (typeof Notification === 'undefined' || Notification.permission !== 'granted') return;
    if (d.deleted || typeof d.text !== 'string' || this.notified.has(d.id)) return;
    if (d.created && Date.now() - d.created * 1000 > NOTE_MAX_AGE_MS) return;
    this.notified.add(d.id);
    const who = this.name(Number(d.sender));
    const title = mentioned ? fmt(this.t.mentionedYou, who) : t ? fmt(this.t.notifyFrom, who, this.threadTitle(t)) : who;
    const body = d.text.length > NOTE_CHARS ? `${d.text.slice(0, NOTE_CHARS - 1)}…` : d.text;
    let n;
    try {
      // One notification per thread at a time: a newer one replaces it.
      n = new Notification(title, { body, tag: `bm-thread-${d.thread}` });
    } catch {
      return;
    }
    n.onclick = () => {
      window.focus();
      this.openThread(Number(d.thread));
      n.close();
    };
  },

  /** The "Turn on notifications" / "Not now" line in the bar, while the browser has not been asked. */
  buildNotifyButton() {
    const bar = this.root.querySelector('.bmc-bar');
    if (!bar || typeof Notification === 'undefined') return;
    let declined = false;
    try {
      declined = localStorage.getItem(DECLINED_KEY) === '1';
    } catch {
      // Storage blocked: ask while the page is open.
    }
    if (Notification.permission !== 'default' || declined) return;
    const remember = () => {
      try {
        localStorage.setItem(DECLINED_KEY, '1');
      } catch {
        // Not remembered beyond this page.
      }
    };
    const box = el(
      'div',
      { class: 'bmc-notify' },
      el(
        'button',
        {
          type: 'button',
          class: 'bmc-notify-on',
          onclick: async () => {
            let p;
            try {
              p = await Notification.requestPermission();
            } catch {
              p = Notification.permission;
            }
            if (p === 'denied') remember();
            if (p !== 'default') box.remove();
          },
        },
        this.t.notifyOn,
      ),
      el(
        'button',
        {
          type: 'button',
          class: 'bmc-notify-later',
          onclick: () => {
            remember();
            box.remove();
            this.els.input.focus();
          },
        },
        this.t.notifyLater,
      ),
    );
    bar.append(box);
  },

  /** The "@" of a thread in the list while a message mentioning me is unread. */
  mentionMark(t) {
    return t.mentioned && t.unread > 0 ? [el('span', { class: 'bmc-mention-mark', title: this.t.mentionMark, 'aria-label': this.t.mentionMark }, '@')] : [];
  },

  /**
   * A message's text as text nodes, the mentions WordPress found in it as
   * marked spans (`mark` for me). Only the mentioned members' names are
   * looked for, so nothing else in the text is touched.
   */
  textWithMentions(m) {
    const ids = Array.isArray(m.mentions) ? m.mentions.map(Number) : [];
    const byName = new Map();
    for (const u of ids) {
      const name = u === this.me ? this.cfg.name : this.names.get(u);
      if (name) byName.set(fold(name), u);
    }
    if (!byName.size || typeof m.text !== 'string') return [m.text];
    const names = [...byName.keys()].sort((a, b) => b.length - a.length);
    const re = new RegExp(`(?<![\\p{L}\\p{N}_])@(${names.map(escapeRe).join('|')})(?![\\p{L}\\p{N}_])`, 'giu');
    const out = [];
    let at = 0;
    for (const hit of m.text.matchAll(re)) {
      if (hit.index > at) out.push(m.text.slice(at, hit.index));
      const me = byName.get(fold(hit[1])) === this.me;
      out.push(el(me ? 'mark' : 'span', { class: me ? 'bmc-mention bmc-mention-me' : 'bmc-mention' }, hit[0]));
      at = hit.index + hit[0].length;
    }
    if (at < m.text.length) out.push(m.text.slice(at));
    return out;
  },

  /**
   * The composer's completion: a listbox under the message field, which
   * keeps its textbox role (a textarea takes no other) and points at the
   * active option (aria-activedescendant), as a combobox does. Keys are
   * taken in the form's capture phase, ahead of Enter-to-send.
   */
  setupMentions() {
    const input = this.els.input;
    const id = `${input.id}-mentions`;
    const list = el('ul', { id, class: 'bmc-mention-list', role: 'listbox', 'aria-label': this.t.mentionList, hidden: true });
    this.els.composer.append(list);
    input.setAttribute('aria-autocomplete', 'list');
    input.setAttribute('aria-controls', id);
    this.mention = { list, items: [], active: 0, start: -1 };
    input.addEventListener('input', () => this.updateMentions());
    input.addEventListener('click', () => this.updateMentions());
    // Focus gone elsewhere (not just away and back, as a re-render may do).
    input.addEventListener('blur', () =>
      setTimeout(() => {
        if (document.activeElement !== input) this.closeMentions();
      }, 150),
    );
    this.els.composer.addEventListener('keydown', (ev) => this.mentionKey(ev), true);
  },

  /** Opens, filters or closes the list from the text before the caret. */
  updateMentions() {
    const input = this.els.input;
    const t = this.threads.get(this.current);
    const caret = input.selectionStart ?? input.value.length;
    // `@` at the start or after a non-word character, then up to 30
    // characters of a name (spaces too: "Bob Sm").
    const m = /(?:^|[^\p{L}\p{N}_])@([^\s@][^@\n]{0,29}|)$/u.exec(input.value.slice(0, caret));
    if (!t || !m || input.selectionEnd !== caret) return this.closeMentions();
    const q = fold(m[1]);
    const items = (t.participants || [])
      .filter((u) => u !== this.me)
      .map((u) => ({ id: u, name: this.name(u) }))
      .filter((p) => fold(p.name).startsWith(q))
      .sort((a, b) => a.name.localeCompare(b.name))
      .slice(0, MAX_OPTIONS);
    if (!items.length) return this.closeMentions();
    const same = this.mention.items.map((p) => p.id).join() === items.map((p) => p.id).join();
    this.mention.items = items;
    this.mention.start = caret - m[1].length - 1;
    if (!same || this.mention.list.hidden) this.mention.active = 0;
    this.renderMentions();
  },

  renderMentions() {
    const { list, items, active } = this.mention;
    const input = this.els.input;
    list.replaceChildren(
      ...items.map((p, i) =>
        el(
          'li',
          {
            id: `${list.id}-${i}`,
            role: 'option',
            class: 'bmc-mention-option',
            'aria-selected': String(i === active),
            // mousedown, not click: the field keeps the focus.
            onmousedown: (ev) => {
              ev.preventDefault();
              this.chooseMention(p);
            },
          },
          p.name,
        ),
      ),
    );
    list.hidden = false;
    input.setAttribute('aria-activedescendant', `${list.id}-${active}`);
  },

  closeMentions() {
    if (!this.mention || this.mention.list.hidden) return;
    this.mention.list.hidden = true;
    this.mention.items = [];
    this.els.input.removeAttribute('aria-activedescendant');
  },

  /** Arrows, Enter/Tab and Escape while the list is open. */
  mentionKey(ev) {
    const mm = this.mention;
    if (!mm || mm.list.hidden || ev.target !== this.els.input || ev.isComposing) return;
    const n = mm.items.length;
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      mm.active = (mm.active + (ev.key === 'ArrowDown' ? 1 : n - 1)) % n;
      this.renderMentions();
    } else if ((ev.key === 'Enter' || ev.key === 'Tab') && !ev.shiftKey) {
      this.chooseMention(mm.items[mm.active]);
    } else if (ev.key === 'Escape') {
      this.closeMentions();
    } else return;
    ev.preventDefault();
    ev.stopPropagation();
  },

  /** Replaces the typed `@query` with `@Name ` and puts the caret after it. */
  chooseMention(p) {
    const input = this.els.input;
    const { start } = this.mention;
    const caret = input.selectionStart ?? input.value.length;
    if (!p || start < 0) return this.closeMentions();
    const insert = `@${p.name} `;
    input.value = input.value.slice(0, start) + insert + input.value.slice(caret);
    const at = start + insert.length;
    input.setSelectionRange(at, at);
    this.closeMentions();
    input.focus();
  },
};
