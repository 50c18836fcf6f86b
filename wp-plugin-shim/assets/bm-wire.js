// What the relay calls this site's users and threads (docs/PROTOCOL.md
// §3.2). In protocol 2 WordPress gives the relay pseudonyms only; the page
// speaks to the relay in them (subscriptions, presence, typing hints, key
// ids) and to WordPress and its people in WordPress ids. WordPress hands
// the page the pairs it needs — its own, its threads' (`keys.wire`), its
// threads' members' (`participants[].wire`) — and this table maps between
// the two. In protocol 1 (or from a WordPress that sends no `wire`) every
// id is its own wire id.

/** Both directions of one kind of id (users, or threads). */
class Pairs {
  constructor() {
    /** @type {Map<number, number>} WordPress id → wire id */
    this.toWire = new Map();
    /** @type {Map<number, number>} wire id → WordPress id */
    this.toReal = new Map();
  }

  /** Records that WordPress id `id` is `wire` on the relay (the id itself when `wire` is absent). */
  learn(id, wire) {
    const w = wire == null ? id : Number(wire);
    if (!Number.isSafeInteger(id) || !Number.isSafeInteger(w) || w < 1) return;
    const old = this.toWire.get(id);
    if (old === w) return;
    if (old != null) this.toReal.delete(old);
    this.toWire.set(id, w);
    this.toReal.set(w, id);
  }

  /** The wire id of WordPress id `id`, or null when WordPress has not said it. */
  wire(id) {
    return this.toWire.get(id) ?? null;
  }

  /**
   * The WordPress id of wire id `w`, or null for one no pair names (a
   * relay answer about someone this page was not told of: ignored).
   */
  real(w) {
    return this.toReal.get(w) ?? null;
  }
}

/** The page's table of wire ids: `users` and `threads`. */
export class WireIds {
  constructor() {
    this.users = new Pairs();
    this.threads = new Pairs();
  }

  /** Learns from a thread's REST shape: its members and, for a member, the thread itself. */
  learnThread(th) {
    for (const p of th.participants || []) this.users.learn(Number(p.id), p.wire);
    if (th.keys) this.threads.learn(Number(th.keys.thread), th.keys.wire);
  }

  /** Learns from the `POST /token` bundle: the user and every thread in it. */
  learnBundle(b, me) {
    this.users.learn(me, b.wire);
    for (const k of b.threads || []) this.threads.learn(Number(k.thread), k.wire);
  }
}
