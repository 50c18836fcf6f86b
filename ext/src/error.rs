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

/// Why the relay could not be reached. The variant, not the wording,
/// decides whether a request is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    /// No answer within `timeout_ms`: the budget is spent, never retried.
    Timeout {
        /// The bound that passed.
        timeout_ms: u128,
    },
    /// The TCP (or TLS) connection could not be made: retrying would hit the
    /// same refusal within the same budget, so it is not retried.
    Connect {
        /// The connect bound in force.
        connect_timeout_ms: u128,
        /// The OS or TLS error, without any URL credentials (URLs have none).
        error: String,
    },
    /// The connection failed after it was made (typically a keep-alive
    /// connection the relay closed while idle): retried once.
    Io(String),
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreachable::Timeout { timeout_ms } => write!(f, "no answer within timeout_ms={timeout_ms}"),
            Unreachable::Connect { connect_timeout_ms, error } => {
                write!(f, "cannot connect (connect_timeout_ms={connect_timeout_ms}): {error}")
            }
            Unreachable::Io(e) => f.write_str(e),
        }
    }
}

/// What went wrong; each kind has its PHP exception code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad argument or setting; the message names the field (code 0).
    Input(String),
    /// The relay did not answer (code 0).
    Unreachable {
        /// `push`, `presence`, `disconnect`.
        endpoint: &'static str,
        /// The relay base URL tried (the last one, when several were).
        url: String,
        /// Why.
        cause: Unreachable,
        /// URLs tried, of `urls` configured (1 of 1 for a single URL).
        tried: usize,
        /// URLs configured.
        urls: usize,
    },
    /// The relay answered with an error status (code: the HTTP status).
    Refused {
        /// `push`, `presence`, `disconnect`.
        endpoint: &'static str,
        /// The HTTP status.
        status: u16,
        /// `code: message` from the relay's JSON error body, or `(no error body)`.
        detail: String,
    },
    /// The relay answered 200 with a body that does not fit the protocol (code 200).
    BadReply(String),
    /// The extension's own machinery failed: a thread or runtime could not
    /// start (code 0).
    Internal(String),
}

/// An error on its way to PHP: its kind, and where it happened (the
/// `bm_push_many(): events[3]` prefix added by [`BmError::context`]), in
/// the manner of hyper's `Error` (a kind plus context). The message PHP sees
/// is the `Display` form; it never holds secret material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmError {
    /// Boxed, as hyper boxes its error: `Result<T, BmError>` stays one
    /// pointer wide on the hot paths that return it.
    inner: Box<Inner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    kind: ErrorKind,
    /// Prefixes added on the way out, outermost first.
    context: String,
}

impl BmError {
    fn new(kind: ErrorKind) -> Self {
        BmError { inner: Box::new(Inner { kind, context: String::new() }) }
    }

    /// An input error (code 0).
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input(message.into()))
    }

    /// The relay at `url` did not answer a request to `endpoint` (code 0).
    pub fn unreachable(endpoint: &'static str, url: impl Into<String>, cause: Unreachable) -> Self {
        Self::new(ErrorKind::Unreachable { endpoint, url: url.into(), cause, tried: 1, urls: 1 })
    }

    /// An unreachable error after `tried` of `urls` relay URLs were tried
    /// (the message then says so); other kinds are returned as they are.
    pub fn tried(mut self, tried: usize, urls: usize) -> Self {
        if let ErrorKind::Unreachable { tried: t, urls: u, .. } = &mut self.inner.kind {
            (*t, *u) = (tried, urls);
        }
        self
    }

    /// The relay refused a request with `status` (code: the status).
    pub fn refused(endpoint: &'static str, status: u16, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused { endpoint, status, detail: detail.into() })
    }

    /// A 200 reply that does not parse (code 200).
    pub fn bad_reply(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadReply(message.into()))
    }

    /// A failure of the extension itself (code 0).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal(message.into()))
    }

    /// Prefixes the message with where it happened (`bm_push_many(): events[3]`).
    pub fn context(mut self, prefix: &str) -> Self {
        self.inner.context.insert_str(0, prefix);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.inner.kind
    }

    /// `getCode()` of the PHP exception: the HTTP status for relay answers,
    /// 0 otherwise (docs/PHP-API.md).
    pub fn code(&self) -> i32 {
        match &self.inner.kind {
            ErrorKind::Refused { status, .. } => i32::from(*status),
            ErrorKind::BadReply(_) => 200,
            ErrorKind::Input(_) | ErrorKind::Unreachable { .. } | ErrorKind::Internal(_) => 0,
        }
    }

    /// Whether sending the same request again may succeed within the same
    /// budget: only a connection that failed after it was made (a
    /// keep-alive connection the relay closed). A timeout has spent the
    /// budget, a refused connect would be refused again, and the relay's
    /// own answers are final.
    pub fn is_retryable(&self) -> bool {
        matches!(&self.inner.kind, ErrorKind::Unreachable { cause: Unreachable::Io(_), .. })
    }
}

