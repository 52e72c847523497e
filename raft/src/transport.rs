//! How a node (or a client) reaches Roster nodes: plain HTTP or HTTPS trusting one CA, and
//! the bearer credential sent with every request.
//!
//! Between nodes the credential is the cluster secret; [`check_bearer`] is how the Raft routes
//! verify it.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;

/// Connection settings shared by every HTTP client of Roster nodes.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// PEM certificates of the CA(s) node certificates are checked against; `None` means
    /// plain HTTP.
    pub ca_pem: Option<Arc<Vec<u8>>>,
    /// Sent as `Authorization: Bearer ...` with every request.
    pub bearer: Option<Arc<str>>,
}

impl Transport {
    /// Plain HTTP without credentials (the explicitly insecure local mode).
    pub fn insecure() -> Self {
        Self::default()
    }

    pub fn is_tls(&self) -> bool {
        self.ca_pem.is_some()
    }

    pub fn scheme(&self) -> &'static str {
        if self.is_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// `addr` (`host:port`, or a full `http(s)://` base) joined with `path`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        if addr.starts_with("http://") || addr.starts_with("https://") {
            format!("{}{}", addr.trim_end_matches('/'), path)
        } else {
            format!("{}://{addr}{path}", self.scheme())
        }
    }

    /// A client builder with the CA, the credential and the given timeouts applied.
    pub fn client_builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        let mut b = reqwest::Client::builder();
        if let Some(pem) = &self.ca_pem {
            b = b.use_rustls_tls().tls_built_in_root_certs(false);
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| anyhow::anyhow!("reading the CA certificates: {e}"))?;
            anyhow::ensure!(!certs.is_empty(), "the CA file holds no PEM certificate");
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let Some(token) = &self.bearer {
            let mut headers = reqwest::header::HeaderMap::new();
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| anyhow::anyhow!("the credential holds characters not allowed in a header"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
            b = b.default_headers(headers);
        }
        Ok(b)
    }

    /// A client with a connect timeout; `timeout` bounds each whole request.
    pub fn client(&self, connect: Duration, timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
        let mut b = self.client_builder()?.connect_timeout(connect);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        Ok(b.build()?)
    }
}

/// The bearer credential of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares two secrets in time independent of where they differ.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `headers` carry `secret` as their bearer credential.
pub fn check_bearer(headers: &HeaderMap, secret: &str) -> bool {
    bearer(headers).is_some_and(|t| secrets_equal(t.as_bytes(), secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing_and_comparison() {
        let mut h = HeaderMap::new();
        assert!(!check_bearer(&h, "s3cret"));
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(check_bearer(&h, "s3cret"));
        assert!(!check_bearer(&h, "s3cre"));
        assert!(!check_bearer(&h, "s3creT"));
        h.insert("authorization", "Basic s3cret".parse().unwrap());
        assert!(!check_bearer(&h, "s3cret"));
        assert!(secrets_equal(b"", b""));
        assert!(!secrets_equal(b"a", b""));
    }

    #[test]
    fn urls() {
        let t = Transport::insecure();
        assert_eq!(t.url("127.0.0.1:1", "/x"), "http://127.0.0.1:1/x");
        assert_eq!(t.url("https://h:2/", "/x"), "https://h:2/x");
    }
}
