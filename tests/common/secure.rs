//! One CA, node certificate, cluster secret and token file per test process.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use roster::domain::tokens::Role;
use serde_json::Value;

use super::*;


/// Every test runs with TLS and tokens on, like a production cluster: one CA, node
/// certificate, cluster secret and token file per test process.
pub struct Secure {
    pub dir: PathBuf,
    pub ca_pem: Vec<u8>,
    /// Token secret by token name.
    pub tokens: BTreeMap<String, String>,
}

/// Token names in the test token file, with their roles. Tests that write "as" an actor use
/// the token of that name.
pub const TEST_TOKENS: &[(&str, Role, Option<&str>)] = &[
    ("admin", Role::Admin, None),
    ("ops", Role::Operator, None),
    ("alice", Role::Operator, None),
    ("bob", Role::Operator, None),
    ("setup", Role::Operator, None),
    ("writer", Role::Operator, None),
    ("prop", Role::Operator, None),
    ("auditor", Role::Auditor, None),
    ("viewer", Role::Viewer, None),
    ("agent-file-a1", Role::Agent, Some("a1")),
];

pub fn secure() -> &'static Secure {
    static SECURE: OnceLock<Secure> = OnceLock::new();
    SECURE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("secure-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        roster::tls::init(&dir, &[], true).expect("secure-init");
        let mut tokens = BTreeMap::new();
        let mut file = String::new();
        for (name, role, agent) in TEST_TOKENS {
            let secret = roster::auth::new_secret();
            file.push_str(&roster::auth::token_file_line(name, *role, *agent, &secret));
            file.push('\n');
            std::fs::write(dir.join(format!("{name}.token")), &secret).unwrap();
            tokens.insert(name.to_string(), secret);
        }
        std::fs::write(dir.join(roster::tls::TOKENS), file).unwrap();
        // A node refuses a token file others can read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(roster::tls::TOKENS), std::fs::Permissions::from_mode(0o600)).unwrap();
        let ca_pem = std::fs::read(dir.join(roster::tls::CA_CERT)).unwrap();
        Secure { dir, ca_pem, tokens }
    })
}

impl Secure {
    pub fn token(&self, name: &str) -> &str {
        self.tokens.get(name).unwrap_or_else(|| panic!("no test token {name}"))
    }

    pub fn token_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.token"))
    }

    /// A blocking client trusting the test CA, sending `token` (if any).
    pub fn client(&self, token: Option<&str>, timeout: Duration) -> reqwest::blocking::Client {
        let mut b = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem).unwrap())
            .timeout(timeout);
        if let Some(t) = token {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
            b = b.default_headers(h);
        }
        b.build().unwrap()
    }

    /// A client with the admin token.
    pub fn admin(&self, timeout: Duration) -> reqwest::blocking::Client {
        self.client(Some(self.token("admin")), timeout)
    }
}
