// The conversation view (the open thread): opening it (latest messages,
// read mark, subscription), earlier history, the header (title, members,
// who is online), the message list as a whole, the typing line, and the
// status marks of our own messages (re-rendered here when marks move; what
// they say is receipts.js). The pinned bar is pins.js. One message's
// markup is messages.js.

import { fmt, plural } from './strings.js';

/** Largest thread id we accept (JSON-safe ids, as the plugin). */
const MAX_ID = Number.MAX_SAFE_INTEGER;

/** Methods of BmChat (installed by bm-chat.js): the open conversation. */
export const conversation = {
  /** Opens a thread: latest 50 messages, read mark, focus the composer. */
  async openThread(id, { focus = true } = {}) {
    const t = this.threads.get(id);
    if (!t) return;
    this.current = id;
    this.subscribe(id);
    // Phone width shows one pane: the conversation once the person picks one.
    if (focus) this.root.classList.add('bmc-show-conv');
    if (location.hash !== `#thread-${id}`) history.replaceState(null, '', `#thread-${id}`);
    this.renderThreadList();
    this.renderConversation();
    if (!t.loaded) {
      try {
        const r = await this.rest('GET', `/threads/${id}/messages?before=${MAX_ID}&limit=50`);
        t.hasMore = r.has_more;
        t.loaded = true;
        for (const m of r.messages) t.messages.set(m.id, m);
      } catch (e) {
        this.showError(e);
      }
      if (this.current === id) this.renderConversation();
    }
    this.loadPins(t).catch((e) => this.showError(e));
    t.unread = 0;
    this.renderThreadList();
    this.scheduleRead(id);
    this.refreshPresenceSoon();
    if (focus && this.current === id) this.els.input.focus();
  },

  /** Loads the 50 messages before the oldest one shown. */
  async loadEarlier() {
    const t = this.threads.get(this.current);
    if (!t) return;
    const oldest = Math.min(...[...t.messages.keys()]);
    const r = await this.rest('GET', `/threads/${t.id}/messages?before=${oldest}&limit=50`);
    t.hasMore = r.has_more;
    for (const m of r.messages) t.messages.set(m.id, m);
    this.renderConversation({ keepScroll: true });
  },

  /** Marks the open thread read up to its newest message (debounced). */
  scheduleRead(id) {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(async () => {
      const t = this.threads.get(id);
      if (!t || this.current !== id || document.hidden) return;
      const ids = [...t.messages.values()].filter((m) => m.sender !== this.me).map((m) => m.id);
      const newest = ids.length ? Math.max(...ids) : 0;
      if (!newest || newest <= (t.lastReadId || 0)) return;
      try {
        const r = await this.rest('POST', `/threads/${id}/read`, { message_id: newest });
        t.lastReadId = r.last_read_id;
        t.unread = r.unread;
        this.renderThreadList();
      } catch {
        // The next open or new message tries again.
      }
    }, 300);
  },

  renderHeader() {
    const t = this.threads.get(this.current);
    if (!t) return;
    this.els.title.textContent = this.threadTitle(t);
    const people = (t.participants || []).map((u) => (u === this.me ? this.t.you : this.name(u) + (t.online.has(u) ? ` (${this.t.online})` : '')));
    this.els.members.textContent = fmt(this.t.members, people.join(', '));
    this.els.members.prepend(this.memberAvatars(t));
    this.renderCallButtons();
  },

  /** Renders the open thread from scratch. */
  renderConversation({ keepScroll = false } = {}) {
    const E = this.els;
    const t = this.threads.get(this.current);
    E.empty.hidden = !!t;
    E.scroller.hidden = E.composer.hidden = !t;
    E.conv.dataset.thread = t ? String(t.id) : '';
    this.renderPins();
    if (!t) {
      E.title.textContent = this.t.title;
      E.members.textContent = '';
      E.list.replaceChildren();
      E.typing.textContent = '';
      return;
    }
    this.renderHeader();
    const before = E.scroller.scrollHeight - E.scroller.scrollTop;
    E.list.replaceChildren(...[...t.messages.values()].sort((a, b) => a.id - b.id).map((m) => this.messageNode(t, m)));
    for (const p of t.pending ? t.pending.values() : []) if (p.node) E.list.append(p.node);
    E.earlier.hidden = !t.hasMore;
    this.renderTyping();
    if (keepScroll) E.scroller.scrollTop = E.scroller.scrollHeight - before;
    else this.scrollToEnd();
  },

  scrollToEnd() {
    const s = this.els.scroller;
    s.scrollTop = s.scrollHeight;
  },

  renderMarks(t) {
    if (this.current !== t.id) return;
    for (const li of this.els.list.querySelectorAll('li.bmc-msg.bmc-own[data-id]')) {
      const m = t.messages.get(Number(li.dataset.id));
      const mark = li.querySelector('.bmc-mark');
      if (!m || !mark || m.deleted) continue;
      this.fillMark(mark, t, m);
    }
  },

  renderTyping() {
    const t = this.threads.get(this.current);
    if (!t) return;
    const now = Date.now();
    for (const [u, until] of t.typing) if (until < now) t.typing.delete(u);
    const who = [...t.typing.keys()];
    const text =
      who.length === 0
        ? ''
        : who.length === 1
          ? fmt(this.t.typing, this.name(who[0]))
          : who.length === 2
            ? fmt(this.t.typingTwo, this.name(who[0]), this.name(who[1]))
            : plural(this.t.typingMany, who.length);
    if (this.els.typing.textContent !== text) this.els.typing.textContent = text;
  },
};
