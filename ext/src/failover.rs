//! Several relay URLs (`bm_relay.url = "http://a:8787,http://b:8787"`):
//! which one a request goes to, and what happens when one does not answer.
//!
//! Policy (docs/PHP-API.md, "Several relays"):
//! - A request starts with the URL that last answered in this process (the
//!   first of the list until one has), then goes on in list order, wrapping
//!   around. A process thus sticks to a working relay and does not go back
//!   to a recovered one while the current one answers.
//! - A URL that did not answer (connection refused, connect timeout, no
//!   reply before its share of the deadline, connection dropped) is put
//!   after the others for [`COOLDOWN`]: it is tried only when every URL not
//!   cooling down has failed in the same request.
//! - Any HTTP answer ends the request, an error status included (a refused
//!   signature is the relay's answer, and another relay would give the same
//!   one): only an unreachable relay is a reason to try the next.
//! - The deadline (`timeout_ms`) is for the whole call, not per URL: an
//!   attempt that is not the last one left gets an equal share of the time
//!   that remains, so a relay that accepts connections and never answers
//!   leaves time for the next. A relay that got the request but did not
//!   answer in time may still deliver it; the copy sent to the next one
//!   carries the same event ids, which clients drop.
//!
//! The state is per process (in the worker's shared state, so a forked
//! child starts afresh) and per URL, shared by the sender and the calls
//! PHP waits for.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::{BmError, ErrorKind};
use crate::relay::Relays;

/// How long a URL that did not answer is put after the others.
pub const COOLDOWN: Duration = Duration::from_secs(5);

/// Most URLs whose state is kept (settings change rarely; beyond this the
/// table is cleared rather than grown without bound).
const MAX_TRACKED: usize = 64;

/// What this process knows about one relay URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlState {
    /// Requests it answered (any HTTP status).
    pub answered: u64,
    /// Attempts that got no answer.
    pub unreachable: u64,
    /// When it last answered.
    pub last_answer: Option<Instant>,
    /// Put after the others until then.
    pub down_until: Option<Instant>,
}

/// Per-URL state of this process.
#[derive(Debug, Default)]
pub struct Health {
    urls: HashMap<String, UrlState>,
}

impl Health {
    /// The order in which to try `urls` at `now`: from the one that answered
    /// last, in list order with wrap-around; those cooling down after the
    /// others (in the same rotation).
    pub fn order(&self, urls: &[&str], now: Instant) -> Vec<usize> {
        let n = urls.len();
        if n <= 1 {
            return (0..n).collect();
        }
        let mut start = 0;
        let mut newest: Option<Instant> = None;
        for (i, u) in urls.iter().enumerate() {
            if let Some(t) = self.urls.get(*u).and_then(|s| s.last_answer) {
                if newest.is_none_or(|n| t > n) {
                    newest = Some(t);
                    start = i;
                }
            }
        }
        let cooling = |i: usize| self.urls.get(urls[i]).and_then(|s| s.down_until).is_some_and(|t| t > now);
        let rotation = (0..n).map(|k| (start + k) % n);
        let (mut ready, down): (Vec<usize>, Vec<usize>) = rotation.partition(|&i| !cooling(i));
        ready.extend(down);
        ready
    }

    /// Applies `f` to the state of `url`. Looked up by `&str` first: a
    /// known URL (every request but the first) costs no allocation.
    fn update(&mut self, url: &str, f: impl FnOnce(&mut UrlState)) {
        if let Some(s) = self.urls.get_mut(url) {
            f(s);
            return;
        }
        if self.urls.len() >= MAX_TRACKED {
            self.urls.clear();
        }
        let mut s = UrlState::default();
        f(&mut s);
        self.urls.insert(url.to_string(), s);
    }

    /// `url` answered at `now`: it becomes the first to try.
    pub fn answered(&mut self, url: &str, now: Instant) {
        self.update(url, |s| {
            s.answered += 1;
            s.last_answer = Some(now);
            s.down_until = None;
        });
    }

    /// `url` did not answer at `now`: it cools down.
    pub fn unreachable(&mut self, url: &str, now: Instant) {
        self.update(url, |s| {
            s.unreachable += 1;
            s.down_until = Some(now + COOLDOWN);
        });
    }

    /// The state of `url` (default when never tried).
    pub fn state(&self, url: &str) -> UrlState {
        self.urls.get(url).cloned().unwrap_or_default()
    }
}

/// True when an error means the relay did not answer, so the next URL may.
pub fn fails_over(e: &BmError) -> bool {
    matches!(e.kind(), ErrorKind::Unreachable { .. })
}

/// One request's walk through the URLs.
pub struct Plan {
    order: Vec<usize>,
    next: usize,
    deadline: Instant,
    last: Option<BmError>,
}

impl Plan {
    /// The order for `relays` now; the whole walk ends at `deadline`.
    pub fn new(health: &std::sync::Mutex<Health>, relays: &Relays, deadline: Instant) -> Plan {
        let order = if relays.list.len() == 1 {
            vec![0]
        } else {
            let urls: Vec<&str> = relays.list.iter().map(|t| t.base_url.as_str()).collect();
            crate::sync::lock(health).order(&urls, Instant::now())
        };
        Plan { order, next: 0, deadline, last: None }
    }

