//! The one exception class of the extension, `BmRelayException`, and the
//! Rust error type that becomes it.
//!
//! Every failure a PHP caller can cause or observe (a bad argument, a missing
//! secret, a relay that refused a sync push) ends up here, so PHP code needs
//! exactly one `catch`. Messages name the offending field and never contain
//! secret material: the constructors below take only field names and short
//! descriptions, never the value of a secret.

use ext_php_rs::class::RegisteredClass;
use ext_php_rs::exception::PhpException;
use ext_php_rs::ffi::zend_class_entry;
use ext_php_rs::prelude::*;
use ext_php_rs::zend::ClassEntry;

extern "C" {
    /// SPL's `RuntimeException`, exported by the PHP binary (SPL is always
    /// compiled in and initialised before shared extensions).
    static spl_ce_RuntimeException: *mut zend_class_entry;
}

/// The parent class entry for [`BmRelayException`].
///
/// # Panics
/// Never in practice: SPL registers the class before any shared extension's
/// MINIT runs.
pub fn runtime_exception() -> &'static ClassEntry {
    // SAFETY: a static pointer set by SPL's MINIT, never freed while PHP runs.
    unsafe { spl_ce_RuntimeException.as_ref() }.expect("SPL RuntimeException is registered")
}

/// `class BmRelayException extends RuntimeException`: thrown for invalid
/// input (message names the field) and, in sync mode, for relay errors
/// (HTTP status as the exception code, relay error code in the message).
#[php_class]
#[php(name = "BmRelayException")]
#[php(extends(ce = runtime_exception, stub = "RuntimeException"))]
#[derive(Default)]
pub struct BmRelayException;

/// An error on its way to PHP: a message naming the field, and a code
/// (0 for input errors, the HTTP status for relay errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmError {
    /// Human-readable, names the field; never holds secret material.
    pub message: String,
    /// `getCode()` of the exception.
    pub code: i32,
}

impl BmError {
    /// An input error (code 0).
    pub fn input(message: impl Into<String>) -> Self {
        BmError { message: message.into(), code: 0 }
    }

    /// An error reported by (or about reaching) the relay.
    pub fn relay(message: impl Into<String>, http_status: i32) -> Self {
        BmError { message: message.into(), code: http_status }
    }

    /// Prefixes the message with where it happened (`bm_push_many(): events[3]`).
    pub fn context(mut self, prefix: &str) -> Self {
        self.message = format!("{prefix}{}", self.message);
        self
    }
}

impl std::fmt::Display for BmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<BmError> for PhpException {
    fn from(e: BmError) -> Self {
        PhpException::new(e.message, e.code, BmRelayException::get_metadata().ce())
    }
}

/// Result type of every fallible helper in the extension.
pub type BmResult<T> = Result<T, BmError>;
