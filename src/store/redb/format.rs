//! The embedded store's format version, recorded in the store itself (`meta`
//! entry `store_format`, ASCII decimal) so a binary knows what it opens.
//!
//! - A store of the format this build writes ([`STORE_FORMAT`]) opens as it is.
//! - A store of an older format (0: a store written before formats were recorded) is
//!   migrated in place at open, in one durable transaction, after a copy of the file
//!   is kept beside it (`kmsd.redb.format-<old>.bak`): a migration that goes wrong, or
//!   a roll back to the older binary, still has the store as it was.
//! - A store of a newer format is refused before anything is written, with an error
//!   naming both formats: an older binary could misread what it does not know (or,
//!   rotating the root key, leave records it does not know sealed under the old key).
//!
//! Bump [`STORE_FORMAT`] when a change would make an older binary misread or mishandle
//! the store (a new kind of sealed record, a changed encoding), add its step to
//! `RedbStore::upgrade`, and add a fixture store of the old format under
//! `tests/data/fixtures/` so every later build keeps opening it.

use std::path::{Path, PathBuf};

use crate::store::{StoreError, StoreResult};

/// The format this build writes and reads: 1 recorded the format; 2 added secrets;
/// 3 added idempotency tokens (a table an older binary would not consult, so a retried
/// creation through it could make a second object).
pub const STORE_FORMAT: u32 = 3;

/// The `meta` entry that records the format.
pub(super) const FORMAT_ENTRY: &str = "store_format";

/// The recorded form of `format`.
pub(super) fn encode(format: u32) -> Vec<u8> {
    format.to_string().into_bytes()
}

/// The format of a store from its `meta` entry (none: format 0), refusing a format
/// newer than this build's and an entry that does not parse.
pub(super) fn check(entry: Option<&[u8]>) -> StoreResult<u32> {
    let Some(bytes) = entry else { return Ok(0) };
    let format = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse::<u32>().ok())
        .ok_or_else(|| {
            StoreError::backend(
                "checking the store format",
                "the store's format entry is not a number (corrupt store?)",
            )
        })?;
    if format > STORE_FORMAT {
        return Err(StoreError::backend(
            "checking the store format",
            format!(
                "the store is format {format}, newer than this kmsd knows (format \
                 {STORE_FORMAT}): run a kmsd at least as new as the one that wrote it, or \
                 restore a backup taken before the upgrade"
            ),
        ));
    }
    Ok(format)
}

/// Copies the database file to `<file>.format-<format>.bak` beside it (through a
/// temporary file, synced, then renamed), before a migration changes it.
pub(super) fn keep_copy(db_file: &Path, format: u32) -> StoreResult<PathBuf> {
    let fail = |err: std::io::Error| StoreError::backend("keeping a copy before a migration", err);
    let name = db_file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kept = db_file.with_file_name(format!("{name}.format-{format}.bak"));
    let partial = db_file.with_file_name(format!("{name}.format-{format}.bak.partial"));
    std::fs::copy(db_file, &partial).map_err(fail)?;
    std::fs::File::open(&partial)
        .and_then(|file| file.sync_all())
        .map_err(fail)?;
    std::fs::rename(&partial, &kept).map_err(fail)?;
    if let Some(dir) = kept.parent() {
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(fail)?;
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_read_and_newer_ones_refused() {
        assert_eq!(check(None).unwrap(), 0);
        assert_eq!(check(Some(&encode(STORE_FORMAT))).unwrap(), STORE_FORMAT);
        let newer = check(Some(&encode(STORE_FORMAT + 1))).unwrap_err();
        let message = std::error::Error::source(&newer).unwrap().to_string();
        assert!(
            message.contains(&format!("format {}", STORE_FORMAT + 1))
                && message.contains(&format!("format {STORE_FORMAT}")),
            "{message}"
        );
        assert!(check(Some(b"one")).is_err());
    }
}
