//! End-to-end: what `vigil` writes to a redirected stderr. Warnings used to carry ANSI colour
//! codes into log files and CI captures; colour is for a terminal only.

// Tests may unwrap (a panic is the failure report) and compare exact values on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::process::{Command, Stdio};

#[test]
fn warnings_to_a_pipe_have_no_colour_codes() {
    let dir = std::env::temp_dir().join(format!("vigil-stderr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Empty lines in a plain-text log make `logs compare` warn ("unusual input lines").
    let baseline = dir.join("baseline.log");
    let canary = dir.join("canary.log");
    std::fs::write(&baseline, "service started\n\n\nrequest served in 5 ms\n").expect("write");
    std::fs::write(&canary, "service started\nrequest served in 6 ms\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["logs", "compare", "--baseline"])
        .arg(&baseline)
        .arg("--canary")
        .arg(&canary)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run vigil");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unusual input lines"),
        "no warning on this path: {err}"
    );
    assert!(!out.stderr.contains(&0x1b), "ESC byte in stderr: {err:?}");
}
