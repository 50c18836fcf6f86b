// Who is online and who is typing: presence asked of the relay over the
// page's socket (only while the tab is visible, batched), typing hints
// sent (at most every TYPING_SEND_MS) and received. Nothing here is
// stored anywhere: hints travel by `pub` and presence is the relay's
// answer of the moment.

/** Presence is asked this often while the tab is visible (ms). */
const PRESENCE_EVERY_MS = 30000;
/** Presence asks for the open thread and this many of the most recent (two relay frames at most). */
const PRESENCE_THREADS = 31;
/** Reasons to ask presence that arrive within this many ms are one ask. */
const PRESENCE_SOON_MS = 100;
/** How long a typing hint is shown without a new one (ms). */
const TYPING_SHOW_MS = 5000;
/** At most one typing hint per this many ms. */
const TYPING_SEND_MS = 2500;

/** Methods of BmChat (installed by bm-chat.js): presence and typing. */
export const presence = {
  /**
   * Presence is asked every PRESENCE_EVERY_MS while the tab is visible
   * only: a hidden tab shows nobody anything, so it sends nothing (the
   * timer stops, and showing the tab again asks at once).
   */
  presenceTimerWhileVisible() {
    clearInterval(this.presenceTimer);
    this.presenceTimer = document.hidden ? null : setInterval(() => this.refreshPresence(), PRESENCE_EVERY_MS);
  },

  /** One refreshPresence for every reason that arrives within PRESENCE_SOON_MS (a burst of subscriptions, a connect). */
  refreshPresenceSoon() {
    if (this.presenceSoon) return;
    this.presenceSoon = setTimeout(() => {
      this.presenceSoon = null;
      this.refreshPresence();
    }, PRESENCE_SOON_MS);
  },

  /**
   * Asks the relay, over the page's socket, who is online in the threads
   * shown (the open one and the most recent): the members with a tab
   * subscribed to the thread, on whichever relay node. No request to
   * WordPress (its REST /presence stays for clients without a socket).
   * The relay answers for threads this socket watches only; the page
   * watches the MAX_LIVE_THREADS most active and the open one.
   */
  async refreshPresence() {
    // A hidden tab shows nobody anything: it does not ask.
    if (!this.client || this.client.state !== 'connected' || document.hidden) return;
    const ids = [...new Set([this.current, ...this.sortedThreads().slice(0, PRESENCE_THREADS).map((t) => t.id)])].filter(Boolean);
    if (!ids.length) return;
    try {
      const wires = ids.map((id) => this.wire.threads.wire(id)).filter((w) => w != null);
      const online = await this.client.presence(wires);
      for (const [wt, users] of online) {
        const t = this.threads.get(this.wire.threads.real(wt));
        if (!t) continue;
        const real = users.map((u) => this.wire.users.real(u));
        t.online = new Set(real.filter((u) => u != null && u !== this.me));
      }
    } catch {
      // Not connected right now, or rate limited: keep what we know.
    }
    this.renderThreadList();
    if (this.current) this.renderHeader();
  },

  /** Sends a typing hint (at most every TYPING_SEND_MS). */
  typing() {
    const t = this.current;
    const wt = t && this.wire.threads.wire(t);
    if (!wt || !this.client || this.client.state !== 'connected') return;
    if (Date.now() - this.typingSentAt < TYPING_SEND_MS) return;
    this.typingSentAt = Date.now();
    this.client.publish(wt, 'typing', { thread: t }).catch(() => {});
  },

  /** A typing hint from another member. */
  onHint(h) {
    if (String(h.type).startsWith('call.')) return this.onCallHint(h);
    const from = this.wire.users.real(Number(h.from));
    if (h.type !== 'typing' || from == null || from === this.me) return;
    const t = this.threads.get(this.wire.threads.real(Number(h.thread)));
    if (!t) return;
    t.online.add(from);
    t.typing.set(from, Date.now() + TYPING_SHOW_MS);
    this.renderTyping();
    this.renderThreadList();
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.renderTyping(), TYPING_SHOW_MS + 50);
  },
};
