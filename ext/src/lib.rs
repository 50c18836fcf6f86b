//! The bm_relay PHP extension (not built yet).
