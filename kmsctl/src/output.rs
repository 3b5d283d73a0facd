//! How results are shown: aligned fields and tables with readable dates for people
//! (the default), or one JSON document per command for scripts (`--output json`),
//! with the public API's PascalCase field names.

use std::io::Write;

use clap::ValueEnum;
use serde_json::{Value, json};

use kmsd_api::pb;

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned fields and tables.
    Text,
    /// One JSON document.
    Json,
}

/// What a command shows: the same facts for both formats.
#[derive(Debug)]
pub enum Shown {
    /// Named fields, one per line.
    Fields(Vec<(&'static str, String)>, Value),
    /// A table: a header and rows.
    Table(Vec<&'static str>, Vec<Vec<String>>, Value),
    /// One line of text.
    Line(String, Value),
    /// Nothing: the command's result went to stdout already.
    Nothing,
}

impl Shown {
    /// Writes this in `format` to stdout.
    pub fn print(&self, format: OutputFormat) {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let _ = match format {
            OutputFormat::Json => {
                let value = match self {
                    Self::Fields(_, v) | Self::Table(_, _, v) | Self::Line(_, v) => v,
                    Self::Nothing => return,
                };
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(value).unwrap_or_default()
                )
            }
            OutputFormat::Text => write!(out, "{}", self.text()),
        };
    }

    /// The human form.
    pub fn text(&self) -> String {
        match self {
            Self::Fields(fields, _) => fields_text(fields),
            Self::Table(header, rows, _) => table_text(header, rows),
            Self::Line(line, _) => format!("{line}\n"),
            Self::Nothing => String::new(),
        }
    }
}

/// `name  value` lines, the values aligned.
pub fn fields_text(fields: &[(&'static str, String)]) -> String {
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    fields
        .iter()
        .map(|(name, value)| format!("{name:<width$}  {value}\n"))
        .collect()
}

/// A header and rows, each column as wide as its widest cell.
pub fn table_text(header: &[&'static str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut text = line(header.to_vec());
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

/// An RFC 3339 UTC date as people read it: `2026-11-30T08:00:00Z` is
/// `2026-11-30 08:00:00 UTC`; empty is `-`.
pub fn date(rfc3339: &str) -> String {
    if rfc3339.is_empty() {
        return "-".to_owned();
    }
    match humantime::parse_rfc3339(rfc3339) {
        Ok(time) => {
            let seconds = humantime::format_rfc3339_seconds(time).to_string();
            format!(
                "{} UTC",
                seconds.trim_end_matches('Z').replacen('T', " ", 1)
            )
        }
        Err(_) => rfc3339.to_owned(),
    }
}

/// A protobuf duration as people read it (`30days`), `-` when unset.
pub fn duration(value: Option<&prost_types::Duration>) -> String {
    match value {
        // Rotation intervals are whole days; humantime would say "2months 29days 2h
        // 52m 48s" for 90 days (its month is 30.44 days).
        Some(d) if d.seconds > 0 && d.seconds % 86_400 == 0 => match d.seconds / 86_400 {
            1 => "1 day".to_owned(),
            days => format!("{days} days"),
        },
        Some(d) if d.seconds > 0 => {
            humantime::format_duration(std::time::Duration::from_secs(d.seconds as u64)).to_string()
        }
        _ => "-".to_owned(),
    }
}

/// A protobuf duration as the API's JSON spells it: `"2592000s"`.
fn duration_json(value: Option<&prost_types::Duration>) -> Value {
    match value {
        Some(d) => json!(format!("{}s", d.seconds)),
        None => Value::Null,
    }
}

/// A key's metadata as JSON.
pub fn key_json(key: &pb::KeyMetadata) -> Value {
    json!({
        "KeyId": key.key_id,
        "KeySpec": key.key_spec,
        "KeyUsage": key.key_usage,
        "KeyState": key.key_state,
        "Description": key.description,
        "CreationDate": key.creation_date,
        "PrimaryKeyVersion": key.primary_key_version,
        "InitialKeyVersion": key.initial_key_version,
        "AutomaticRotation": key.automatic_rotation,
        "RotationInterval": duration_json(key.rotation_interval.as_ref()),
        "LastRotationDate": key.last_rotation_date,
        "NextRotationDate": key.next_rotation_date,
        "DeleteDate": key.delete_date,
        "ProtectionLevel": key.protection_level,
    })
}

/// A key's metadata as fields.
pub fn key_fields(key: &pb::KeyMetadata) -> Vec<(&'static str, String)> {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    vec![
        ("Key ID", key.key_id.clone()),
        ("State", key.key_state.clone()),
        ("Description", or_dash(&key.description)),
        ("Spec", key.key_spec.clone()),
        ("Usage", key.key_usage.clone()),
        ("Protection", key.protection_level.clone()),
        ("Created", date(&key.creation_date)),
        ("Primary version", key.primary_key_version.clone()),
        ("Initial version", key.initial_key_version.clone()),
        (
            "Rotation",
            if key.automatic_rotation {
                format!("every {}", duration(key.rotation_interval.as_ref()))
            } else {
                "off".to_owned()
            },
        ),
        ("Last rotation", date(&key.last_rotation_date)),
        ("Next rotation", date(&key.next_rotation_date)),
        ("Deletion date", date(&key.delete_date)),
    ]
}

/// A key's metadata, shown.
pub fn key(key: Option<&pb::KeyMetadata>) -> Shown {
    let key = key.cloned().unwrap_or_default();
    Shown::Fields(key_fields(&key), json!({ "KeyMetadata": key_json(&key) }))
}

/// An alias as JSON.
pub fn alias_json(alias: &pb::Alias) -> Value {
    json!({
        "AliasName": alias.alias_name,
        "KeyId": alias.key_id,
        "CreationDate": alias.creation_date,
        "UpdateDate": alias.update_date,
    })
}

/// A key version as JSON.
pub fn version_json(version: &pb::KeyVersion) -> Value {
    json!({
        "KeyId": version.key_id,
        "KeyVersionId": version.key_version_id,
        "CreationDate": version.creation_date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let text = table_text(
            &["ALIAS", "KEY ID"],
            &[
                vec!["alias/a".into(), "key-1".into()],
                vec!["alias/longer".into(), "key-2".into()],
            ],
        );
        assert_eq!(
            text,
            "ALIAS         KEY ID\nalias/a       key-1\nalias/longer  key-2\n"
        );
    }

    #[test]
    fn dates_read_as_utc_and_empty_is_a_dash() {
        assert_eq!(date("2026-11-30T08:00:00Z"), "2026-11-30 08:00:00 UTC");
        assert_eq!(date(""), "-");
        assert_eq!(date("not a date"), "not a date");
        assert_eq!(
            duration(Some(&prost_types::Duration {
                seconds: 30 * 86400,
                nanos: 0
            })),
            "30 days"
        );
        assert_eq!(
            duration(Some(&prost_types::Duration {
                seconds: 90,
                nanos: 0
            })),
            "1m 30s"
        );
    }
}
