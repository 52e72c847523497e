//! TLS (rustls) for the API and between nodes, and `roster secure init`: a self-signed CA,
//! a node certificate, a cluster secret and a first admin token for a local cluster.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::domain::tokens::Role;

/// File names inside a directory made by [`init`] (and read by `roster serve --secure-dir`).
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const NODE_CERT: &str = "node.pem";
pub const NODE_KEY: &str = "node-key.pem";
pub const CLUSTER_SECRET: &str = "cluster-secret";
pub const TOKENS: &str = "tokens";
pub const ADMIN_TOKEN: &str = "admin.token";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS acceptor from PEM files: the certificate chain and its private key.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certs = {
        let mut r = std::io::BufReader::new(std::fs::File::open(cert).with_context(|| format!("opening {}", cert.display()))?);
        rustls_pemfile::certs(&mut r).collect::<Result<Vec<_>, _>>().with_context(|| format!("reading {}", cert.display()))?
    };
    anyhow::ensure!(!certs.is_empty(), "{} holds no PEM certificate", cert.display());
    let key = {
        let mut r = std::io::BufReader::new(std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?);
        rustls_pemfile::private_key(&mut r)
            .with_context(|| format!("reading {}", key.display()))?
            .with_context(|| format!("{} holds no PEM private key", key.display()))?
    };
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not form a usable pair")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Reads a secret file (surrounding whitespace ignored); it must not be empty.
pub fn read_secret(path: &Path) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let s = s.trim().to_string();
    anyhow::ensure!(s.len() >= 16, "{} must hold a secret of at least 16 characters", path.display());
    anyhow::ensure!(s.bytes().all(|b| b.is_ascii_graphic()), "{} must hold printable ASCII without spaces", path.display());
    Ok(s)
}

/// What [`init`] wrote.
pub struct Initialized {
    pub dir: PathBuf,
    pub admin_secret: String,
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// Creates `dir` with a new CA, a node certificate for `hosts` (plus localhost and the
/// loopback addresses), a cluster secret, a token file and an admin token. Refuses to
/// overwrite an existing CA unless `force`.
pub fn init(dir: &Path, hosts: &[String], force: bool) -> anyhow::Result<Initialized> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    anyhow::ensure!(
        force || !dir.join(CA_CERT).exists(),
        "{} already holds a CA; pass --force to replace everything in it",
        dir.display()
    );
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Roster local CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for h in hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let mut node_params = rcgen::CertificateParams::new(names)?;
    node_params.distinguished_name.push(rcgen::DnType::CommonName, "roster node");
    node_params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let node_key = rcgen::KeyPair::generate()?;
    let node = node_params.signed_by(&node_key, &ca, &ca_key)?;

    std::fs::write(dir.join(CA_CERT), ca.pem())?;
    write_private(&dir.join(CA_KEY), &ca_key.serialize_pem())?;
    std::fs::write(dir.join(NODE_CERT), node.pem())?;
    write_private(&dir.join(NODE_KEY), &node_key.serialize_pem())?;
    write_private(&dir.join(CLUSTER_SECRET), &format!("{}\n", crate::auth::new_secret()))?;
    let admin_secret = crate::auth::new_secret();
    let tokens = format!(
        "# Roster tokens: NAME ROLE SHA256-OF-SECRET (roles: admin, operator, auditor, agent:ID, viewer).\n\
         # Add one with `roster token-new NAME ROLE [--agent ID]`; only hashes belong here.\n{}\n",
        crate::auth::token_file_line("admin", Role::Admin, None, &admin_secret)
    );
    std::fs::write(dir.join(TOKENS), tokens)?;
    write_private(&dir.join(ADMIN_TOKEN), &format!("{admin_secret}\n"))?;
    Ok(Initialized { dir: dir.to_path_buf(), admin_secret })
}
