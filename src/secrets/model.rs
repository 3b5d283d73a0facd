//! The rules of a secret, pure: names, version IDs, stages and their moves, the
//! version cap, data types and sizes, rotation intervals, ExtendedConfig.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

use crate::error::KmsError;
use crate::store::SecretVersionRecord;

/// The stage of the version GetSecretValue returns by default; on exactly one version.
pub const STAGE_CURRENT: &str = "ACSCurrent";
/// The stage the version that was current gets when another becomes current.
pub const STAGE_PREVIOUS: &str = "ACSPrevious";
/// Versions without a stage kept per secret; older unstaged versions are removed.
pub const MAX_UNSTAGED_VERSIONS: usize = 10;
/// Stages one version may carry.
pub const MAX_STAGES_PER_VERSION: usize = 10;
/// The largest secret value: 30 KiB (after base64 decoding, for binary data).
pub const MAX_DATA_LEN: usize = 30 * 1024;
/// The longest secret name.
pub const MAX_NAME_LEN: usize = 192;
/// The longest version ID and stage name.
pub const MAX_LABEL_LEN: usize = 64;
/// The longest description.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// The longest ExtendedConfig (a JSON object).
pub const MAX_EXTENDED_CONFIG_LEN: usize = 8192;
/// The only secret type kmsd manages.
pub const TYPE_GENERIC: &str = "Generic";
/// The shortest and longest rotation intervals.
pub const MIN_ROTATION_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// See [`MIN_ROTATION_INTERVAL`].
pub const MAX_ROTATION_INTERVAL: Duration = Duration::from_secs(365 * 86_400);
/// Recovery windows of a scheduled deletion, in days.
pub const RECOVERY_WINDOW_DAYS: std::ops::RangeInclusive<u32> = 7..=30;
/// The window when DeleteSecret names none.
pub const DEFAULT_RECOVERY_WINDOW_DAYS: u32 = 30;

/// How a version's data is given and returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    /// UTF-8 text, as it is.
    Text,
    /// Bytes, given and returned in base64.
    Binary,
}

impl DataType {
    /// `text` (also for an empty value) or `binary`.
    pub fn parse(value: &str) -> Result<Self, KmsError> {
        match value {
            "" | "text" => Ok(Self::Text),
            "binary" => Ok(Self::Binary),
            other => Err(KmsError::InvalidParameter(format!(
                "SecretDataType must be text or binary, got {:?}.",
                shorten(other)
            ))),
        }
    }

