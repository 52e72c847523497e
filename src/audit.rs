//! `roster audit`: export the history from a cluster, verify an export (or a stopped node's
//! data dir) offline, and replay it to any revision. Verification re-checks every hash link
//! and re-folds every event with the same fold the nodes use; the printed state digest can be
//! compared with the cluster's `GET /v1/state/digest?revision=N`.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::domain::{state_digest, Hash, HistoryRecord, Replayer, State};

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Stream the whole history to a JSON-lines file.
    Export {
        #[command(flatten)]
        conn: crate::cli::ConnArgs,
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Check the hash chain and re-fold an export (or a stopped node's data dir).
    Verify {
        /// An export file.
        file: Option<PathBuf>,
        /// A stopped node's data dir instead of a file.
        #[arg(long, conflicts_with = "file")]
        data_dir: Option<PathBuf>,
    },
    /// Print the state at a revision from an export.
    Replay {
        file: PathBuf,
        #[arg(long)]
        to: Option<u64>,
    },
}

pub async fn run(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Export { conn, output } => export(&conn, &output).await,
        AuditCmd::Verify { file: Some(f), .. } => {
            let (state, head) = replay_file(&f, None)?;
            report(&state, &head);
            Ok(())
        }
        AuditCmd::Verify { data_dir: Some(d), .. } => {
            let (state, head) = replay_data_dir(&d)?;
            report(&state, &head);
            Ok(())
        }
        AuditCmd::Verify { .. } => anyhow::bail!("give an export file or --data-dir"),
        AuditCmd::Replay { file, to } => {
            let (state, _) = replay_file(&file, to)?;
            if let Some(t) = to {
                anyhow::ensure!(state.revision == t, "the export ends at revision {}, before {t}", state.revision);
            }
            let out = serde_json::json!({"revision": state.revision, "digest": state_digest(&state).to_string(), "state": state});
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

fn report(state: &State, head: &Hash) {
    println!("verified: {} revisions, hash chain intact", state.revision);
    println!("final revision {}", state.revision);
    println!("head hash {head}");
    println!("state digest {}", state_digest(state));
}

/// Folds the records of an export up to `to` (inclusive), checking every link.
pub fn replay_file(path: &Path, to: Option<u64>) -> anyhow::Result<(State, Hash)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut replayer = Replayer::new(State::default(), Hash::default());
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = replayer.state.revision + 1;
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("line {}: revision {at}: not JSON: {e}", i + 1))?;
        let record = HistoryRecord::from_json(value).map_err(|e| anyhow::anyhow!("line {}: revision {at}: {e}", i + 1))?;
        if to.is_some_and(|t| record.body.revision > t) {
            break;
        }
        replayer.push(&record).map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))?;
    }
    Ok((replayer.state, replayer.head))
}

/// Folds a stopped node's stored history from revision 1, checking every link.
pub fn replay_data_dir(dir: &Path) -> anyhow::Result<(State, Hash)> {
    let db = roster_storage::open(&dir.join("db")).context("opening the node's database (is the node stopped?)")?;
    let reader = crate::reader::Reader::new(roster_storage::StateStore::new(db));
    let mut replayer = Replayer::new(State::default(), Hash::default());
    reader.records(1, |record| {
        replayer.push(&record).map_err(|e| roster_storage::StoreError::Invalid(e.to_string()))?;
        Ok(true)
    })?;
    Ok((replayer.state, replayer.head))
}

async fn export(conn: &crate::cli::ConnArgs, output: &Path) -> anyhow::Result<()> {
    // The export streams for as long as the history is long: no whole-request timeout.
    let options = crate::cli::ClientOptions { request_timeout: None, connect_timeout: None };
    let client = crate::cli::Client::with(conn.transport()?, conn.endpoints.clone(), options)?;
    let (ep, mut resp) = client.get_first_ok("/v1/history/export").await?;
    let head: u64 = resp.headers().get(crate::api::HEADER_REVISION).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let tmp = output.with_extension("partial");
    let mut out = BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
    let mut lines = 0u64;
    let mut last_shown = 0u64;
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("the export stream from {ep} broke"))? {
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        out.write_all(&chunk)?;
        if lines >= last_shown + 10_000 || lines == head {
            eprint!("\rexported {lines}/{head} revisions ({:.0}%)", 100.0 * lines as f64 / head.max(1) as f64);
            last_shown = lines;
        }
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    anyhow::ensure!(lines == head, "the export stopped at {lines} of {head} revisions");
    std::fs::rename(&tmp, output)?;
    eprintln!("\rexported {lines} revisions to {}            ", output.display());
    Ok(())
}
