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
/// The cluster's history signing key (`PRIVATE+KEY+...`, see `docs/history-format.md`).
pub const HISTORY_KEY: &str = "history-key";
/// Its verifier key, for auditors.
pub const HISTORY_VKEY: &str = "history-key.vkey";

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
    /// The verifier key of the new history signing key.
    pub history_vkey: crate::domain::checkpoint::VerifierKey,
}

/// Writes a file atomically with `mode`: a new temporary file next to it (created
/// exclusively, never following a symlink), fsynced, then renamed over the name. A symlink
/// planted at the name is replaced, never followed.
fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes a new file only its owner can read (refusing to follow a symlink).
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    write_file(path, contents, 0o600)
}

/// Creates `dir` (mode 0700) or checks an existing one: a real directory (not a symlink),
/// then tightens it to 0700.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::symlink_metadata(dir) {
        Ok(m) => {
            anyhow::ensure!(m.file_type().is_dir(), "{} is not a directory (a symlink?); refusing to use it", dir.display());
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making {} private", dir.display()))?;
        }
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?,
    }
    Ok(())
}

/// Where [`init`] keeps the CA's private key: next to the secure directory, not in it, so a
/// node (which reads the secure directory) never holds the key that signs certificates. Move
/// it offline once the nodes' certificates are made.
pub fn ca_key_path(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "roster".into());
    dir.with_file_name(format!("{name}-{CA_KEY}"))
}

/// Refuses a secret file that others may read or write, or that is not a regular file: a
/// node must not run with a token file or key anyone on the machine could change or read.
pub fn check_private_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(m.is_file(), "{} is not a regular file", path.display());
    anyhow::ensure!(
        m.mode() & 0o077 == 0,
        "{} is readable or writable by others (mode {:o}); it holds secrets: run `chmod 600 {}`",
        path.display(),
        m.mode() & 0o777,
        path.display()
    );
    Ok(())
}

/// Writes a new history signing key named `name` (default `roster-history/<random hex>`) to
/// `dir/history-key`, and its verifier key to `dir/history-key.vkey`. Refuses to replace an
/// existing key unless `force`: checkpoints signed with it could no longer be checked.
pub fn init_history_key(dir: &Path, name: Option<&str>, force: bool) -> anyhow::Result<crate::domain::checkpoint::VerifierKey> {
    use rand::RngCore;
    private_dir(dir)?;
    let path = dir.join(HISTORY_KEY);
    anyhow::ensure!(force || !path.exists(), "{} already exists; pass --force to replace it", path.display());
    let mut id = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let name = name.map(str::to_string).unwrap_or_else(|| format!("roster-history/{}", hex::encode(id)));
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let key = crate::domain::checkpoint::HistoryKey::from_seed(&name, seed)?;
    write_private(&path, &format!("{}\n", key.private_text()))?;
    let vkey = key.verifier();
    write_file(&dir.join(HISTORY_VKEY), &format!("{vkey}\n"), 0o644)?;
    Ok(vkey)
}

/// Reads a history signing key file (private to its owner, like every secret).
pub fn read_history_key(path: &Path) -> anyhow::Result<crate::domain::checkpoint::HistoryKey> {
    check_private_file(path)?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the history key {}", path.display()))?;
    crate::domain::checkpoint::HistoryKey::parse(&text).with_context(|| format!("the history key {}", path.display()))
}

/// Creates `dir` with a new CA, a node certificate for `hosts` (plus localhost and the
/// loopback addresses), a cluster secret, a token file and an admin token. Refuses to
/// overwrite an existing CA unless `force`.
pub fn init(dir: &Path, hosts: &[String], force: bool) -> anyhow::Result<Initialized> {
    private_dir(dir)?;
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

    write_file(&dir.join(CA_CERT), &ca.pem(), 0o644)?;
    // An older layout kept the CA key inside the directory: move it out.
    let _ = std::fs::remove_file(dir.join(CA_KEY));
    write_private(&ca_key_path(dir), &ca_key.serialize_pem())?;
    write_file(&dir.join(NODE_CERT), &node.pem(), 0o644)?;
    write_private(&dir.join(NODE_KEY), &node_key.serialize_pem())?;
    write_private(&dir.join(CLUSTER_SECRET), &format!("{}\n", crate::auth::new_secret()))?;
    let admin_secret = crate::auth::new_secret();
    let tokens = format!(
        "# Roster tokens: NAME ROLE SHA256-OF-SECRET (roles: admin, operator, auditor, agent:ID, viewer).\n\
         # Add one with `roster token-new NAME ROLE [--agent ID]`; only hashes belong here.\n{}\n",
        crate::auth::token_file_line("admin", Role::Admin, None, &admin_secret)
    );
    write_private(&dir.join(TOKENS), &tokens)?;
    write_private(&dir.join(ADMIN_TOKEN), &format!("{admin_secret}\n"))?;
    let history_vkey = init_history_key(dir, None, true)?;
    Ok(Initialized { dir: dir.to_path_buf(), admin_secret, history_vkey })
}