    /// As the public API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Binary => "binary",
        }
    }

    /// The bytes to seal for `data` as sent: text as it is, binary decoded.
    ///
    /// # Errors
    /// `MissingParameter` for no data, `InvalidParameter` for binary data that is not
    /// base64 or for more than [`MAX_DATA_LEN`] bytes.
    pub fn decode(self, data: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        if data.is_empty() {
            return Err(KmsError::MissingParameter("SecretData"));
        }
        let bytes = match self {
            Self::Text => Zeroizing::new(data.as_bytes().to_vec()),
            Self::Binary => Zeroizing::new(BASE64.decode(data).map_err(|_| {
                KmsError::InvalidParameter(
                    "SecretData of SecretDataType binary must be base64.".into(),
                )
            })?),
        };
        if bytes.len() > MAX_DATA_LEN {
            return Err(KmsError::InvalidParameter(format!(
                "SecretData must be at most {MAX_DATA_LEN} bytes (30 KiB), got {}.",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// `bytes` as the response's `SecretData`: text as it is, binary in base64.
    ///
    /// # Errors
    /// Internal if sealed text is not UTF-8 (it was checked when it was put).
    pub fn encode(self, bytes: &[u8]) -> Result<Zeroizing<String>, KmsError> {
        match self {
            Self::Text => std::str::from_utf8(bytes)
                .map(|text| Zeroizing::new(text.to_owned()))
                .map_err(|_| KmsError::internal("a text secret holds bytes that are not UTF-8")),
            Self::Binary => Ok(Zeroizing::new(BASE64.encode(bytes))),
        }
    }
}

/// Checks a secret name: 1 to 192 of `[A-Za-z0-9/_+=.@-]`.
///
/// # Errors
/// `MissingParameter` when empty, `InvalidParameter` otherwise.
pub fn check_name(name: &str) -> Result<(), KmsError> {
    if name.is_empty() {
        return Err(KmsError::MissingParameter("SecretName"));
    }
    let valid = name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(KmsError::InvalidParameter(format!(
            "SecretName must be 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 / _ + = . @ -, got {:?}.",
            shorten(name)
        )))
    }
}

/// Checks a version ID or stage name (`what` names the parameter): 1 to 64 of
/// `[A-Za-z0-9._-]`.
///
/// # Errors
/// `InvalidParameter`.
pub fn check_label(what: &str, value: &str) -> Result<(), KmsError> {
    let valid = !value.is_empty()
        && value.len() <= MAX_LABEL_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(KmsError::InvalidParameter(format!(
            "{what} must be 1 to {MAX_LABEL_LEN} of A-Z a-z 0-9 . _ -, got {:?}.",
            shorten(value)
        )))
    }
}

/// The stages PutSecretValue sets: its `VersionStages` (a JSON list of names; empty for
/// `["ACSCurrent"]`). `ACSPrevious` is kmsd's to set.
///
/// # Errors
/// `InvalidParameter` for anything but a list of distinct valid stage names.
pub fn parse_stages(json: &str) -> Result<Vec<String>, KmsError> {
    if json.trim().is_empty() {
        return Ok(vec![STAGE_CURRENT.to_owned()]);
    }
    let stages: Vec<String> = serde_json::from_str(json).map_err(|_| {
        KmsError::InvalidParameter(
            "VersionStages must be a JSON list of stage names, e.g. [\"ACSCurrent\"].".into(),
        )
    })?;
    if stages.len() > MAX_STAGES_PER_VERSION {
        return Err(KmsError::InvalidParameter(format!(
            "VersionStages may name at most {MAX_STAGES_PER_VERSION} stages."
        )));
    }
    for (i, stage) in stages.iter().enumerate() {
        check_movable_stage(stage)?;
        if stages[..i].contains(stage) {
            return Err(KmsError::InvalidParameter(format!(
                "VersionStages names {stage} twice."
            )));
        }
    }
    Ok(stages)
}

/// Checks a stage a caller may set or move: a valid name other than `ACSPrevious`.
///
/// # Errors
/// `InvalidParameter`.
pub fn check_movable_stage(stage: &str) -> Result<(), KmsError> {
    check_label("VersionStage", stage)?;
    if stage == STAGE_PREVIOUS {
        return Err(KmsError::InvalidParameter(
            "ACSPrevious is set by kmsd when another version becomes ACSCurrent.".into(),
        ));
    }
    Ok(())
}

/// Checks ExtendedConfig: a JSON object of at most [`MAX_EXTENDED_CONFIG_LEN`] bytes.
///
/// # Errors
/// `InvalidParameter`.
pub fn check_extended_config(config: &str) -> Result<(), KmsError> {
    let is_object = config.len() <= MAX_EXTENDED_CONFIG_LEN
        && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(config).is_ok();
    if is_object {
        Ok(())
    } else {
        Err(KmsError::InvalidParameter(format!(
            "ExtendedConfig must be a JSON object of at most {MAX_EXTENDED_CONFIG_LEN} bytes."
        )))
    }
}

/// Checks a description: at most [`MAX_DESCRIPTION_LEN`] bytes.
///
/// # Errors
/// `InvalidParameter`.
pub fn check_description(description: &str) -> Result<(), KmsError> {
    if description.len() <= MAX_DESCRIPTION_LEN {
        Ok(())
    } else {
        Err(KmsError::InvalidParameter(format!(
            "Description must be at most {MAX_DESCRIPTION_LEN} bytes."
        )))
    }
}

/// Checks a secret type: empty (Generic) or `Generic`.
///
/// # Errors
/// `InvalidParameter` for the public API's other types, which kmsd does not manage.
pub fn check_type(secret_type: &str) -> Result<(), KmsError> {
    match secret_type {
        "" | TYPE_GENERIC => Ok(()),
        other => Err(KmsError::InvalidParameter(format!(
            "SecretType {:?} is not supported: kmsd manages Generic secrets only.",
            shorten(other)
        ))),
    }
}

/// A rotation interval as the public API writes it: a whole number followed by `s`,
/// `h` or `d` (e.g. `604800s`, `168h`, `7d`), from 6 hours to 365 days. `None` for
/// an empty value.
///
/// # Errors
/// `InvalidParameter`.
pub fn parse_rotation_interval(text: &str) -> Result<Option<Duration>, KmsError> {
    if text.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        KmsError::InvalidParameter(format!(
            "RotationInterval must be a whole number of s, h or d from 6h to 365d, e.g. \
             604800s, got {:?}.",
            shorten(text)
        ))
    };
    // By the last char, not the last byte: a caller's multi-byte char is no boundary.
    let Some(unit) = text.chars().next_back() else {
        return Err(invalid());
    };
    let number = &text[..text.len() - unit.len_utf8()];
    let unit_secs = match unit {
        's' => 1,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(invalid()),
    };
    let secs = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_secs))
        .ok_or_else(invalid)?;
    let interval = Duration::from_secs(secs);
    if !(MIN_ROTATION_INTERVAL..=MAX_ROTATION_INTERVAL).contains(&interval) {
        return Err(invalid());
    }
    Ok(Some(interval))
}

