//! Where a LUN's persistent-reservation (APTPL) and saved mode-page state lives: one directory
//! per target under `DATA_DIR/lun-state/`, named by a reversible encoding of the target IQN,
//! holding `lunN.pr.json` and `lunN.mode.json`. Two LUNs never share a file, whatever their
//! IQNs look like.
//!
//! Earlier releases named the files `DATA_DIR/<sanitized IQN>-lunN` with the extension
//! replaced, which cut the name at the IQN's last dot: every LUN of every target whose IQN
//! shares the part before the last dot shared one file, so an APTPL reservation or WCE=0 set on
//! one LUN came back on the others after a restart. [`adopt_legacy`] moves such a file to its
//! LUN only when exactly one configured LUN maps to its name; any other is set aside (renamed,
//! never read) with one log line naming it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Directory under the data directory that holds the per-target state directories.
pub const STATE_DIR: &str = "lun-state";

/// The two kinds of per-LUN state, with their file suffixes.
pub const KINDS: [&str; 2] = ["pr.json", "mode.json"];

/// Suffix a legacy file gets when it cannot be proven to belong to one LUN.
pub const SET_ASIDE_SUFFIX: &str = "unowned";

/// Encodes a target IQN as one file name, reversibly: ASCII letters, digits, `-`, `.` and `:`
/// stay (the characters of iSCSI names, RFC 3720 §3.2.6.2); every other byte, `%` itself and a
/// leading `.` become `%XX`. Distinct IQNs give distinct names.
#[must_use]
pub fn encode_iqn(iqn: &str) -> String {
    let mut out = String::with_capacity(iqn.len());
    for (i, b) in iqn.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'-' || b == b':' || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The state file of kind `kind` (one of [`KINDS`]) for LUN `lun` of target `iqn`.
#[must_use]
pub fn state_path(data_dir: &Path, iqn: &str, lun: u64, kind: &str) -> PathBuf {
    data_dir.join(STATE_DIR).join(encode_iqn(iqn)).join(format!("lun{lun}.{kind}"))
}

/// Creates the state directory of target `iqn`.
///
/// # Errors
/// A one-line description naming the directory.
pub fn create_target_dir(data_dir: &Path, iqn: &str) -> Result<(), String> {
    let dir = data_dir.join(STATE_DIR).join(encode_iqn(iqn));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))
}

/// The file name earlier releases used (see the module comment).
fn legacy_path(data_dir: &Path, iqn: &str, lun: u64, kind: &str) -> PathBuf {
    let sanitized: String = iqn
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
        .collect();
    data_dir.join(format!("{sanitized}-lun{lun}")).with_extension(kind)
}

/// What became of one legacy state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adopted {
    /// Moved to the one LUN it maps to.
    Moved { from: PathBuf, to: PathBuf },
    /// Renamed to `to` and not applied to any LUN.
    SetAside { from: PathBuf, to: PathBuf, why: String },
}

/// Moves or sets aside the legacy state files of the configured LUNs (`(target IQN, LUN)`
/// pairs) before any LU reads its state. A legacy file is moved only when it maps to exactly
/// one configured LUN and that LUN has no state file of its own yet; otherwise it is renamed to
/// `NAME.unowned` (or `NAME.unowned.N`), never deleted. Each outcome is logged in one line.
///
/// # Errors
/// A one-line description of a rename or directory creation that failed.
pub fn adopt_legacy(data_dir: &Path, luns: &[(String, u64)]) -> Result<Vec<Adopted>, String> {
    let mut out = Vec::new();
    for kind in KINDS {
        let mut users: BTreeMap<PathBuf, Vec<(&str, u64)>> = BTreeMap::new();
        for (iqn, lun) in luns {
            users.entry(legacy_path(data_dir, iqn, *lun, kind)).or_default().push((iqn, *lun));
        }
        for (legacy, owners) in users {
            if !legacy.is_file() {
                continue;
            }
            let outcome = match owners.as_slice() {
                [(iqn, lun)] if !state_path(data_dir, iqn, *lun, kind).exists() => {
                    let to = state_path(data_dir, iqn, *lun, kind);
                    create_target_dir(data_dir, iqn)?;
                    std::fs::rename(&legacy, &to).map_err(|e| {
                        format!("{}: cannot move to {}: {e}", legacy.display(), to.display())
                    })?;
                    Adopted::Moved { from: legacy, to }
                }
                [(iqn, lun)] => {
                    let why = format!("{iqn} LUN {lun} already has its own state");
                    set_aside(legacy, why)?
                }
                many => {
                    let names: Vec<String> =
                        many.iter().map(|(iqn, lun)| format!("{iqn} LUN {lun}")).collect();
                    set_aside(legacy, format!("shared by {}", names.join(", ")))?
                }
            };
            match &outcome {
                Adopted::Moved { from, to } => {
                    log::info!("moved LUN state {} to {}", from.display(), to.display());
                }
                Adopted::SetAside { from, to, why } => {
                    log::warn!(
                        "legacy LUN state {} applied to no LUN ({why}); kept as {}",
                        from.display(),
                        to.display()
                    );
                }
            }
            out.push(outcome);
        }
    }
    Ok(out)
}

