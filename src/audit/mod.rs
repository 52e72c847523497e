//! `roster audit`: export the history from a cluster, verify an export (or a stopped node's
//! data dir) offline, and replay it to any revision. Verification re-checks every hash link
//! and re-folds every event with the same fold the nodes use; the printed state digest can be
//! compared with the cluster's `GET /v1/state/digest?revision=N`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::domain::checkpoint::{Checkpoint, VerifierKey};
use crate::domain::merkle::{verify_consistency, verify_inclusion};
use crate::domain::{state_digest, Hash, HistoryRecord, Replayer, State};

mod verify;

pub use verify::{verify_file, Verified};

/// Where a checkpoint's verifier key comes from.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    /// The history verifier key (`history-key.vkey` from `roster secure-init`). Without it, the
    /// key the cluster serves is used, which proves nothing against the cluster itself.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Stream the history to a JSON-lines file (docs/history-format.md).
    Export {
        #[command(flatten)]
        conn: crate::cli::ConnArgs,
        #[arg(long, short = 'o')]
        output: PathBuf,
        /// Start at this revision: a continuation export, checked with
        /// `audit verify --continues` against a checkpoint of revision FROM-1.
        #[arg(long)]
        from: Option<u64>,
    },
    /// Check the hash chain and re-fold an export (or a stopped node's data dir); optionally
    /// check the Merkle root against signed checkpoints.
    Verify {
        /// An export file.
        file: Option<PathBuf>,
        /// A stopped node's data dir instead of a file.
        #[arg(long, conflicts_with_all = ["file", "checkpoint", "continues"])]
        data_dir: Option<PathBuf>,
        /// A signed checkpoint (`audit checkpoint`) the export must reach and match.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The signed checkpoint a continuation export (`audit export --from N+1`) continues.
        #[arg(long)]
        continues: Option<PathBuf>,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Print the state at a revision from an export.
    Replay {
        file: PathBuf,
        #[arg(long)]
        to: Option<u64>,
    },
    /// Fetch the signed checkpoint of the latest revision, check its signature, save it.
    Checkpoint {
        #[command(flatten)]
        conn: crate::cli::ConnArgs,
        #[arg(long, short = 'o')]
        output: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Check that revision REV is in the tree a saved checkpoint signs (inclusion proof).
    Prove {
        revision: u64,
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        conn: crate::cli::ConnArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Check that the tree of an older checkpoint is a prefix of a newer one's (consistency
    /// proof): nothing before the older one was rewritten since.
    Consistent {
        old: PathBuf,
        new: PathBuf,
        #[command(flatten)]
        conn: crate::cli::ConnArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
}

pub async fn run(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Export { conn, output, from } => export(&conn, &output, from).await,
        AuditCmd::Verify { data_dir: Some(d), .. } => {
            let (state, head) = replay_data_dir(&d)?;
            println!("verified: {} revisions, hash chain intact", state.revision);
            report_state(&state, &head);
            Ok(())
        }
        AuditCmd::Verify { file: Some(f), checkpoint, continues, key, .. } => {
            let vkey = match (&checkpoint, &continues, &key.public_key) {
                (None, None, _) => None,
                (_, _, Some(p)) => Some(read_vkey(p)?),
                _ => anyhow::bail!("checking a checkpoint offline needs the verifier key: give --public-key history-key.vkey"),
            };
            let open = |p: &Option<PathBuf>| -> anyhow::Result<Option<Checkpoint>> {
                match (p, &vkey) {
                    (Some(p), Some(k)) => Ok(Some(read_checkpoint(p, k)?)),
                    _ => Ok(None),
                }
            };
            let (anchor, check) = (open(&continues)?, open(&checkpoint)?);
            let v = verify_file(&f, anchor.as_ref(), check.as_ref(), None)?;
            match &anchor {
                Some(a) if v.last == a.size => println!("verified: no revisions after the checkpoint of {} revisions", a.size),
                Some(a) => println!("verified: revisions {}..{} continue the checkpoint of {} revisions, hash chain intact", a.size + 1, v.last, a.size),
                None => println!("verified: {} revisions, hash chain intact", v.last),
            }
            println!("tree root at {}: {}", v.last, v.tree.root());
            if let Some(c) = &check {
                println!("matches the signed checkpoint of {} revisions ({})", c.size, c.origin);
            }
            match &v.state {
                Some(state) => report_state(state, &v.head),
                None => println!("head hash {}\n(events not re-folded: a continuation has no earlier state)", v.head),
            }
            Ok(())
        }
        AuditCmd::Verify { .. } => anyhow::bail!("give an export file or --data-dir"),
        AuditCmd::Replay { file, to } => {
            let v = verify_file(&file, None, None, to)?;
            let state = v.state.expect("a full export folds from revision 1");
            if let Some(t) = to {
                anyhow::ensure!(state.revision == t, "the export ends at revision {}, before {t}", state.revision);
            }
            let out = serde_json::json!({"revision": state.revision, "digest": state_digest(&state).to_string(), "state": state});
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        AuditCmd::Checkpoint { conn, output, key } => {
            let client = crate::cli::Client::new(&conn)?;
            let vkey = verifier_key(&client, &key).await?;
            let note = get_text(&client, "/v1/history/checkpoint").await?;
            let cp = vkey.open_checkpoint(&note).context("the checkpoint the cluster sent")?;
            write_atomically(&output, note.as_bytes())?;
            println!("checkpoint of {} revisions signed by {}, root {}, saved to {}", cp.size, cp.origin, cp.root, output.display());
            Ok(())
        }
        AuditCmd::Prove { revision, checkpoint, conn, key } => {
            let client = crate::cli::Client::new(&conn)?;
            let vkey = verifier_key(&client, &key).await?;
            let cp = read_checkpoint(&checkpoint, &vkey)?;
            anyhow::ensure!(revision >= 1 && revision <= cp.size, "revision {revision} is not in the checkpoint's tree of {} revisions", cp.size);
            let record = HistoryRecord::from_json(get(&client, &format!("/v1/history/{revision}")).await?)
                .map_err(|e| anyhow::anyhow!("the record the cluster sent: {e}"))?;
            anyhow::ensure!(record.body.revision == revision && record.hash_is_valid(), "the cluster sent a record of revision {revision} whose hash does not match its content");
            let proof = get(&client, &format!("/v1/history/{revision}/proof?tree_size={}", cp.size)).await?;
            let path = hashes(&proof["audit_path"])?;
            anyhow::ensure!(
                verify_inclusion(&record.hash, revision - 1, cp.size, &path, &cp.root),
                "revision {revision} (hash {}) is NOT in the tree the checkpoint signs: the proof does not lead to its root",
                record.hash
            );
            println!("revision {revision} (hash {}) is in the tree of {} revisions signed by {} ({} proof hashes)", record.hash, cp.size, cp.origin, path.len());
            Ok(())
        }
        AuditCmd::Consistent { old, new, conn, key } => {
            let client = crate::cli::Client::new(&conn)?;
            let vkey = verifier_key(&client, &key).await?;
            let (a, b) = (read_checkpoint(&old, &vkey)?, read_checkpoint(&new, &vkey)?);
            anyhow::ensure!(a.size >= 1 && a.size <= b.size, "the old checkpoint ({} revisions) must be non-empty and no larger than the new one ({})", a.size, b.size);
            let proof = get(&client, &format!("/v1/history/consistency?first={}&second={}", a.size, b.size)).await?;
            let path = hashes(&proof["proof"])?;
            anyhow::ensure!(
                verify_consistency(a.size, b.size, &a.root, &b.root, &path),
                "the tree of {} revisions is NOT a prefix of the tree of {}: the history before revision {} was rewritten, or a checkpoint is not this cluster's",
                a.size,
                b.size,
                a.size + 1
            );
            println!("the tree of {} revisions is a prefix of the tree of {} revisions: nothing up to revision {} changed ({} proof hashes)", a.size, b.size, a.size, path.len());
            Ok(())
        }
    }
}

fn report_state(state: &State, head: &Hash) {
    println!("final revision {}", state.revision);
    println!("head hash {head}");
    println!("state digest {}", state_digest(state));
}

fn read_vkey(path: &Path) -> anyhow::Result<VerifierKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    VerifierKey::parse(&text).with_context(|| format!("the verifier key {}", path.display()))
}

fn read_checkpoint(path: &Path, key: &VerifierKey) -> anyhow::Result<Checkpoint> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    key.open_checkpoint(&text).with_context(|| format!("the checkpoint {}", path.display()))
}

/// The verifier key from `--public-key`, or (with a warning) the one the cluster serves.
async fn verifier_key(client: &crate::cli::Client, key: &KeyArgs) -> anyhow::Result<VerifierKey> {
    if let Some(p) = &key.public_key {
        return read_vkey(p);
    }
    eprintln!("warning: no --public-key: trusting the verifier key the cluster serves");
    VerifierKey::parse(&get_text(client, "/v1/history/public-key").await?).context("the verifier key the cluster sent")
}

async fn get(client: &crate::cli::Client, path: &str) -> anyhow::Result<serde_json::Value> {
    let (status, v) = client.send(reqwest::Method::GET, path, None).await?;
    anyhow::ensure!((200..300).contains(&status), "GET {path}: HTTP {status}: {}", crate::cli::client::error_message(&v));
    Ok(v)
}

async fn get_text(client: &crate::cli::Client, path: &str) -> anyhow::Result<String> {
    match get(client, path).await? {
        serde_json::Value::String(s) => Ok(s),
        other => anyhow::bail!("GET {path}: expected text, got {other}"),
    }
}

fn hashes(v: &serde_json::Value) -> anyhow::Result<Vec<Hash>> {
    serde_json::from_value(v.clone()).map_err(|e| anyhow::anyhow!("a malformed proof: {e}"))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Folds a stopped node's stored history from revision 1, checking every link, and rebuilds
/// the Merkle tree to compare with the one the node stored.
pub fn replay_data_dir(dir: &Path) -> anyhow::Result<(State, Hash)> {
    let db = roster_storage::open(&dir.join("db")).context("opening the node's database (is the node stopped?)")?;
    let reader = crate::reader::Reader::new(roster_storage::StateStore::new(db));
    let mut replayer = Replayer::new(State::default(), Hash::default());
    let mut tree = crate::domain::merkle::Frontier::default();
    reader.records(1, |record| {
        if let Err(e) = replayer.push(&record) {
            let old = HistoryRecord::compute_hash_v1(&record.body, &record.prev_hash) == record.hash;
            let hint = if old { " (it is in record format 1: start the node once with this version to upgrade it)" } else { "" };
            return Err(roster_storage::StoreError::Invalid(format!("{e}{hint}")));
        }
        tree.push(record.hash);
        Ok(true)
    })?;
    let stored = reader.tree_root(tree.size()).context("reading the node's stored history tree")?;
    anyhow::ensure!(
        stored == tree.root(),
        "the node's stored history tree (root {stored}) does not match the tree rebuilt from its history (root {})",
        tree.root()
    );
    println!("tree root at {}: {} (matches the stored tree)", tree.size(), tree.root());
    Ok((replayer.state, replayer.head))
}

async fn export(conn: &crate::cli::ConnArgs, output: &Path, from: Option<u64>) -> anyhow::Result<()> {
    // The export streams for as long as the history is long: no whole-request timeout.
    let options = crate::cli::ClientOptions { request_timeout: None, connect_timeout: None };
    let client = crate::cli::Client::with(conn.transport_for(crate::cli::DevToken::Warn)?, conn.endpoints.clone(), options)?;
    let from = from.unwrap_or(1);
    let (ep, mut resp) = client.get_first_ok(&format!("/v1/history/export?from={from}")).await?;
    let head: u64 = resp.headers().get(crate::api::HEADER_REVISION).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    // A continuation starts with one header line before its records.
    let header_lines = u64::from(from > 1);
    let want = (head + 1).saturating_sub(from);
    let tmp = output.with_extension("partial");
    let mut out = BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
    let mut lines = 0u64;
    let mut last_shown = 0u64;
    // Progress only to a terminal; a log gets the final line alone.
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("the export stream from {ep} broke"))? {
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        out.write_all(&chunk)?;
        let records = lines.saturating_sub(header_lines);
        if progress && (records >= last_shown + 10_000 || records == want) {
            eprint!("\rexported {records}/{want} revisions ({:.0}%)", 100.0 * records as f64 / want.max(1) as f64);
            last_shown = records;
        }
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let records = lines.saturating_sub(header_lines);
    anyhow::ensure!(records == want, "the export stopped at {records} of {want} revisions");
    std::fs::rename(&tmp, output)?;
    let range = if records == 0 { "nothing new".to_string() } else { format!("{from}..{head}") };
    let (clear, pad) = if progress { ("\r", "            ") } else { ("", "") };
    eprintln!("{clear}exported {records} revisions ({range}) to {}{pad}", output.display());
    Ok(())
}
