# Round 21 (wait21): scratch counters for the two-thread pipeline's waits and hand-overs (not for merging).
# Edits src/replay.rs IN PLACE (path below): run it on a scratch copy of the tree, on the state between
# 1eee605 and a5d19b5 that had the reader's knobs but round 20's wake-up (its text matches that state).
# The build prints the counters to stderr at the end of a --threads 2 replay when NATREC_W21 is set
# (round21-wait21-one.sh). Counter names: w_* writing thread, r_* reader, t_* ms since run_floating began.
import re
p='/work/wt-wait21/src/replay.rs'
s=open(p).read()
def rep(old,new,cnt=1):
    global s
    assert s.count(old)==cnt,(old,s.count(old))
    s=s.replace(old,new)
s=s.replace("use natrec_storage::{EndReason, Mapping, Writer, WriterStats};",
"""use natrec_storage::{EndReason, Mapping, Writer, WriterStats};

#[allow(dead_code)]
mod w21 {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    pub static C: [AtomicU64; 32] = [const { AtomicU64::new(0) }; 32];
    pub static T0: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    pub fn add(i: usize, v: u64) { C[i].fetch_add(v, Relaxed); }
    pub fn now() -> u64 { T0.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64 }
    pub fn mark(i: usize) { C[i].store(now(), Relaxed); }
    pub const NAMES: [&str; 32] = ["w_turns","w_batches","w_holdwait_n","w_holdwait_ns","w_select_n","w_select_ns","w_select_woken","w_trylock_fail",
      "r_turns","r_batches","r_last_lock_ns","r_last_batches","r_sendblock_n","r_sendblock_ns","r_emptywait_n","r_emptywait_ns",
      "r_raw_batches","r_dec_batches","t_first_sent","t_read_end","t_last_done","t_float_write_end","t_take_events_end","t_seal_start",
      "t_end","wake_sent","w_tail","r_last_wait_n","x","x","x","x"];
    pub fn dump() { if std::env::var_os("NATREC_W21").is_some() { for i in 0..32 { let v=C[i].load(Relaxed); if v>0 { if NAMES[i].starts_with("t_") || NAMES[i].ends_with("_ns") { eprintln!("{} {:.1} ms", NAMES[i], v as f64/1e6) } else { eprintln!("{} {}", NAMES[i], v) } } } } }
}
""")
# writer_turn: count batches & hold waits
rep("""                Err(crossbeam_channel::TryRecvError::Empty) => match self.full_rx.recv() {
                    Ok(batch) => batch,""","""                Err(crossbeam_channel::TryRecvError::Empty) => match { let t=w21::now(); let r=self.full_rx.recv(); w21::add(2,1); w21::add(3,w21::now()-t); r } {
                    Ok(batch) => batch,""")
rep("""        if by_reader {
            self.paired_by.reader += paired;
        } else {
            self.paired_by.writer += paired;
        }""","""        if by_reader {
            self.paired_by.reader += paired;
            if paired > 0 { w21::add(8,1); w21::add(9,paired); }
        } else {
            self.paired_by.writer += paired;
            if paired > 0 { w21::add(0,1); w21::add(1,paired); }
        }""")
rep("""                } else if left {
                    let _ = self.wake.try_send(());""","""                } else if left {
                    if self.wake.try_send(()).is_ok() { w21::add(25,1); }""")
# writer select
rep("""                crossbeam_channel::select! {
                    recv(rx) -> msg => match msg {
                        Ok(msg) => msg,
                        Err(_) => break,
                    },
                    recv(wake) -> _ => continue,
                }""","""                w21::add(7,1);
                let t=w21::now();
                let m = crossbeam_channel::select! {
                    recv(rx) -> msg => match msg {
                        Ok(msg) => Some(msg),
                        Err(_) => { w21::add(4,1); w21::add(5,w21::now()-t); break },
                    },
                    recv(wake) -> _ => None,
                };
                w21::add(4,1); w21::add(5,w21::now()-t);
                match m { Some(m) => m, None => { w21::add(6,1); continue } }""")
