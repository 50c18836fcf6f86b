// Catching up from WordPress: after every (re)connect and on polls, the
// thread list and the open thread's messages are re-read; a thread's event
// numbers (PROTOCOL.md §4.1) show a gap (an event lost between WordPress
// and this page) at once, and the thread is re-read then, one fill at a
// time per thread.

/** Methods of BmChat (installed by bm-chat.js): catch-up and gap filling. */
export const catchup = {
  /**
   * Brings the page up to date from WordPress: the thread list (unread
   * counts, new threads) and, for the open thread, every message after the
   * oldest one shown (so edits, deletions and reactions missed while
   * offline are refreshed too). Runs after every (re)connect and on polls.
   */
  async catchUp({ reconnect }) {
    await this.loadThreads();
    const t = this.current && this.threads.get(this.current);
    if (t && t.loaded) {
      // After a reconnect, re-read everything shown (edits, deletions and
      // reactions missed while offline); at the first connect, only what
      // came after the initial load.
      const ids = [...t.messages.keys()];
      const from = !ids.length ? 0 : reconnect ? Math.min(...ids) - 1 : Math.max(...ids);
      await this.fetchAfter(t, from);
    }
  },

  /** Catch-up of one thread soon (debounced): the list, and its messages when it is open. */
  resync(id) {
    clearTimeout(this.resyncTimer);
    this.resyncTimer = setTimeout(async () => {
      try {
        await this.loadThreads();
        const t = this.threads.get(id);
        if (t && t.loaded && this.current === id) {
          const ids = [...t.messages.keys()];
          await this.fetchAfter(t, ids.length ? Math.max(...ids) : 0);
        }
      } catch (e) {
        this.showError(e);
      }
    }, 500);
  },

  /** GET messages after `after` until has_more is false (bounded). */
  async fetchAfter(t, after) {
    for (let page = 0; page < 20; page++) {
      const r = await this.rest('GET', `/threads/${t.id}/messages?after=${after}&limit=200`);
      for (const m of r.messages) this.applyMessage(t, m, { live: false });
      if (!r.has_more || !r.messages.length) break;
      after = r.messages[r.messages.length - 1].id;
    }
    if (this.current === t.id) this.scheduleRead(t.id);
  },

  /**
   * A thread event's number (PROTOCOL.md §4.1). One more than the last seen
   * is the normal case; more than one more means events were lost between
   * WordPress and this page (a failed push, a frame lost on the way): the
   * thread is re-read from WordPress at once, not at the next reconnect.
   */
  noteSeq(id, seq) {
    const t = this.threads.get(id);
    if (!t || !Number.isSafeInteger(seq)) return;
    const known = t.seq || 0;
    t.seq = Math.max(known, seq);
    if (seq > known + 1) this.fillGap(t);
  },

  /**
   * Re-reads one thread after a gap: the list (unread count, last message)
   * and, when it is loaded, every message shown (a lost edit, deletion or
   * reaction is refreshed too). One at a time per thread; a gap seen while
   * one is being filled runs once more afterwards.
   */
  async fillGap(t) {
    this.gapsFilled = (this.gapsFilled || 0) + 1;
    if (t.filling) {
      t.fillAgain = true;
      return;
    }
    t.filling = true;
    try {
      do {
        t.fillAgain = false;
        await this.loadThreads();
        if (t.loaded && this.threads.get(t.id) === t) {
          const ids = [...t.messages.keys()];
          await this.fetchAfter(t, ids.length ? Math.min(...ids) - 1 : 0);
        }
      } while (t.fillAgain);
    } catch (e) {
      this.showError(e);
    } finally {
      t.filling = false;
    }
  },
};
