//! Backup and restore: `GET /v1/backup` streams a consistent point-in-time copy of a node's
//! replicated data (history, changesets, idempotency outcomes, rejections, events, settings
//! with token hashes) while it serves; `roster ctl backup` saves it; `roster restore` checks it
//! (stream checksum, then every record's hash and link and the fold) and writes a data dir
//! from which `roster serve --peers ...` bootstraps a new cluster with the same history.

use std::io::{BufReader, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use roster_storage::backup::{section_of, BACKUP_META_SECTION};
use roster_storage::codec::{self, stream};
use serde::{Deserialize, Serialize};

use crate::domain::{state_digest, Hash, HistoryRecord, Replayer, State, HISTORY_FORMAT};

/// What a backup's first frame says about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupMeta {
    /// Always [`BACKUP_FORMAT`].
    pub format: String,
    pub version: u32,
    /// The last revision in the backup.
    pub revision: u64,
    pub created_ms: u64,
    /// The node it was taken from.
    pub node: u64,
    /// The history record format of its records (`docs/history-format.md`).
    pub history_format: u64,
}

pub const BACKUP_FORMAT: &str = "roster-backup";
/// The backup version written by this build.
pub const BACKUP_VERSION: u32 = 1;
/// A backup whose client reads nothing for this long is abandoned.
pub const BACKUP_CLIENT_IDLE_MS: u64 = 60_000;
/// Bytes per chunk sent to the client.
pub const BACKUP_CHUNK_BYTES: usize = 256 << 10;

