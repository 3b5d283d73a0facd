//! The audit log's hash chain, and `kmsd audit verify FILE…`, which checks it.
//!
//! Each record's `prev_sha256` is the SHA-256 (hex) of the line before it, as written
//! (its bytes without the newline). The first record kmsd writes to a new, empty log
//! names [`GENESIS`]; one written to a file that already has lines (a restart) names
//! that file's last line; after a reopen (SIGHUP, logrotate) the first record of the new
//! file names the last line of the old one. So a line edited, deleted or inserted
//! shows at the line after it, within a file and across rotated files.
//!
//! What it cannot show: lines cut from the end of the newest file (nothing follows
//! them), and a rewrite of the whole chain from some point on by whoever can write
//! the file (the chain has no secret in it). Ship the records off the host (syslog, a
//! collector reading stdout) to keep a copy out of that reach.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The `prev_sha256` of a chain's first record: nothing came before it.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The subcommand that checks audit logs.
pub const AUDIT: &str = "audit";

/// The SHA-256 of `line` (its bytes without the newline), lowercase hex.
pub fn line_sha256(line: impl AsRef<[u8]>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, line.as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `kmsd audit verify`: the files of one log, oldest first.
#[derive(Debug, Parser)]
#[command(
    name = "kmsd audit",
    bin_name = "kmsd audit",
    about = "Check audit logs offline"
)]
enum AuditArgs {
    /// Check the hash chain of audit log files given oldest first (e.g. audit.jsonl.2
    /// audit.jsonl.1 audit.jsonl): exits 0 if every record names the line before it,
    /// else 1, naming the first line that does not.
    Verify {
        /// The files, oldest first.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Check only the lines this replica wrote (its `replica` field): for a log
        /// where a collector merged several replicas, each with a chain of its own.
        #[arg(long, value_name = "NAME")]
        replica: Option<String>,
    },
}

/// Whether `args` (program name first) ask for `kmsd audit …`.
pub fn is_audit_command(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|arg| arg == AUDIT)
}

/// Runs `kmsd audit …` (program name first); prints the result and returns the exit
/// code.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let AuditArgs::Verify { files, replica } =
        match AuditArgs::try_parse_from(args.into_iter().skip(1)) {
            Ok(args) => args,
            Err(err) => err.exit(),
        };
    match verify_replica(&files, replica.as_deref()) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("kmsd audit verify: {err}");
            ExitCode::FAILURE
        }
    }
}

/// What a chain that checks out holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Files read.
    pub files: usize,
    /// Records after the first that start a new chain ([`GENESIS`]): kmsd started on
    /// an empty file, e.g. after the old one was moved while it was stopped.
    pub restarts: Vec<String>,
    /// The SHA-256 of the last line: the next record's `prev_sha256`.
    pub last_sha256: String,
    /// Records kmsd says it dropped before writing them (a full queue), in its
    /// `(records dropped)` lines: missing, but told, so not a break in the chain.
    pub dropped: u64,
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chain intact: {} records in {} files; last line sha256 {}",
            self.records, self.files, self.last_sha256
        )?;
        if self.dropped > 0 {
            write!(
                f,
                "\n{} records dropped by kmsd before they were written (its \"{}\" lines)",
                self.dropped,
                super::DROPPED_OPERATION
            )?;
        }
        for at in &self.restarts {
            write!(f, "\nnew chain (kmsd started on an empty log) at {at}")?;
        }
        Ok(())
    }
}

/// Checks the chain through `files`, oldest first. The first record may name any line
/// (the files before it may have been deleted); each later one must name the line
/// before it, or start a new chain ([`GENESIS`], reported).
///
/// # Errors
///
/// `FILE:LINE: why` for the first line that is unreadable, not a record, or does not
/// name the line before it; or a file that cannot be read.
pub fn verify(files: &[PathBuf]) -> Result<Verified, String> {
    verify_replica(files, None)
}