# reader
rep("""        let filled = if full_tx.len() >= floating.decode_queued_min {
            fill::<true>(&mut reader, &mut batch)
        } else {
            fill::<false>(&mut reader, &mut batch)
        };""","""        let filled = if full_tx.len() >= floating.decode_queued_min {
            w21::add(17,1);
            fill::<true>(&mut reader, &mut batch)
        } else {
            w21::add(16,1);
            fill::<false>(&mut reader, &mut batch)
        };""")
rep("""        if !batch.is_empty() && full_tx.send(batch).is_err() {
            break;
        }
        batches += 1;
        if batches.is_multiple_of((PACKETS_PER_TICK / PACKETS_PER_BATCH as u64).max(1)) {
            bar.set_position(reader.position());
            bar.set_message(format!("{} packets", reader.summary.packets));
        }
        if last {
            break;
        }
        if full_tx.len() >= floating.reader_queued_min {""","""        let full = full_tx.is_full(); let t = w21::now();
        if !batch.is_empty() && full_tx.send(batch).is_err() {
            break;
        }
        if full { w21::add(12,1); w21::add(13,w21::now()-t); }
        if batches == 0 { w21::mark(18); }
        batches += 1;
        if batches.is_multiple_of((PACKETS_PER_TICK / PACKETS_PER_BATCH as u64).max(1)) {
            bar.set_position(reader.position());
            bar.set_message(format!("{} packets", reader.summary.packets));
        }
        if last {
            break;
        }
        if full_tx.len() >= floating.reader_queued_min {""")
rep("""    // The end of the queue: the stage's holder sees it once it is empty.
    drop(full_tx);
    if paired.is_ok() {
        paired = pairing
            .lock()
            .expect("no thread panics holding the pairing stage")
            .reader_last();
    }""","""    // The end of the queue: the stage's holder sees it once it is empty.
    drop(full_tx);
    w21::mark(19);
    if paired.is_ok() {
        let t = w21::now();
        let mut g = pairing
            .lock()
            .expect("no thread panics holding the pairing stage");
        w21::add(10, w21::now()-t);
        let b = g.paired_by.reader;
        paired = g.reader_last();
        w21::add(11, g.paired_by.reader - b);
        drop(g);
        w21::mark(20);
    }""")
rep("""    // A batch comes back from the pairing stage, or (if it stopped on an
    // error) the replay ends here.
    while let Ok(mut batch) = empty_rx.recv() {""","""    // A batch comes back from the pairing stage, or (if it stopped on an
    // error) the replay ends here.
    while let Ok(mut batch) = { let e = empty_rx.is_empty(); let t = w21::now(); let r = empty_rx.recv(); if e { w21::add(14,1); w21::add(15,w21::now()-t); } r } {""")
rep("""    // A cut between two appends: a log's bytes do not depend on it.
    appends.append(&mut out, &mut counts)?;
    drop(appends);
    let rest = write_stage(writer, flows, rx, empty, done, TAIL_APPEND_QUEUED_MIN)?;""","""    // A cut between two appends: a log's bytes do not depend on it.
    appends.append(&mut out, &mut counts)?;
    drop(appends);
    w21::mark(21);
    let rest = write_stage(writer, flows, rx, empty, done, TAIL_APPEND_QUEUED_MIN)?;
    w21::mark(24);
    w21::dump();""")
rep("""    if tail {
        std::thread::scope(|scope| -> Result<()> {""","""    w21::mark(22);
    if tail {
        w21::add(26,1);
        std::thread::scope(|scope| -> Result<()> {""")
rep("""    writer.seal_all()?;
    Ok(WriteCounts {""","""    w21::mark(23);
    writer.seal_all()?;
    Ok(WriteCounts {""")
rep("""    let (full_tx, full_rx) = crossbeam_channel::bounded::<Vec<Line<'i>>>(BATCHES_IN_FLIGHT_MAX);
    let (empty_tx, empty_rx) =
        crossbeam_channel::bounded::<Vec<Line<'i>>>(BATCHES_IN_FLIGHT_MAX + 2);""","""    w21::now();
    let (full_tx, full_rx) = crossbeam_channel::bounded::<Vec<Line<'i>>>(BATCHES_IN_FLIGHT_MAX);
    let (empty_tx, empty_rx) =
        crossbeam_channel::bounded::<Vec<Line<'i>>>(BATCHES_IN_FLIGHT_MAX + 2);""")
open(p,'w').write(s)