/// A rotation interval as the public API prints it: seconds, e.g. `604800s`.
pub fn format_rotation_interval(secs: u64) -> String {
    format!("{secs}s")
}

// === stages ===

/// Gives `stage` to the version at `index`, taking it from any other version. A new
/// `ACSCurrent` moves the version that held it to `ACSPrevious` (taken from whichever
/// version held that).
pub fn give_stage(versions: &mut [SecretVersionRecord], index: usize, stage: &str) {
    if versions[index].stages.iter().any(|s| s == stage) {
        return;
    }
    let holder = versions
        .iter()
        .position(|v| v.stages.iter().any(|s| s == stage));
    if let Some(holder) = holder {
        versions[holder].stages.retain(|s| s != stage);
        if stage == STAGE_CURRENT {
            for version in versions.iter_mut() {
                version.stages.retain(|s| s != STAGE_PREVIOUS);
            }
            versions[holder].stages.push(STAGE_PREVIOUS.to_owned());
        }
    }
    versions[index].stages.push(stage.to_owned());
}

/// Removes the oldest versions that carry no stage, keeping [`MAX_UNSTAGED_VERSIONS`]
/// of them (versions are kept oldest first).
pub fn drop_excess_unstaged(versions: &mut Vec<SecretVersionRecord>) {
    let unstaged = versions.iter().filter(|v| v.stages.is_empty()).count();
    let mut excess = unstaged.saturating_sub(MAX_UNSTAGED_VERSIONS);
    versions.retain(|v| {
        if excess > 0 && v.stages.is_empty() {
            excess -= 1;
            return false;
        }
        true
    });
}