/// [`verify`] over the lines `replica` wrote only (all lines for `None`); every line
/// must still be a record.
///
/// # Errors
///
/// As [`verify`]'s, and no records of `replica`.
pub fn verify_replica(files: &[PathBuf], replica: Option<&str>) -> Result<Verified, String> {
    let mut previous: Option<String> = None;
    let mut verified = Verified {
        records: 0,
        files: files.len(),
        restarts: Vec::new(),
        last_sha256: GENESIS.to_owned(),
        dropped: 0,
    };
    for file in files {
        let text = std::fs::read(file).map_err(|err| format!("{}: {err}", file.display()))?;
        let body = text.strip_suffix(b"\n").unwrap_or(&text);
        if body.is_empty() {
            continue;
        }
        for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
            let at = format!("{}:{}", file.display(), index + 1);
            if raw.is_empty() {
                return Err(format!("{at}: an empty line"));
            }
            let line = std::str::from_utf8(raw).map_err(|_| format!("{at}: not UTF-8"))?;
            let chained = parse(line).map_err(|why| format!("{at}: {why}"))?;
            if replica.is_some_and(|name| chained.replica.as_deref() != Some(name)) {
                continue;
            }
            let named = &chained.prev_sha256;
            match &previous {
                Some(expected) if named == expected => {}
                Some(_) if named == GENESIS => verified.restarts.push(at.clone()),
                Some(expected) => {
                    let why = match chained.dropped() {
                        Some(count) => format!(
                            "kmsd wrote here that {count} records were dropped: a write \
                             that failed (e.g. a full disk) lost lines just before"
                        ),
                        None => "a line was edited, deleted or inserted here or just \
                                 before"
                            .to_owned(),
                    };
                    return Err(format!(
                        "{at}: the chain is broken: the record names a previous line with \
                         sha256 {named}, but the line before it has sha256 {expected} \
                         ({why})"
                    ));
                }
                None => {}
            }
            verified.dropped += chained.dropped().unwrap_or(0);
            let hash = line_sha256(line);
            verified.last_sha256.clone_from(&hash);
            previous = Some(hash);
            verified.records += 1;
        }
    }
    if verified.records == 0 {
        return Err(match replica {
            Some(name) => format!("no records of replica {name:?} in the files given"),
            None => "no records in the files given".into(),
        });
    }
    Ok(verified)
}

/// What `verify` reads of a line.
struct Chained {
    /// The SHA-256 of the line before, checked to be one.
    prev_sha256: String,
    operation: String,
    count: Option<u64>,
    replica: Option<String>,
}

impl Chained {
    /// The records a `(records dropped)` line says were lost.
    fn dropped(&self) -> Option<u64> {
        (self.operation == super::DROPPED_OPERATION).then_some(self.count.unwrap_or(0))
    }
}

