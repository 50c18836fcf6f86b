//! Protocol v2 (docs/PROTOCOL.md §3.2) inside the PHP API: WordPress user
//! and thread ids mapped to their pseudonyms, with a per-process cache.
//!
//! A v2 push maps every id of `to` and its thread: one HMAC-SHA256 each
//! (about 1 µs), paid on every push of a busy thread. The cache keeps the
//! keyed HMAC state (the key schedule done once per process and key, not
//! per id) and up to [`MAX_ENTRIES`] id → pseudonym pairs, so the ids a
//! worker sees again (the same members, the same threads) cost a hash-map
//! lookup. It lives on the PHP thread (NTS PHP runs one request at a time
//! per process; the sender thread never maps ids) and is tied to the
//! pseudonym key it was filled with: another secret or site (a
//! `bm_configure()`, another blog of a network) empties it first, so no
//! pseudonym of one key is ever served for another. Protocol 1 never
//! reaches this module.

use std::cell::RefCell;
use std::collections::HashMap;

use bm_proto::keys::PseudonymKey;
use bm_proto::pseudonym::Pseudonyms;
use bm_proto::{ThreadId, UserId};

use crate::config::Keys;

/// Most id → pseudonym pairs kept per process (users and threads
/// together): about 2 MiB at most. Past it the cache is emptied and
/// refills with the ids in use (cheaper than tracking recency per lookup).
pub const MAX_ENTRIES: usize = 65_536;

/// The cache of one pseudonym key.
struct Cache {
    /// The key the entries were made with (compared, never shown).
    key: PseudonymKey,
    prepared: Pseudonyms,
    /// `(kind, id)` → pseudonym; kind 0 is a user, 1 a thread.
    map: HashMap<(u8, u64), u64>,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// Maps ids with the pseudonym key of one request's keys; get one with
/// [`with_mapper`]. The key is checked against the cache's once per
/// mapper, not once per id.
pub struct Mapper<'a> {
    cache: &'a mut Cache,
}

impl Mapper<'_> {
    fn get(&mut self, kind: u8, id: u64, compute: impl FnOnce(&Pseudonyms) -> u64) -> u64 {
        if let Some(p) = self.cache.map.get(&(kind, id)) {
            return *p;
        }
        let p = compute(&self.cache.prepared);
        if self.cache.map.len() >= MAX_ENTRIES {
            self.cache.map.clear();
        }
        self.cache.map.insert((kind, id), p);
        p
    }

    // A cached value is a pseudonym, always within 1..=MAX_ID: the
    // `unwrap_or` below never takes its fallback (and cannot panic).

    /// The pseudonym of a user id.
    pub fn user(&mut self, user: UserId) -> UserId {
        UserId::new(self.get(0, user.get(), |p| p.user(user).get())).unwrap_or(user)
    }

    /// The pseudonym of a thread id.
    pub fn thread(&mut self, thread: ThreadId) -> ThreadId {
        ThreadId::new(self.get(1, thread.get(), |p| p.thread(thread).get())).unwrap_or(thread)
    }

    /// Pseudonyms of a list of user ids, in order.
    pub fn users(&mut self, users: &[UserId]) -> Vec<UserId> {
        users.iter().map(|u| self.user(*u)).collect()
    }
}

/// Runs `f` with a mapper for `keys`' pseudonym key (emptying the cache
/// first when it was filled with another key).
pub fn with_mapper<R>(keys: &Keys, f: impl FnOnce(&mut Mapper<'_>) -> R) -> R {
    CACHE.with(|c| {
        let mut slot = c.borrow_mut();
        let key = keys.pseudonym();
        if slot.as_ref().is_some_and(|cache| cache.key != *key) {
            *slot = None;
        }
        let cache =
            slot.get_or_insert_with(|| Cache { key: key.clone(), prepared: key.prepared(), map: HashMap::new() });
        f(&mut Mapper { cache })
    })
}

/// The WordPress ids among `asked` whose pseudonym is in `answer` (a
/// relay's `online`), in the order asked, each once: the relay's answer
/// mapped back. Exact, since every pseudonym in the answer came from
/// `asked`; two asked ids sharing a pseudonym (a collision, §3.2) are both
/// returned.
pub fn back(asked: &[UserId], pseudonyms: &[UserId], answer: &[UserId]) -> Vec<UserId> {
    let mut out: Vec<UserId> = Vec::with_capacity(answer.len());
    for (wp, p) in asked.iter().zip(pseudonyms) {
        if answer.contains(p) && !out.contains(wp) {
            out.push(*wp);
        }
    }
    out
}

/// Entries in this process's cache (tests).
pub fn cached() -> usize {
    CACHE.with(|c| c.borrow().as_ref().map_or(0, |cache| cache.map.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bm_proto::SiteSecret;

    fn keys(b: u8) -> Keys {
        Keys::new(&SiteSecret::from_bytes([b; 32]))
    }

    #[test]
    fn cached_pseudonyms_equal_fresh_ones_and_follow_the_key() {
        let (a, b) = (keys(1), keys(2));
        let u = UserId::new(42).unwrap();
        let want = a.pseudonym().user(u);
        assert_eq!(with_mapper(&a, |m| m.user(u)), want);
        assert_eq!(with_mapper(&a, |m| m.user(u)), want, "from the cache");
        assert_eq!(cached(), 1);
        // Another key: emptied, never the first key's answer.
        assert_eq!(with_mapper(&b, |m| m.user(u)), b.pseudonym().user(u));
        assert_ne!(b.pseudonym().user(u), want);
        assert_eq!(cached(), 1);
        let t = ThreadId::new(42).unwrap();
        assert_eq!(with_mapper(&b, |m| m.thread(t)), b.pseudonym().thread(t), "users and threads kept apart");
        // Bounded.
        with_mapper(&a, |m| {
            for id in 1..=(MAX_ENTRIES as u64 + 10) {
                m.user(UserId::new(id).unwrap());
            }
        });
        assert!(cached() <= MAX_ENTRIES);
        assert_eq!(with_mapper(&a, |m| m.user(u)), want);
    }

    #[test]
    fn answers_map_back_exactly() {
        let id = |n| UserId::new(n).unwrap();
        // 7 and 8 collide on pseudonym 100; 9 is offline; 7 asked twice.
        let asked = [id(7), id(9), id(8), id(7)];
        let ps = [id(100), id(200), id(100), id(100)];
        assert_eq!(back(&asked, &ps, &[id(100)]), [id(7), id(8)]);
        assert_eq!(back(&asked, &ps, &[]), Vec::<UserId>::new());
        assert_eq!(back(&asked, &ps, &[id(200), id(100)]), [id(7), id(9), id(8)]);
    }
}