fn set_aside(from: PathBuf, why: String) -> Result<Adopted, String> {
    let name = from.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut to = from.with_file_name(format!("{name}.{SET_ASIDE_SUFFIX}"));
    let mut n = 1;
    while to.exists() {
        to = from.with_file_name(format!("{name}.{SET_ASIDE_SUFFIX}.{n}"));
        n += 1;
    }
    std::fs::rename(&from, &to)
        .map_err(|e| format!("{}: cannot rename to {}: {e}", from.display(), to.display()))?;
    Ok(Adopted::SetAside { from, to, why })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "iqn.2026-12.io.ferrite:a";
    const B: &str = "iqn.2026-12.io.ferrite:b";

    fn four() -> Vec<(String, u64)> {
        vec![(A.into(), 0), (A.into(), 1), (B.into(), 0), (B.into(), 1)]
    }

    #[test]
    fn lun_state_paths_are_distinct_for_iqns_that_differ_after_the_last_dot() {
        let dir = Path::new("/data");
        for kind in KINDS {
            let mut paths: Vec<PathBuf> =
                four().iter().map(|(iqn, lun)| state_path(dir, iqn, *lun, kind)).collect();
            paths.sort();
            paths.dedup();
            assert_eq!(paths.len(), 4, "{kind}: {paths:?}");
        }
        assert_ne!(
            state_path(dir, A, 0, "pr.json").with_extension("tmp"),
            state_path(dir, A, 0, "mode.json").with_extension("tmp"),
            "the two kinds write through distinct temporary files"
        );
    }

    #[test]
    fn lun_state_iqn_encoding_is_reversible_and_safe() {
        assert_eq!(encode_iqn(A), A);
        assert_eq!(encode_iqn("iqn.x/y"), "iqn.x%2Fy");
        assert_eq!(encode_iqn(".."), "%2E.");
        assert_ne!(encode_iqn("iqn.a_b"), encode_iqn("iqn.a:b"));
        assert_ne!(encode_iqn("iqn.a%2Fb"), encode_iqn("iqn.a/b"));
    }

    #[test]
    fn lun_state_legacy_shared_file_is_set_aside_and_unique_one_moved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = legacy_path(dir.path(), A, 0, "pr.json");
        assert_eq!(shared, legacy_path(dir.path(), B, 1, "pr.json"), "the old names collide");
        std::fs::write(&shared, b"{}").expect("write");
        // An IQN with no dot after its sanitized name keeps a name of its own.
        let solo = "iqn_solo";
        let own = legacy_path(dir.path(), solo, 3, "mode.json");
        std::fs::write(&own, b"{}").expect("write");
        let mut luns = four();
        luns.push((solo.into(), 3));

        let adopted = adopt_legacy(dir.path(), &luns).expect("adopt");
        assert_eq!(adopted.len(), 2, "{adopted:?}");
        assert!(!shared.exists());
        assert!(dir.path().join(format!("iqn.2026-12.io.pr.json.{SET_ASIDE_SUFFIX}")).is_file());
        for (iqn, lun) in four() {
            assert!(!state_path(dir.path(), &iqn, lun, "pr.json").exists());
        }
        assert!(!own.exists());
        assert!(state_path(dir.path(), solo, 3, "mode.json").is_file());

        // A second shared file is set aside next to the first, which is kept.
        std::fs::write(&shared, b"{}").expect("write");
        adopt_legacy(dir.path(), &luns).expect("adopt");
        assert!(dir.path().join(format!("iqn.2026-12.io.pr.json.{SET_ASIDE_SUFFIX}.1")).is_file());
    }
}
