//! How requests reach the relay, decided once per target from the URL's
//! scheme (not re-parsed at each send): `http://` goes through the
//! extension's own blocking HTTP/1.1 client (`direct.rs`, the fast path),
//! `https://` through reqwest with rustls (`relay.rs`). Imports nothing
//! from the rest of the crate.

/// The transport of one relay URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Plain `http://`: the direct client, on this address.
    Direct(HttpUrl),
    /// `https://` (or anything the direct client does not speak): reqwest.
    Tls,
}

impl Transport {
    /// The transport for a base URL (already validated by the settings).
    pub fn for_url(base: &str) -> Transport {
        HttpUrl::parse(base).map_or(Transport::Tls, Transport::Direct)
    }
}

/// `http://host:port/prefix` split up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host as written (name or IP; IPv6 without brackets).
    pub host: String,
    /// Port (default 80).
    pub port: u16,
    /// Path prefix without trailing slash ("" for none).
    pub prefix: String,
}

impl HttpUrl {
    /// Parses an `http://` base URL; None for anything else (https).
    pub fn parse(base: &str) -> Option<HttpUrl> {
        let url = reqwest::Url::parse(base).ok()?;
        if url.scheme() != "http" {
            return None;
        }
        let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_string();
        Some(HttpUrl { host, port: url.port().unwrap_or(80), prefix: url.path().trim_end_matches('/').to_string() })
    }

    /// The `Host` header's value (`[v6]:port` for IPv6).
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_decides_the_transport() {
        assert_eq!(
            Transport::for_url("http://127.0.0.1:8787"),
            Transport::Direct(HttpUrl { host: "127.0.0.1".into(), port: 8787, prefix: String::new() })
        );
        assert_eq!(Transport::for_url("https://relay.example"), Transport::Tls);
    }
}