    /// The next URL to try and the deadline of that attempt (its share of
    /// what remains), or None when all were tried or time is up (after
    /// the first attempt, which always happens).
    pub fn next_attempt(&mut self, now: Instant) -> Option<(usize, Instant)> {
        let left = self.order.len().checked_sub(self.next).filter(|l| *l > 0)?;
        if self.next > 0 && now >= self.deadline {
            return None;
        }
        let i = self.order[self.next];
        self.next += 1;
        let share = self.deadline.saturating_duration_since(now) / left as u32;
        Some((i, now + share))
    }

    /// Records the outcome of the attempt on `relays.list[i]`; returns the
    /// request's result when it is settled (an answer, or an error that is
    /// not a reason to try the next URL).
    pub fn settle<T>(
        &mut self,
        health: &std::sync::Mutex<Health>,
        relays: &Relays,
        i: usize,
        r: Result<T, BmError>,
    ) -> Option<Result<T, BmError>> {
        let url = relays.list[i].base_url.as_str();
        match r {
            Err(e) if fails_over(&e) => {
                crate::sync::lock(health).unreachable(url, Instant::now());
                self.last = Some(e);
                None
            }
            Err(e) if matches!(e.kind(), ErrorKind::Internal(_)) => Some(Err(e)),
            r => {
                crate::sync::lock(health).answered(url, Instant::now());
                Some(r)
            }
        }
    }

    /// The error once no URL answered: the last one's, saying how many of
    /// how many URLs were tried.
    pub fn give_up(self) -> BmError {
        let tried = self.next;
        let total = self.order.len();
        match self.last {
            Some(e) => e.tried(tried, total),
            None => BmError::internal("no relay URL to try"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Unreachable;

    const URLS: [&str; 3] = ["http://a", "http://b", "http://c"];

    #[test]
    fn starts_with_the_first_then_with_the_last_that_answered() {
        let mut h = Health::default();
        let t0 = Instant::now();
        assert_eq!(h.order(&URLS, t0), [0, 1, 2]);
        h.answered("http://b", t0);
        assert_eq!(h.order(&URLS, t0), [1, 2, 0], "from b, wrapping around");
        h.answered("http://a", t0 + Duration::from_millis(1));
        assert_eq!(h.order(&URLS, t0), [0, 1, 2]);
        // The state is per URL: another list with the same URLs agrees.
        assert_eq!(h.order(&["http://c", "http://a"], t0), [1, 0]);
    }

    #[test]
    fn a_url_that_did_not_answer_goes_last_for_the_cooldown_only() {
        let mut h = Health::default();
        let t0 = Instant::now();
        h.answered("http://a", t0);
        h.unreachable("http://a", t0);
        assert_eq!(h.order(&URLS, t0), [1, 2, 0], "a is last while it cools down");
        h.unreachable("http://b", t0);
        assert_eq!(h.order(&URLS, t0), [2, 0, 1]);
        h.unreachable("http://c", t0);
        assert_eq!(h.order(&URLS, t0), [0, 1, 2], "all down: all are tried, in the usual order");
        let later = t0 + COOLDOWN + Duration::from_millis(1);
        assert_eq!(h.order(&URLS, later), [0, 1, 2], "cooled down");
        h.answered("http://c", later);
        assert_eq!(h.order(&URLS, later), [2, 0, 1]);
        assert_eq!(h.state("http://a").unreachable, 1);
        assert_eq!(h.state("http://c").down_until, None, "an answer ends the cooldown");
        assert_eq!(h.order(&["http://only"], t0), [0]);
    }

    #[test]
    fn each_attempt_but_the_last_gets_a_share_of_what_remains() {
        let t0 = Instant::now();
        let mut p = Plan { order: vec![2, 0, 1], next: 0, deadline: t0 + Duration::from_millis(900), last: None };
        assert_eq!(p.next_attempt(t0), Some((2, t0 + Duration::from_millis(300))));
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!(p.next_attempt(t1), Some((0, t1 + Duration::from_millis(300))));
        let t2 = t0 + Duration::from_millis(400);
        assert_eq!(p.next_attempt(t2), Some((1, t0 + Duration::from_millis(900))), "the last gets all that is left");
        assert_eq!(p.next_attempt(t2), None);
        let mut late = Plan { order: vec![0, 1], next: 0, deadline: t0, last: None };
        assert!(late.next_attempt(t0).is_some(), "the first attempt always happens");
        assert_eq!(late.next_attempt(t0), None, "no time left for the next");
    }

    #[test]
    fn only_unreachable_relays_fail_over_and_giving_up_counts_the_tries() {
        let down = |url: &str| {
            BmError::unreachable("push", url, Unreachable::Connect { connect_timeout_ms: 500, error: "refused".into() })
        };
        assert!(fails_over(&down("http://a")));
        assert!(fails_over(&BmError::unreachable("push", "http://a", Unreachable::Timeout { timeout_ms: 9 })));
        assert!(!fails_over(&BmError::refused("push", 401, "bad_signature: no")));
        assert!(!fails_over(&BmError::bad_reply("x")));
        let p = Plan { order: vec![1, 0, 2], next: 2, deadline: Instant::now(), last: Some(down("http://a")) };
        assert_eq!(
            p.give_up().to_string(),
            "relay unreachable for push: 2 of 3 URLs tried, none answered; last http://a: \
             cannot connect (connect_timeout_ms=500): refused"
        );
        let one = Plan { order: vec![0], next: 1, deadline: Instant::now(), last: Some(down("http://a")) };
        assert_eq!(
            one.give_up().to_string(),
            "relay unreachable for push at http://a: cannot connect (connect_timeout_ms=500): refused",
            "one URL: the message of old"
        );
    }
}
