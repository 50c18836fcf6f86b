//! The `bm_relay.*` INI entries: registered at module startup, read through
//! the engine's INI table (`EG(ini_directives)`).
//!
//! All are `PHP_INI_SYSTEM`: php.ini, conf.d, `-d`, or FPM's
//! `php_admin_value`; per-request changes go through `bm_configure()`, which
//! validates them, instead of `ini_set()`.

use ext_php_rs::ffi::zend_ini_entry;
use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::zend::{ExecutorGlobals, IniEntryDef, IniEntryDefs};

static ENTRIES: IniEntryDefs<11> = IniEntryDefs::new([
    IniEntryDef::new(c"bm_relay.url", c"", IniEntryPermission::System),
    IniEntryDef::new(c"bm_relay.site", c"", IniEntryPermission::System),
    IniEntryDef::new(c"bm_relay.secret_file", c"", IniEntryPermission::System),
    IniEntryDef::new(c"bm_relay.secret", c"", IniEntryPermission::System),
    IniEntryDef::new(c"bm_relay.mode", c"async", IniEntryPermission::System),
    IniEntryDef::new(c"bm_relay.timeout_ms", c"2000", IniEntryPermission::System),
    IniEntryDef::new(c"bm_relay.connect_timeout_ms", c"500", IniEntryPermission::System),
    IniEntryDef::new(c"bm_relay.queue_size", c"10000", IniEntryPermission::System),
    IniEntryDef::new(c"bm_relay.flush_timeout_ms", c"500", IniEntryPermission::System),
    IniEntryDef::new(c"bm_relay.protocol", c"1", IniEntryPermission::System),
    IniEntryDef::end(),
]);

/// Registers the entries (module startup).
pub fn register(module_number: i32) {
    IniEntryDef::register(ENTRIES.as_slice(), module_number);
}

/// The current value of an INI entry, if registered.
pub fn get(name: &str) -> Option<String> {
    let eg = ExecutorGlobals::get();
    // SAFETY: `ini_directives` is set up by zend_ini_startup before any
    // module starts and lives until engine shutdown; null is handled.
    let table = unsafe { eg.ini_directives.as_ref() }?;
    let zv = table.get(name)?;
    // SAFETY: the table stores `zend_ini_entry` pointers (zend_hash_add_ptr).
    let entry = unsafe { zv.ptr::<zend_ini_entry>()?.as_ref()? };
    // SAFETY: `value` is a zend_string owned by the entry, or null.
    let value = unsafe { entry.value.as_ref() }?;
    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
}
