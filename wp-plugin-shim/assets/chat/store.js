// The page's state of threads and messages, as WordPress gave it: the
// thread list loaded page by page and merged (a thread gone from the whole
// list was left or removed), one message stored into its thread (unread
// count, list preview, announcement), names and titles, list order, and
// the members' read marks (their delivered marks and the status of our own
// messages: receipts.js). Every change calls the views to re-render what
// it touched.

import { fmt } from './strings.js';
import { RestError } from './rest.js';
import { MAX_LIVE_THREADS } from './relay.js';

/** Pages of 100 threads the list loads at most (10 000 threads). */
const MAX_THREAD_PAGES = 100;

/** Methods of BmChat (installed by bm-chat.js): the thread and message store. */
export const store = {
  /** GET /threads; merges into the list and subscribes to new ones. */
  async loadThreads() {
    if (this.loadingThreads) return this.loadingThreads;
    this.loadingThreads = (async () => {
      try {
        const seen = new Set();
        let complete = false;
        for (let page = 1; page <= MAX_THREAD_PAGES; page++) {
          const r = await this.rest('GET', `/threads?page=${page}&per_page=100`);
          for (const th of r.threads) {
            seen.add(th.id);
            this.mergeThread(th);
          }
          if (!r.has_more || r.threads.length < 100) {
            complete = true;
            break;
          }
        }
        // Threads that are gone from the whole list: we were removed while
        // away. (Had the list been cut short, an unseen thread may just be
        // older: it is kept.)
        if (complete) for (const id of [...this.threads.keys()]) if (!seen.has(id)) this.dropThread(id, true);
        this.renderThreadList();
      } finally {
        this.loadingThreads = null;
      }
    })();
    return this.loadingThreads;
  },

  /** Adds or updates a thread from its REST shape. */
  mergeThread(th) {
    let t = this.threads.get(th.id);
    const isNew = !t;
    if (!t) {
      t = { id: th.id, messages: new Map(), loaded: false, hasMore: false, online: new Set(), readBy: new Map(), deliveredBy: new Map(), typing: new Map() };
      this.threads.set(th.id, t);
    }
    t.subject = th.subject;
    t.createdBy = th.created_by;
    t.participants = th.participants.map((p) => p.id);
    this.wire.learnThread(th);
    for (const p of th.participants) if (p.id !== this.me) this.names.set(p.id, p.name);
    for (const p of th.participants) this.rememberAvatar(p);
    t.unread = this.current === th.id && !document.hidden ? 0 : th.unread;
    t.lastReadId = th.last_read_id;
    // An unread message mentions me (the "@" in the list; notify.js).
    t.mentioned = Number(th.mentions) > 0;
    t.updated = th.updated;
    t.lastMessage = th.last_message;
    t.epoch = th.epoch;
    // The other members' read marks as WordPress has them, so "Read" under
    // our messages survives a reload (pushed `read` events move them on);
    // a member who left takes theirs along.
    for (const u of [...t.readBy.keys()]) if (!t.participants.includes(u)) t.readBy.delete(u);
    for (const p of th.participants) {
      if (p.id !== this.me && p.last_read_id != null) t.readBy.set(p.id, Math.max(t.readBy.get(p.id) || 0, Number(p.last_read_id)));
    }
    this.mergeReceipts(t, th);
    if (this.current === th.id) this.renderMarks(t);
    this.setPinned(t, th.pinned, th.seq);
    // The number of the thread's last event as WordPress had it: the next
    // pushed event should be one more (PROTOCOL.md §4.1).
    t.seq = Math.max(t.seq || 0, Number(th.seq) || 0);
    if (isNew && this.client && this.threads.size <= MAX_LIVE_THREADS) this.subscribe(th.id);
    return t;
  },

  /** Forgets a thread (removed, or left). */
  dropThread(id, notify) {
    const t = this.threads.get(id);
    if (!t) return;
    this.threads.delete(id);
    const wt = this.wire.threads.wire(id);
    if (this.client && wt != null) this.client.unsubscribe(wt).catch(() => {});
    if (notify) this.notice(fmt(this.t.removed, this.threadTitle(t)));
    if (this.current === id) {
      this.current = null;
      this.renderConversation();
    }
    this.renderThreadList();
  },

  /** After a revoked subscription: is the user still a member? */
  async verifyMembership(id) {
    try {
      await this.rest('GET', `/threads/${id}`);
      this.subscribe(id);
    } catch (e) {
      if (e instanceof RestError && (e.status === 403 || e.status === 404)) this.dropThread(id, true);
    }
  },

  /**
   * Stores a message in its thread and updates the page. `live`: it just
   * arrived (unread count, announcement, read mark).
   */
  applyMessage(t, m, { live, clientId } = {}) {
    const known = t.messages.get(m.id);
    if (clientId && t.pending && t.pending.has(clientId)) {
      // Our own message, pushed back before the POST replied.
      const p = t.pending.get(clientId);
      t.pending.delete(clientId);
      if (p.node) p.node.remove();
    }
    const same = known && JSON.stringify(known) === JSON.stringify(m);
    t.messages.set(m.id, m);
    if (known && !same && t.lastMessage && t.lastMessage.id === m.id) {
      // The list's preview follows edits and deletions of the last message.
      t.lastMessage = m;
      this.renderThreadList();
    }
    if (!known) {
      if (m.sender !== this.me) t.online.add(m.sender);
      this.noteReceived(t, m);
      if (!t.lastMessage || m.id >= t.lastMessage.id) t.lastMessage = m;
      if (live && m.sender !== this.me) {
        const visible = this.current === t.id && !document.hidden;
        if (visible) this.scheduleRead(t.id);
        else t.unread = (t.unread || 0) + 1;
        this.announce(fmt(this.t.newMessageFrom, this.name(m.sender), m.deleted ? this.t.deleted : m.text));
      }
      this.renderThreadList();
    }
    if (this.current === t.id && !same) this.renderMessage(t, m);
  },

  name(u) {
    return this.names.get(u) || this.t.someone;
  },

  threadTitle(t) {
    if (t.subject) return t.subject;
    const others = (t.participants || []).filter((u) => u !== this.me).map((u) => this.name(u));
    return others.join(', ') || this.t.someone;
  },

  sortedThreads() {
    return [...this.threads.values()].sort((a, b) => (b.lastMessage?.id || 0) - (a.lastMessage?.id || 0) || (b.updated || 0) - (a.updated || 0) || b.id - a.id);
  },
};
