//! `roster bench proofs`: the cost of the history's Merkle tree at a large history: inclusion
//! and consistency proofs from the stored tree, the root, and checkpoint signing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use roster_storage::StateStore;

use crate::domain::checkpoint::HistoryKey;
use crate::domain::merkle::{verify_consistency, verify_inclusion};
use crate::reader::Reader;

use super::tempfile_dir;

/// A small deterministic generator, so runs pick the same leaves.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = times.iter().map(|d| us(*d)).sum::<f64>() / times.len() as f64;
    println!(
        "{name}: {} samples, mean {mean:.1} µs, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        times.len(),
        us(times[times.len() / 2]),
        us(times[times.len() * 99 / 100]),
        us(times[times.len() - 1])
    );
}

pub(super) async fn proofs(revisions: u64, data_dir: Option<PathBuf>, samples: usize) -> anyhow::Result<()> {
    anyhow::ensure!(revisions >= 2 && samples >= 1, "--revisions must be at least 2 and --samples at least 1");
    let dir = match data_dir {
        Some(d) => d,
        None => tempfile_dir()?,
    };
    if !dir.join("db").exists() {
        println!("generating a data dir with {revisions} revisions (through the state machine, tree included) in {}...", dir.display());
        let t = Instant::now();
        let d = dir.clone();
        tokio::task::spawn_blocking(move || super::restart::generate_data_dir(&d, revisions, "127.0.0.1:1")).await??;
        let secs = t.elapsed().as_secs_f64();
        println!("generated in {secs:.1}s ({:.0} revisions/s applied offline)", revisions as f64 / secs);
    }
    tokio::task::spawn_blocking(move || measure(&dir, revisions, samples)).await?
}

fn measure(dir: &std::path::Path, revisions: u64, samples: usize) -> anyhow::Result<()> {
    let reader = Reader::new(StateStore::new(roster_storage::open(&dir.join("db"))?));
    let size = reader.store().tree_size()?;
    anyhow::ensure!(size >= revisions, "the data dir's tree has {size} leaves, fewer than {revisions}");
    let t = Instant::now();
    let root = reader.tree_root(revisions)?;
    println!("tree of {revisions} revisions: root {root} (computed in {:.1} µs from stored nodes)", t.elapsed().as_secs_f64() * 1e6);

    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut times = Vec::with_capacity(samples);
    let mut hashes = 0usize;
    for _ in 0..samples {
        let index = next(&mut x) % revisions;
        let t = Instant::now();
        let leaf = reader.tree_node(0, index).map_err(anyhow::Error::msg)?.ok_or_else(|| anyhow::anyhow!("leaf {index} missing"))?;
        let path = reader.inclusion_proof(index, revisions)?;
        times.push(t.elapsed());
        hashes += path.len();
        anyhow::ensure!(verify_inclusion(&leaf, index, revisions, &path, &root), "the proof of leaf {index} does not verify");
    }
    summary("inclusion proof (leaf + audit path)", times);
    println!("  {:.1} hashes per proof on average", hashes as f64 / samples as f64);

    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let first = 1 + next(&mut x) % revisions;
        let t = Instant::now();
        let proof = reader.consistency_proof(first, revisions)?;
        let first_root = reader.tree_root(first)?;
        times.push(t.elapsed());
        anyhow::ensure!(verify_consistency(first, revisions, &first_root, &root, &proof), "the consistency proof from {first} does not verify");
    }
    summary("consistency proof (proof + older root)", times);

    let key = HistoryKey::from_seed("roster-history/bench", [5u8; 32])?;
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let t = Instant::now();
        let note = key.sign_checkpoint(revisions + i as u64, &root);
        times.push(t.elapsed());
        std::hint::black_box(note);
    }
    summary("checkpoint signing (Ed25519)", times);
    Ok(())
}
