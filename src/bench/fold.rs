//! `roster bench fold`: offline replay speed of a generated history.

use std::time::Instant;

use roster_storage::codec;

use crate::domain::{decide, Hash, HistoryRecord, RecordBody, Replayer, State};

use super::synthetic_changes;

pub(super) fn fold(revisions: u64) -> anyhow::Result<()> {
    println!("generating {revisions} revisions...");
    let started = Instant::now();
    let mut state = State::default();
    let mut head = Hash::default();
    let mut encoded = Vec::with_capacity(revisions as usize);
    let mut events_total = 0u64;
    for rev in 1..=revisions {
        let events = decide(&state, &synthetic_changes(rev), rev).map_err(|r| anyhow::anyhow!("{r:?}"))?;
        events_total += events.len() as u64;
        let body = RecordBody {
            revision: rev,
            log_term: 1,
            log_index: rev + 1,
            time_ms: rev,
            actor: "bench".into(),
            comment: String::new(),
            changeset: None,
            idempotency_key: None,
            events,
        };
        let record = HistoryRecord::seal(body, head);
        state.apply_record_events(rev, &record.body.events);
        head = record.hash;
        encoded.push(codec::encode(&record));
        if rev % 100_000 == 0 {
            eprintln!("  generated {rev}/{revisions}");
        }
    }
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    println!("generated in {:.2}s: {events_total} events, {:.1} MB encoded", started.elapsed().as_secs_f64(), bytes as f64 / 1e6);

    // Full offline replay: decode every record, check its hash link, fold its events.
    let t = Instant::now();
    let mut replayer = Replayer::new(State::default(), Hash::default());
    for bytes in &encoded {
        let record: HistoryRecord = codec::decode(bytes)?;
        replayer.push(&record)?;
    }
    let full = t.elapsed().as_secs_f64();
    anyhow::ensure!(replayer.state == state, "replayed state differs from the generated one");

    // The fold alone, on decoded records.
    let decoded: Vec<HistoryRecord> = encoded.iter().map(|b| codec::decode(b)).collect::<Result<_, _>>()?;
    let t = Instant::now();
    let mut folded = State::default();
    for r in &decoded {
        folded.apply_record_events(r.body.revision, &r.body.events);
    }
    let fold_only = t.elapsed().as_secs_f64();
    anyhow::ensure!(folded == state, "folded state differs");

    println!("decode + verify hash chain + fold: {full:.3}s = {:.0} events/s ({:.0} revisions/s)", events_total as f64 / full, revisions as f64 / full);
    println!("fold only:                         {fold_only:.3}s = {:.0} events/s", events_total as f64 / fold_only);
    Ok(())
}