/// UpdateSecretVersionStage on `versions`: takes `stage` from `remove_from` (which must
/// hold it) and gives it to `move_to`. `ACSCurrent` must move (it is on exactly one
/// version), from the version that holds it.
///
/// # Errors
/// `InvalidParameter` for a move that breaks these rules, `SecretVersionNotFound` for
/// a version the secret does not have.
pub fn move_stage(
    versions: &mut [SecretVersionRecord],
    stage: &str,
    remove_from: &str,
    move_to: &str,
) -> Result<(), KmsError> {
    check_movable_stage(stage)?;
    if remove_from.is_empty() && move_to.is_empty() {
        return Err(KmsError::MissingParameter(
            "RemoveFromVersion or MoveToVersion",
        ));
    }
    let find = |id: &str| {
        versions
            .iter()
            .position(|v| v.version_id == id)
            .ok_or_else(|| KmsError::SecretVersionNotFound(shorten(id)))
    };
    let to = (!move_to.is_empty()).then(|| find(move_to)).transpose()?;
    if !remove_from.is_empty() {
        let from = find(remove_from)?;
        if !versions[from].stages.iter().any(|s| s == stage) {
            return Err(KmsError::InvalidParameter(format!(
                "The version {remove_from} does not have the stage {stage}."
            )));
        }
        if stage == STAGE_CURRENT && to.is_none() {
            return Err(KmsError::InvalidParameter(
                "ACSCurrent is always on one version: name the MoveToVersion.".into(),
            ));
        }
        if to.is_none() {
            versions[from].stages.retain(|s| s != stage);
        }
    } else if stage == STAGE_CURRENT {
        return Err(KmsError::InvalidParameter(
            "Moving ACSCurrent needs RemoveFromVersion: the version that holds it.".into(),
        ));
    } else if versions.iter().any(|v| v.stages.iter().any(|s| s == stage)) {
        return Err(KmsError::InvalidParameter(format!(
            "The stage {stage} is on another version: name it as RemoveFromVersion."
        )));
    }
    if let Some(to) = to {
        if versions[to].stages.len() >= MAX_STAGES_PER_VERSION {
            return Err(KmsError::InvalidParameter(format!(
                "A version carries at most {MAX_STAGES_PER_VERSION} stages."
            )));
        }
        give_stage(versions, to, stage);
    }
    Ok(())
}

/// The version GetSecretValue reads: by `version_id` and/or `stage` (default
/// `ACSCurrent` when neither is given). Both given must name the same version.
///
/// # Errors
/// `SecretVersionNotFound` when none matches, `InvalidParameter` when the two name
/// different versions.
pub fn pick_version<'a>(
    versions: &'a [SecretVersionRecord],
    stage: &str,
    version_id: &str,
) -> Result<&'a SecretVersionRecord, KmsError> {
    let by_stage = |stage: &str| {
        versions
            .iter()
            .find(|v| v.stages.iter().any(|s| s == stage))
            .ok_or_else(|| {
                KmsError::SecretVersionNotFound(format!("with stage {}", shorten(stage)))
            })
    };
    if version_id.is_empty() {
        let stage = if stage.is_empty() {
            STAGE_CURRENT
        } else {
            stage
        };
        return by_stage(stage);
    }
    let version = versions
        .iter()
        .find(|v| v.version_id == version_id)
        .ok_or_else(|| KmsError::SecretVersionNotFound(shorten(version_id)))?;
    if !stage.is_empty() && !version.stages.iter().any(|s| s == stage) {
        return Err(KmsError::InvalidParameter(format!(
            "VersionStage {} and VersionId {} name different versions.",
            shorten(stage),
            shorten(version_id)
        )));
    }
    Ok(version)
}

