//! Per-request state: `bm_configure()` overrides and the settings resolved
//! from them, both forgotten at request end (RSHUTDOWN).
//!
//! PHP runs one request at a time per process (NTS builds), so a
//! thread-local is the request's storage; the sender thread never reads it.

use std::cell::RefCell;
use std::rc::Rc;

use crate::config::{RawSettings, Resolved};
use crate::error::BmResult;
use crate::ini;

#[derive(Default)]
struct State {
    overrides: Vec<(String, String)>,
    resolved: Option<Rc<Resolved>>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// The INI values with this request's overrides applied.
pub fn raw_with(extra: &[(String, String)]) -> BmResult<RawSettings> {
    let mut raw = RawSettings::from_lookup(ini::get);
    let current = STATE.with(|s| s.borrow().overrides.clone());
    for (k, v) in current.iter().chain(extra) {
        raw.set(k, v.clone())?;
    }
    Ok(raw)
}

/// The settings in force, resolved on first use in the request.
pub fn resolved() -> BmResult<Rc<Resolved>> {
    if let Some(r) = STATE.with(|s| s.borrow().resolved.clone()) {
        return Ok(r);
    }
    let r = Rc::new(Resolved::new(raw_with(&[])?)?);
    STATE.with(|s| s.borrow_mut().resolved = Some(r.clone()));
    Ok(r)
}

/// Adds overrides (already validated) and drops the resolved cache.
pub fn add_overrides(new: Vec<(String, String)>) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.overrides.extend(new);
        s.resolved = None;
    });
}

/// Request end: forget overrides and resolution.
pub fn reset() {
    STATE.with(|s| *s.borrow_mut() = State::default());
}