impl std::fmt::Display for BmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.inner.context)?;
        match &self.inner.kind {
            ErrorKind::Input(m) | ErrorKind::BadReply(m) | ErrorKind::Internal(m) => f.write_str(m),
            ErrorKind::Unreachable { endpoint, url, cause, urls: 0 | 1, .. } => {
                write!(f, "relay unreachable for {endpoint} at {url}: {cause}")
            }
            ErrorKind::Unreachable { endpoint, url, cause, tried, urls } => {
                write!(f, "relay unreachable for {endpoint}: {tried} of {urls} URLs tried, none answered; last {url}: {cause}")
            }
            ErrorKind::Refused { endpoint, status, detail } => {
                write!(f, "relay refused {endpoint}: HTTP {status} {detail}")
            }
        }
    }
}

impl std::error::Error for BmError {}

impl From<BmError> for PhpException {
    fn from(e: BmError) -> Self {
        PhpException::new(e.to_string(), e.code(), BmRelayException::get_metadata().ce())
    }
}

/// Result type of every fallible helper in the extension.
pub type BmResult<T> = Result<T, BmError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable(cause: Unreachable) -> BmError {
        BmError::unreachable("push", "http://127.0.0.1:8787", cause)
    }

    #[test]
    fn codes_and_messages_are_the_documented_ones() {
        let timeout = unreachable(Unreachable::Timeout { timeout_ms: 2000 });
        assert_eq!(
            (timeout.code(), timeout.to_string().as_str()),
            (0, "relay unreachable for push at http://127.0.0.1:8787: no answer within timeout_ms=2000")
        );
        let connect = unreachable(Unreachable::Connect { connect_timeout_ms: 500, error: "Connection refused".into() });
        assert_eq!(connect.to_string(), "relay unreachable for push at http://127.0.0.1:8787: cannot connect (connect_timeout_ms=500): Connection refused");
        let refused = BmError::refused("presence", 401, "bad_signature: wrong").context("bm_presence(): ");
        assert_eq!(
            (refused.code(), refused.to_string().as_str()),
            (401, "bm_presence(): relay refused presence: HTTP 401 bad_signature: wrong")
        );
        assert_eq!(BmError::bad_reply("relay answered 1 results for 2 events").code(), 200);
        let input = BmError::input("must be an integer").context("[1]").context("bm_push_many(): events");
        assert_eq!((input.code(), input.to_string().as_str()), (0, "bm_push_many(): events[1]must be an integer"));
    }

    #[test]
    fn only_a_dropped_connection_is_retried() {
        assert!(unreachable(Unreachable::Io("connection reset".into())).is_retryable());
        assert!(!unreachable(Unreachable::Timeout { timeout_ms: 1 }).is_retryable());
        assert!(!unreachable(Unreachable::Connect { connect_timeout_ms: 1, error: "refused".into() }).is_retryable());
        assert!(!BmError::refused("push", 503, "shutting_down: bye").is_retryable());
        assert!(!BmError::internal("cannot start the background sender").is_retryable());
        assert!(!BmError::input("x").is_retryable());
    }
}