/// A caller's value cut to a length fit for an error message.
fn shorten(value: &str) -> String {
    value.chars().take(MAX_NAME_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SealedSecretData;

    fn version(id: &str, stages: &[&str]) -> SecretVersionRecord {
        SecretVersionRecord {
            version_id: id.to_owned(),
            created_at_ms: 0,
            data_type: "text".into(),
            stages: stages.iter().map(|s| (*s).to_owned()).collect(),
            sealed: SealedSecretData {
                key_version_id: String::new(),
                key_iv: Vec::new(),
                sealed_key: Vec::new(),
                data_iv: Vec::new(),
                sealed_data: Vec::new(),
            },
        }
    }

    fn stages(versions: &[SecretVersionRecord]) -> Vec<(String, Vec<String>)> {
        versions
            .iter()
            .map(|v| (v.version_id.clone(), v.stages.clone()))
            .collect()
    }

    fn expect(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(id, s)| {
                (
                    (*id).to_owned(),
                    s.iter().map(|s| (*s).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn names_and_labels_follow_the_public_rules() {
        assert!(check_name("db/payments/primary+x=y.z@w-1_2").is_ok());
        assert!(check_name(&"a".repeat(192)).is_ok());
        assert!(matches!(
            check_name(""),
            Err(KmsError::MissingParameter("SecretName"))
        ));
        for bad in ["a b", &"a".repeat(193), "é", "a\0b", "a:b"] {
            assert!(
                matches!(check_name(bad), Err(KmsError::InvalidParameter(_))),
                "{bad:?}"
            );
        }
        assert!(check_label("VersionId", "v1.2-3_x").is_ok());
        assert!(check_label("VersionId", "").is_err());
        assert!(check_label("VersionId", "a/b").is_err());
        assert!(check_label("VersionId", &"a".repeat(65)).is_err());
    }

    #[test]
    fn text_and_binary_data_round_trip_within_30_kib() {
        let text = DataType::parse("").unwrap();
        assert_eq!(&*text.decode("hunter2").unwrap(), b"hunter2");
        assert_eq!(&*text.encode(b"hunter2").unwrap(), "hunter2");
        let binary = DataType::parse("binary").unwrap();
        let bytes = binary.decode("AAEC/w==").unwrap();
        assert_eq!(&*bytes, &[0, 1, 2, 255]);
        assert_eq!(&*binary.encode(&bytes).unwrap(), "AAEC/w==");
        assert!(binary.decode("not base64!").is_err());
        assert!(DataType::parse("json").is_err());
        assert!(text.decode(&"x".repeat(MAX_DATA_LEN)).is_ok());
        assert!(matches!(
            text.decode(&"x".repeat(MAX_DATA_LEN + 1)),
            Err(KmsError::InvalidParameter(_))
        ));
        assert!(matches!(
            text.decode(""),
            Err(KmsError::MissingParameter("SecretData"))
        ));
    }

    #[test]
    fn stages_lists_and_intervals_parse_strictly() {
        assert_eq!(parse_stages("").unwrap(), ["ACSCurrent"]);
        assert_eq!(
            parse_stages(r#"["ACSCurrent","blue"]"#).unwrap(),
            ["ACSCurrent", "blue"]
        );
        for bad in [
            r#"["ACSPrevious"]"#,
            r#"["a","a"]"#,
            "ACSCurrent",
            r#"[""]"#,
        ] {
            assert!(parse_stages(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_rotation_interval("604800s").unwrap(),
            Some(Duration::from_secs(604_800))
        );
        assert_eq!(
            parse_rotation_interval("7d").unwrap(),
            Some(Duration::from_secs(604_800))
        );
        assert_eq!(parse_rotation_interval("").unwrap(), None);
        for bad in [
            "1h",
            "366d",
            "7",
            "d",
            "-7d",
            "7w",
            "99999999999999999999d",
            "7é",
            "é",
        ] {
            assert!(parse_rotation_interval(bad).is_err(), "{bad}");
        }
        assert!(check_extended_config(r#"{"a":[1,2]}"#).is_ok());
        assert!(check_extended_config("[1]").is_err());
        assert!(check_extended_config("{").is_err());
    }

    #[test]
    fn a_new_current_moves_the_old_one_to_previous() {
        let mut versions = vec![version("v1", &["ACSCurrent"])];
        versions.push(version("v2", &[]));
        give_stage(&mut versions, 1, STAGE_CURRENT);
        assert_eq!(
            stages(&versions),
            expect(&[("v1", &["ACSPrevious"]), ("v2", &["ACSCurrent"])])
        );
        versions.push(version("v3", &[]));
        give_stage(&mut versions, 2, STAGE_CURRENT);
        assert_eq!(
            stages(&versions),
            expect(&[
                ("v1", &[]),
                ("v2", &["ACSPrevious"]),
                ("v3", &["ACSCurrent"])
            ])
        );
    }

    #[test]
    fn custom_stages_move_and_current_is_never_lost() {
        let mut versions = vec![
            version("v1", &["ACSPrevious", "blue"]),
            version("v2", &["ACSCurrent"]),
        ];
        move_stage(&mut versions, "blue", "v1", "v2").unwrap();
        assert_eq!(
            stages(&versions),
            expect(&[("v1", &["ACSPrevious"]), ("v2", &["ACSCurrent", "blue"])])
        );
        move_stage(&mut versions, "blue", "v2", "").unwrap();
        move_stage(&mut versions, "green", "", "v1").unwrap();
        assert_eq!(
            stages(&versions),
            expect(&[("v1", &["ACSPrevious", "green"]), ("v2", &["ACSCurrent"])])
        );
        // A rollback: ACSCurrent back to v1, v2 becomes previous.
        move_stage(&mut versions, "ACSCurrent", "v2", "v1").unwrap();
        assert_eq!(
            stages(&versions),
            expect(&[("v1", &["green", "ACSCurrent"]), ("v2", &["ACSPrevious"])])
        );
        // Refused: dropping ACSCurrent, taking a stage from a version without it,
        // adding a stage held elsewhere without naming it, unknown versions.
        assert!(move_stage(&mut versions, "ACSCurrent", "v1", "").is_err());
        assert!(move_stage(&mut versions, "ACSCurrent", "", "v2").is_err());
        assert!(move_stage(&mut versions, "green", "v2", "v1").is_err());
        assert!(move_stage(&mut versions, "green", "", "v2").is_err());
        assert!(move_stage(&mut versions, "ACSPrevious", "v2", "v1").is_err());
        assert!(matches!(
            move_stage(&mut versions, "green", "v1", "v9"),
            Err(KmsError::SecretVersionNotFound(_))
        ));
        assert_eq!(
            stages(&versions),
            expect(&[("v1", &["green", "ACSCurrent"]), ("v2", &["ACSPrevious"])])
        );
    }

    #[test]
    fn at_most_ten_unstaged_versions_are_kept_oldest_go_first() {
        let mut versions: Vec<_> = (0..12).map(|i| version(&format!("u{i}"), &[])).collect();
        versions.insert(3, version("staged", &["blue"]));
        drop_excess_unstaged(&mut versions);
        // u0 and u1 go; the staged version stays where it was, whatever its age.
        let ids: Vec<_> = versions.iter().map(|v| v.version_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "u2", "staged", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10", "u11"
            ]
        );
    }

    #[test]
    fn a_version_is_picked_by_stage_or_id_and_both_must_agree() {
        let versions = vec![
            version("v1", &["ACSPrevious"]),
            version("v2", &["ACSCurrent"]),
        ];
        assert_eq!(pick_version(&versions, "", "").unwrap().version_id, "v2");
        assert_eq!(
            pick_version(&versions, "ACSPrevious", "")
                .unwrap()
                .version_id,
            "v1"
        );
        assert_eq!(pick_version(&versions, "", "v1").unwrap().version_id, "v1");
        assert_eq!(
            pick_version(&versions, "ACSCurrent", "v2")
                .unwrap()
                .version_id,
            "v2"
        );
        assert!(matches!(
            pick_version(&versions, "ACSCurrent", "v1"),
            Err(KmsError::InvalidParameter(_))
        ));
        assert!(matches!(
            pick_version(&versions, "", "v3"),
            Err(KmsError::SecretVersionNotFound(_))
        ));
        assert!(matches!(
            pick_version(&versions, "blue", ""),
            Err(KmsError::SecretVersionNotFound(_))
        ));
    }
}