/// A line as a record of the chain.
fn parse(line: &str) -> Result<Chained, String> {
    #[derive(serde::Deserialize)]
    struct Line {
        prev_sha256: Option<String>,
        #[serde(default)]
        operation: String,
        #[serde(default)]
        count: Option<u64>,
        #[serde(default)]
        replica: Option<String>,
    }
    let record: Line =
        serde_json::from_str(line).map_err(|err| format!("not an audit record: {err}"))?;
    let named = record
        .prev_sha256
        .ok_or("the record has no prev_sha256 (written before kmsd chained its records?)")?;
    if named.len() != 64
        || !named
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(format!("prev_sha256 {named:?} is not a SHA-256"));
    }
    Ok(Chained {
        prev_sha256: named,
        operation: record.operation,
        count: record.count,
        replica: record.replica,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditRecord, DROPPED_OPERATION};

    /// Lines of a chain from `records`, each naming the one before.
    fn chained(records: &[AuditRecord]) -> Vec<String> {
        let mut prev = GENESIS.to_owned();
        records
            .iter()
            .map(|record| {
                let record = AuditRecord {
                    prev_sha256: Some(prev.clone()),
                    ..record.clone()
                };
                let line = serde_json::to_string(&record).unwrap();
                prev = line_sha256(&line);
                line
            })
            .collect()
    }

    fn call(id: &str) -> AuditRecord {
        AuditRecord {
            request_id: id.into(),
            operation: "Decrypt".into(),
            outcome: "OK".into(),
            ..AuditRecord::default()
        }
    }

    fn dropped(count: u64) -> AuditRecord {
        AuditRecord {
            operation: DROPPED_OPERATION.into(),
            outcome: "DROPPED".into(),
            count: Some(count),
            ..AuditRecord::default()
        }
    }

    fn write(dir: &std::path::Path, lines: &[String]) -> PathBuf {
        let path = dir.join("audit.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    #[test]
    fn dropped_records_told_in_the_log_are_counted_and_a_lost_write_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // A full queue: the records never reached the writer, the chain is whole.
        let lines = chained(&[call("a"), dropped(3), call("b"), dropped(2)]);
        let path = write(dir.path(), &lines);
        let verified = verify(std::slice::from_ref(&path)).unwrap();
        assert_eq!((verified.records, verified.dropped), (4, 5));
        assert!(
            verified.to_string().contains("5 records dropped"),
            "{verified}"
        );

        // A failed write: its lines are missing and the next line names the last of them.
        let lines = chained(&[call("a"), call("lost"), dropped(1), call("b")]);
        let path = write(dir.path(), &[&lines[..1], &lines[2..]].concat());
        let err = verify(std::slice::from_ref(&path)).unwrap_err();
        assert!(err.contains("audit.jsonl:2: the chain is broken"), "{err}");
        assert!(err.contains("1 records were dropped"), "{err}");
        let path = write(dir.path(), &[&lines[..1], &lines[3..]].concat());
        let err = verify(std::slice::from_ref(&path)).unwrap_err();
        assert!(
            err.contains("a line was edited, deleted or inserted"),
            "{err}"
        );
    }

    #[test]
    fn a_merged_log_is_checked_one_replica_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let of = |replica: &str, ids: &[&str]| {
            let records: Vec<AuditRecord> = ids
                .iter()
                .map(|id| AuditRecord {
                    replica: Some(replica.to_owned()),
                    ..call(id)
                })
                .collect();
            chained(&records)
        };
        let (a, b) = (
            of("kmsd-0", &["a1", "a2", "a3"]),
            of("kmsd-1", &["b1", "b2"]),
        );
        let merged = [&a[0], &b[0], &a[1], &b[1], &a[2]].map(String::clone);
        let path = write(dir.path(), &merged);
        let files = std::slice::from_ref(&path);
        assert!(verify(files).is_err(), "two chains interleaved");
        assert_eq!(verify_replica(files, Some("kmsd-0")).unwrap().records, 3);
        assert_eq!(verify_replica(files, Some("kmsd-1")).unwrap().records, 2);
        let err = verify_replica(files, Some("kmsd-2")).unwrap_err();
        assert!(err.contains("no records of replica \"kmsd-2\""), "{err}");
        // One of kmsd-0's lines deleted shows in its chain only.
        let path = write(dir.path(), &[&a[0], &b[0], &b[1], &a[2]].map(String::clone));
        let files = std::slice::from_ref(&path);
        assert!(verify_replica(files, Some("kmsd-1")).is_ok());
        let err = verify_replica(files, Some("kmsd-0")).unwrap_err();
        assert!(err.contains("audit.jsonl:4: the chain is broken"), "{err}");
    }

    #[test]
    fn restarts_are_reported_and_bad_lines_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = chained(&[call("a"), call("b")]);
        lines.extend(chained(&[call("c")]));
        let path = write(dir.path(), &lines);
        let verified = verify(std::slice::from_ref(&path)).unwrap();
        assert_eq!(verified.restarts, [format!("{}:3", path.display())]);
        assert_eq!(verified.last_sha256, line_sha256(&lines[2]));

        for (bad, why) in [
            (r#"{"operation":"Decrypt"}"#, "has no prev_sha256"),
            (r#"{"prev_sha256":"abc"}"#, "is not a SHA-256"),
            (
                &format!(r#"{{"prev_sha256":"{}"}}"#, "A".repeat(64)),
                "is not a SHA-256",
            ),
            ("{\"prev_sha256\":", "not an audit record"),
        ] {
            let path = write(dir.path(), &[lines[0].clone(), bad.to_owned()]);
            let err = verify(std::slice::from_ref(&path)).unwrap_err();
            assert!(err.contains(":2: ") && err.contains(why), "{bad}: {err}");
        }
        let path = write(
            dir.path(),
            &[lines[0].clone(), String::new(), lines[1].clone()],
        );
        let err = verify(std::slice::from_ref(&path)).unwrap_err();
        assert!(err.contains(":2: an empty line"), "{err}");
        std::fs::write(&path, "").unwrap();
        assert_eq!(
            verify(std::slice::from_ref(&path)).unwrap_err(),
            "no records in the files given"
        );
        let missing = dir.path().join("missing.jsonl");
        assert!(verify(&[missing]).unwrap_err().contains("missing.jsonl"));
    }
}