/// An `io::Write` that sends chunks down a channel to an HTTP response body, so a backup
/// streams in bounded memory (the channel's capacity times the chunk size).
pub struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub fn new(tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>) -> Self {
        Self { tx, buf: Vec::with_capacity(BACKUP_CHUNK_BYTES) }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(BACKUP_CHUNK_BYTES));
        // A client that stops reading must not hold the snapshot view and the thread forever.
        let send = tokio::time::timeout(Duration::from_millis(BACKUP_CLIENT_IDLE_MS), self.tx.send(Ok(chunk)));
        match tokio::runtime::Handle::current().block_on(send) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")),
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client read nothing for a minute")),
        }
    }

    /// Sends an error as the stream's last item, so the client sees a broken body rather
    /// than a short, valid-looking one.
    pub fn fail(self, message: String) {
        let _ = self.tx.blocking_send(Err(std::io::Error::other(message)));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BACKUP_CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The meta frame of a backup taken now on `node`.
pub fn meta_bytes(revision: u64, node: u64) -> Vec<u8> {
    let created_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let meta = BackupMeta {
        format: BACKUP_FORMAT.into(),
        version: BACKUP_VERSION,
        revision,
        created_ms,
        node,
        history_format: HISTORY_FORMAT,
    };
    serde_json::to_vec(&meta).expect("the meta is JSON")
}

/// `roster ctl backup -o FILE`: streams `GET /v1/backup` into FILE (via FILE.partial, synced,
/// checked, then renamed), with progress on a terminal.
pub async fn download(client: &crate::cli::Client, output: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let (ep, mut resp) = client.get_first_ok("/v1/backup").await.context("GET /v1/backup (the operator or admin role is needed)")?;
    let tmp = output.with_extension("partial");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
    let show = std::io::stderr().is_terminal();
    let (mut bytes, mut shown) = (0u64, Instant::now());
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("the backup stream from {ep} broke"))? {
        out.write_all(&chunk)?;
        bytes += chunk.len() as u64;
        if show && shown.elapsed() >= Duration::from_millis(500) {
            eprint!("\rreceived {:.1} MB in {:.0}s", bytes as f64 / 1e6, started.elapsed().as_secs_f64());
            shown = Instant::now();
        }
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    if show {
        eprint!("\r                                        \r");
    }
    let (meta, summary) = check_stream(&tmp).with_context(|| format!("the backup from {ep} is incomplete or damaged; nothing was written to {}", output.display()))?;
    std::fs::rename(&tmp, output)?;
    println!(
        "backup of revision {} from node {} written to {} ({:.1} MB, {} frames, sha256 {}) in {:.1}s",
        meta.revision,
        meta.node,
        output.display(),
        bytes as f64 / 1e6,
        summary.frames,
        summary.checksum,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Reads the whole stream: first its structure and trailer (frame count and SHA-256), so
/// damage anywhere is reported as damage; then the meta frame.
fn check_stream(path: &Path) -> anyhow::Result<(BackupMeta, stream::Summary)> {
    let open = || std::fs::File::open(path).with_context(|| format!("opening {}", path.display()));
    let summary = stream::verify(BufReader::with_capacity(1 << 20, open()?))?;
    let mut r = stream::Reader::new(BufReader::new(open()?))?;
    Ok((read_meta(&mut r)?, summary))
}

fn read_meta<R: std::io::Read>(r: &mut stream::Reader<R>) -> anyhow::Result<BackupMeta> {
    let Some((section, key, value)) = r.frame()? else { bail!("the backup is empty") };
    if section != BACKUP_META_SECTION || key != b"meta" {
        bail!("not a roster backup (a snapshot file?): its first frame is not the backup's description");
    }
    let meta: BackupMeta = serde_json::from_slice(&value).context("the backup's description")?;
    if meta.format != BACKUP_FORMAT {
        bail!("not a roster backup: format {:?}", meta.format);
    }
    if meta.version != BACKUP_VERSION {
        bail!("backup version {} is not one this build reads (version {BACKUP_VERSION}); restore it with the Roster that wrote it", meta.version);
    }
    if meta.history_format != HISTORY_FORMAT {
        bail!("the backup's history is in record format {}, this build writes format {HISTORY_FORMAT}", meta.history_format);
    }
    Ok(meta)
}

/// What `roster restore` did.
pub struct Restored {
    pub meta: BackupMeta,
    pub records: u64,
    pub frames: u64,
    pub digest: Hash,
    pub head: Hash,
}

/// `roster restore FILE --data-dir D`: checks the backup completely (checksum, every record's
/// hash and link, the fold) before writing anything, then writes D/db. D must not hold a node
/// database yet.
pub fn restore(file: &Path, data_dir: &Path) -> anyhow::Result<Restored> {
    std::fs::metadata(file).with_context(|| format!("opening {}", file.display()))?;
    let db_dir = data_dir.join("db");
    if db_dir.exists() {
        bail!("{} already holds a node database: restore into a new, empty data dir", data_dir.display());
    }
    // Pass 1: the stream's structure and checksum, so damage is named as damage before any
    // record is interpreted.
    let (_, summary) = check_stream(file).with_context(|| format!("the backup {} is damaged or truncated", file.display()))?;
    // Pass 2: every record's hash and link, and the fold; still nothing written.
    let history = section_of(roster_storage::db::CF_HISTORY).expect("history is replicated");
    let open = || -> anyhow::Result<stream::Reader<BufReader<std::fs::File>>> {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        Ok(stream::Reader::new(BufReader::with_capacity(1 << 20, f)).with_context(|| format!("{} is not a roster backup", file.display()))?)
    };
    let mut r = open()?;
    let meta = read_meta(&mut r)?;
    let mut replayer = Replayer::new(State::default(), Hash::default());
    let mut records = 0u64;
    loop {
        let frame = r.frame().with_context(|| format!("the backup {} is damaged or truncated", file.display()))?;
        let Some((section, _, value)) = frame else { break };
        if section == history {
            let record: HistoryRecord = codec::decode(&value).with_context(|| format!("history record {} of the backup is undecodable", records + 1))?;
            replayer.push(&record).with_context(|| format!("the backup's history is broken at record {}", records + 1))?;
            records += 1;
        } else if section == BACKUP_META_SECTION || roster_storage::backup::section_name(section).is_none() {
            bail!("the backup has an unknown section {section} (written by a newer Roster?)");
        }
    }
    if replayer.state.revision != meta.revision {
        bail!("the backup says it holds revision {} but its history ends at revision {}", meta.revision, replayer.state.revision);
    }
    // Pass 3: write.
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let write = || -> anyhow::Result<u64> {
        let store = roster_storage::StateStore::new(roster_storage::open(&db_dir).context("creating the node database")?);
        let mut w = store.restorer();
        let mut r = open()?;
        read_meta(&mut r)?;
        while let Some((section, key, value)) = r.frame()? {
            w.put(section, &key, &value)?;
        }
        let frames = w.finish()?;
        // The data is in this build's format: the first start has nothing to upgrade.
        store.set_data_format(crate::machine::upgrade::DATA_FORMAT)?;
        anyhow::ensure!(frames + 1 == summary.frames, "wrote {frames} frames of the backup's {}: the file changed while it was restored", summary.frames);
        Ok(frames)
    };
    let frames = match write() {
        Ok(f) => f,
        Err(e) => {
            // Leave no half-written database behind: a retry would be refused.
            let _ = std::fs::remove_dir_all(&db_dir);
            return Err(e.context(format!("restoring into {} failed; nothing was kept", data_dir.display())));
        }
    };
    Ok(Restored { meta, records, frames, digest: state_digest(&replayer.state), head: replayer.head })
}
