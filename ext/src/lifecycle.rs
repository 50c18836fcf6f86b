//! The module's lifecycle hooks: MINIT (INI entries, pinning the library),
//! RSHUTDOWN (flush this request's queue, forget its settings), MSHUTDOWN
//! (last flush, stop the sender's threads) and phpinfo().

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Duration;

use ext_php_rs::zend::ModuleEntry;
use ext_php_rs::{info_table_end, info_table_header, info_table_row, info_table_start};

use crate::errlog::{log_error, maybe_log_failures};
use crate::{config, ini, request, worker};

/// The extension's version, shown by phpinfo() and `phpversion('bm_relay')`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// RSHUTDOWN: flush what this request queued (bounded by
/// `flush_timeout_ms`), report failures, forget per-request settings.
pub extern "C" fn request_shutdown(_type: i32, _module_number: i32) -> i32 {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // Only a process that queued something pays for more than a check.
        if worker::with_existing(|w| w.shared.pending() > 0).unwrap_or(false) {
            let wait = request::resolved().map(|r| r.settings.flush_timeout).unwrap_or(Duration::from_millis(500));
            worker::with_existing(|w| w.flush(wait));
        }
        maybe_log_failures(false);
        request::reset();
    }));
    0
}

/// MSHUTDOWN: last flush, then stop the sender's threads before PHP unloads
/// the library. What could not be sent is counted and logged.
pub extern "C" fn module_shutdown(_type: i32, _module_number: i32) -> i32 {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let wait = ini::get("bm_relay.flush_timeout_ms")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_millis(500));
        let left = worker::with_existing(|w| {
            w.flush(wait);
            w.stop()
        });
        if let Some(left) = left.filter(|n| *n > 0) {
            log_error(&format!("bm_relay: {left} queued event(s) dropped at shutdown (relay too slow or down)"));
        }
        maybe_log_failures(true);
    }));
    0
}

/// phpinfo(): version, mode, relay, site, secret source (never the secret)
/// and this process's queue figures.
pub extern "C" fn module_info(_module: *mut ModuleEntry) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let raw = request::raw_with(&[]).unwrap_or_default();
        let secret = match config::secret_source(&raw) {
            config::SecretSource::File => "configured (bm_relay.secret_file)",
            config::SecretSource::Inline => "configured (bm_relay.secret)",
            config::SecretSource::None => "not configured",
        };
        let (pending, sent, failed, dropped) = worker::with_existing(|w| {
            let s = &w.shared.stats;
            (
                w.shared.pending(),
                s.sent.load(Ordering::Relaxed),
                s.failed.load(Ordering::Relaxed),
                s.dropped.load(Ordering::Relaxed),
            )
        })
        .unwrap_or((0, 0, 0, 0));
        info_table_start!();
        info_table_row!("bm_relay support", "enabled");
        info_table_row!("version", VERSION);
        info_table_row!("mode", raw.get("mode"));
        info_table_row!("relay URL", raw.get("url"));
        info_table_row!("site", raw.get("site"));
        info_table_row!("site secret", secret);
        info_table_row!("queue size", raw.get("queue_size"));
        info_table_row!("queued / sent / failed / dropped", format!("{pending} / {sent} / {failed} / {dropped}"));
        info_table_end!();
        // The directives, as a C extension's DISPLAY_INI_ENTRIES would show
        // them, but with the inline secret redacted.
        info_table_start!();
        info_table_header!("Directive", "Value");
        for (key, _) in config::KEYS {
            let value = raw.get(key).trim();
            let shown = if key == "secret" && !value.is_empty() { "<redacted>" } else { value };
            info_table_row!(format!("bm_relay.{key}"), shown);
        }
        info_table_end!();
    }));
}

pub fn startup(_ty: i32, module_number: i32) -> i32 {
    ini::register(module_number);
    pin_library();
    0
}

/// Keeps this library mapped until the process exits.
///
/// PHP unloads shared extensions (dlclose) right after MSHUTDOWN. The
/// sender's threads are stopped there, but a thread that is still returning
/// (thread-local destructors) would then run unmapped code. Re-opening
/// ourselves with RTLD_NODELETE makes the unload a no-op, as for a
/// statically built extension.
fn pin_library() {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr only reads the loader's tables for an address inside
    // this library; dlopen with RTLD_NOLOAD never loads anything new.
    unsafe {
        if libc::dladdr(pin_library as *const libc::c_void, &mut info) != 0 && !info.dli_fname.is_null() {
            libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE);
        }
    }
}
