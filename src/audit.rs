//! Every access to the records is audited.
//!
//! The records are personal information (who used which address when), so
//! every command that shows them — `lookup` and `export` — first appends one
//! JSON line to `STORE/audit.log`: when, who (uid, user name, and `SUDO_USER`
//! when run through sudo), which command, the question asked and how many
//! answers it got. The line is synced to disk before any answer is printed;
//! if it cannot be written, the command refuses to answer (exit 2). Commands
//! that show only counts (`inspect`, `verify`, `status`) are not audited.
//! The file is only ever appended to; natrec never rewrites or trims it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};
use natrec_storage::Store;
use serde_json::{json, Value};

/// File name of the audit log in the store directory.
pub const AUDIT_FILE: &str = "audit.log";

/// Appends one audit line for `command` asking `query`, with `answers`
/// results (`None` when not known before answering, as for `export`), and
/// syncs it. An error means the access must not go ahead.
pub fn record(store: &Store, command: &str, query: Value, answers: Option<u64>) -> Result<()> {
    record_entries(store, &[entry(command, query, answers)])
}

/// One audit line (not yet written): when, who, what was asked, how many
/// answers.
pub fn entry(command: &str, query: Value, answers: Option<u64>) -> Value {
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name);
    json!({
        "time": crate::timefmt::format_utc(jiff::Timestamp::now().as_nanosecond() as i64),
        "uid": uid.as_raw(),
        "user": user,
        "sudo_user": std::env::var("SUDO_USER").ok(),
        "command": command,
        "query": query,
        "answers": answers,
    })
}

/// Appends `entries`, one line each, in one write, and syncs them once (a
/// batch lookup audits every request it answers this way). An error means
/// none of the accesses may go ahead.
pub fn record_entries(store: &Store, entries: &[Value]) -> Result<()> {
    let path = store.dir().join(AUDIT_FILE);
    let mut text = String::new();
    for e in entries {
        text.push_str(&format!("{e}\n"));
    }
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&path)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()
    };
    write().with_context(|| {
        format!(
            "cannot write the audit log {}: every access to the records is audited, so nothing is shown; \
             give this user write access to that file (e.g. a group shared with the recorder) or ask the operator",
            path.display()
        )
    })
}
