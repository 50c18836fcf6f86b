//! The PHP error log: delivery failures, counted by the sender and the
//! calls, reported at most once a minute per process (never per event, and
//! never with secret material: messages come from `BmError`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::{sync, worker};

/// Writes accumulated delivery failures to the PHP error log, at most once
/// a minute per process.
pub fn maybe_log_failures(force: bool) {
    worker::with_existing(|w| {
        let due = w.last_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if !(due || force) {
            return;
        }
        let n = w.shared.stats.unlogged_failures.swap(0, Ordering::Relaxed);
        if n == 0 {
            return;
        }
        w.last_logged = Some(Instant::now());
        let last = sync::lock(&w.shared.stats.last_error).as_ref().map(|(m, _)| m.clone()).unwrap_or_default();
        log_error(&format!("bm_relay: {n} event(s) or call(s) not delivered to the relay; last error: {last}"));
    });
}

// PHP's own logger (main/main.c); not bound by ext-php-rs. The severity is
// a syslog level.
extern "C" {
    fn php_log_err_with_severity(message: *const std::os::raw::c_char, syslog_type: std::os::raw::c_int);
}

/// Writes one line to the PHP error log (never shown to the visitor).
pub fn log_error(msg: &str) {
    if let Ok(c) = std::ffi::CString::new(msg.replace('\0', " ")) {
        // SAFETY: PHP's logger copies the NUL-terminated string.
        unsafe { php_log_err_with_severity(c.as_ptr(), libc::LOG_WARNING) };
    }
}
