//! ferrite-bench end to end: with `--verify`, a block corrupted behind the benchmark's back
//! with plain std::fs is caught on read, reported with its offset, and fails the run; without
//! it, a write-only run on a volume stores every block it hands over shared.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrite-bench"))
}

fn image(name: &str) -> PathBuf {
    // The target dir lives on a real filesystem (O_DIRECT works there, unlike on tmpfs).
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn json_of(output: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"))
}

/// Runs ferrite-bench with `args`, which must succeed (`what` names the run in the failure).
/// Returns its JSON report.
fn run_ok(args: &[&str], what: &str) -> serde_json::Value {
    let out = bench().args(args).arg("--json").output().expect("run ferrite-bench");
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    json_of(&out)
}

/// Writes 8 MiB to `target` in 64 KiB writes at depth 4 (plus `extra` arguments); the run
/// must succeed. Returns its JSON report.
fn write_8m(target: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--target", target, "--size", "8m", "--rw", "write", "--bs", "64k"];
    args.extend(["--iodepth", "4"]);
    args.extend(extra);
    run_ok(&args, "write pass")
}

#[test]
fn corrupted_block_is_caught_with_its_offset() {
    let path = image("verify-corrupt");
    let target = format!("file:{}", path.display());
    let write = write_8m(&target, &["--verify", "--verify-generation", "7"]);
    assert_eq!(write["ios_write"], 128);

    let clean = run_ok(
        &[
            "--target",
            &target,
            "--rw",
            "read",
            "--bs",
            "64k",
            "--verify",
            "--verify-generation",
            "7",
        ],
        "clean read",
    );
    assert_eq!(clean["errors"], 0);

    // Flip one byte in the middle of the 4 KiB block at 3 MiB + 8 KiB.
    let bad_offset: u64 = (3 << 20) + 8192;
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open");
    file.seek(SeekFrom::Start(bad_offset + 1234)).expect("seek");
    let mut byte = [0u8; 1];
    file.read_exact(&mut byte).expect("read");
    file.seek(SeekFrom::Start(bad_offset + 1234)).expect("seek");
    file.write_all(&[byte[0] ^ 0x5a]).expect("write");
    file.sync_all().expect("sync");
    drop(file);

    let read = bench()
        .args(["--target", &target, "--rw", "read", "--bs", "64k", "--iodepth", "4"])
        .args(["--verify", "--verify-generation", "7", "--json"])
        .output()
        .expect("run ferrite-bench");
    let _ = std::fs::remove_file(&path);
    assert!(!read.status.success(), "a corrupted block must fail the run");
    let report = json_of(&read);
    assert_eq!(report["errors"], 1);
    assert_eq!(report["errors_verify"], 1);
    assert_eq!(report["ios_read"], 127);
    let sample = &report["error_samples"][0];
    assert_eq!(sample["offset_bytes"], bad_offset);
    assert!(sample["message"].as_str().is_some_and(|m| m.contains("checksum")), "{sample}");
}

#[test]
fn stale_generation_is_an_error_when_expected() {
    let path = image("verify-generation");
    let target = format!("file:{}", path.display());
    let write = bench()
        .args(["--target", &target, "--size", "1m", "--rw", "write", "--bs", "4k"])
        .args(["--verify", "--verify-generation", "1", "--json"])
        .output()
        .expect("run ferrite-bench");
    assert!(write.status.success());
    let read = bench()
        .args(["--target", &target, "--rw", "read", "--bs", "4k", "--verify"])
        .args(["--verify-generation", "2", "--json"])
        .output()
        .expect("run ferrite-bench");
    let _ = std::fs::remove_file(&path);
    assert!(!read.status.success());
    assert_eq!(json_of(&read)["errors_verify"], 256);
}

#[test]
fn bad_arguments_give_one_clear_line() {
    let out =
        bench().args(["--target", "file:/nonexistent", "--bs", "1000"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.contains("multiple of 512"), "{stderr}");
}

#[test]
fn a_write_only_run_hands_the_volume_its_buffers_and_every_block_is_stored() {
    // Without --verify a write-only run writes each worker's bytes unchanged, so a volume
    // target is given them shared (no copy back); the data must still land in every block.
    let path = image("shared-writes");
    let target = format!("volume:{}", path.display());
    let report = write_8m(&target, &[]);
    assert_eq!((report["ios_write"].as_u64(), report["errors"].as_u64()), (Some(128), Some(0)));
    let inspect = Command::new(env!("CARGO_BIN_EXE_ferrite-inspect"))
        .arg(&path)
        .output()
        .expect("run ferrite-inspect");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success(), "{text}");
    // 8 MiB of non-zero data: 2048 stored 4 KiB blocks, none of them a hole.
    assert!(text.contains("referenced 8388608 B") && text.contains("(2048 data"), "{text}");
}
