//! `vigil logs parse` and the miner on hostile input: arbitrary bytes, invalid UTF-8, NUL bytes,
//! empty and 1 MiB lines; the parallel path against the sequential one; the command's output.

// Tests may unwrap (a panic is the failure report) and compare exact values on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::io::Write;
use std::process::{Command, Stdio};

use proptest::prelude::*;
use vigil_analyzer::logs::parse::{parse_bytes, InputStats};
use vigil_analyzer::logs::{LogFormat, Miner, MinerConfig};

/// 512 cases by default; `PROPTEST_CASES=N` runs a longer fuzz.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Any bytes: no panic, one id per line, every id names a template.
    #[test]
    fn parse_path_takes_any_bytes(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (ids, miner, stats) = parse_bytes(&input, None, 1);
        prop_assert_eq!(ids.len(), stats.lines);
        for id in &ids {
            prop_assert!(miner.template(*id).is_some());
        }
    }

    /// Text made of log-like pieces (digits, punctuation, quotes, dates, units): `add` never
    /// panics and its id resolves.
    #[test]
    fn miner_takes_any_text(lines in proptest::collection::vec(
        proptest::string::string_regex("[a-zA-Z0-9 .:=,/\\-\"'()<>*@#\\[\\]{}\u{0}\u{e9}\u{2028}]{0,80}").unwrap(), 1..40)) {
        let mut m = Miner::new(MinerConfig::default());
        for l in &lines {
            let r = m.add(l);
            prop_assert!(m.template(r.template_id).is_some());
        }
        let lib = m.library();
        let ids: std::collections::HashSet<_> = m.templates().map(|t| t.id).collect();
        prop_assert_eq!(lib.templates.len(), ids.len());
        let total: u64 = lib.templates.iter().map(|t| t.count).sum();
        prop_assert_eq!(total, lines.len() as u64);
    }

    /// Arbitrary bytes through a header format.
    #[test]
    fn header_path_takes_any_bytes(input in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let f = LogFormat::parse("<Date> <Time> <Level> <Component>: <Content>").unwrap();
        let (ids, _, stats) = parse_bytes(&input, Some(&f), 1);
        prop_assert_eq!(ids.len(), stats.lines);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Random log-like messages, enough to take the parallel path: two threads give exactly the
    /// ids and templates of one.
    #[test]
    fn parallel_equals_sequential_on_random_messages(lines in proptest::collection::vec(
        proptest::string::string_regex("(user|job|node|ERROR|ok|alpha|beta|[0-9]{1,6}|0x[0-9a-f]{4}|/[a-z]+|\"q [a-z]+\"|Jul|KB)( (user|job|node|ERROR|ok|alpha|beta|[0-9]{1,6}|x=[a-z0-9]{1,3}|Jul|KB)){0,7}").unwrap(),
        2100..2600)) {
        let input = lines.join("\n");
        let (one, m1, _) = parse_bytes(input.as_bytes(), None, 1);
        let (two, m2, _) = parse_bytes(input.as_bytes(), None, 2);
        prop_assert_eq!(one, two);
        let t1: Vec<_> = m1.templates().map(|t| (t.id, t.count)).collect();
        let t2: Vec<_> = m2.templates().map(|t| (t.id, t.count)).collect();
        prop_assert_eq!(t1, t2);
    }
}

fn sample_lines(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let line = match i % 5 {
            0 => format!(
                "Received block blk_{} of size {} from /10.0.{}.{}",
                i * 7919,
                i % 977,
                i % 256,
                i % 13
            ),
            1 => format!("session opened for user u{} by (uid={})", i % 50, i % 3),
            2 => format!("PacketResponder {} for block blk_{} terminating", i % 3, i),
            3 => format!("Verification succeeded for blk_{}", i * 31),
            _ => format!(
                "worker {} took {} ms",
                ["alpha", "beta", "gamma", "delta"][i % 4],
                i % 1000
            ),
        };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

#[test]
fn parallel_ingest_equals_sequential() {
    let input = sample_lines(40_000);
    let (one, m1, _) = parse_bytes(&input, None, 1);
    let (two, m2, _) = parse_bytes(&input, None, 2);
    assert_eq!(one, two);
    let t1: Vec<_> = m1.templates().map(|t| (t.id, t.count)).collect();
    let t2: Vec<_> = m2.templates().map(|t| (t.id, t.count)).collect();
    assert_eq!(t1, t2);
}

/// A line longer than the engine's record limit is mined on its first MAX_LOG_BODY_BYTES bytes
/// and counted: the same template as that prefix alone, never a corrupted one.
#[test]
fn an_overlong_line_is_capped_and_counted() {
    use vigil_analyzer::telemetry::MAX_LOG_BODY_BYTES;
    let mut long = b"user 42 uploaded ".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_LOG_BODY_BYTES));
    let (ids, miner, stats) = parse_bytes(&long, None, 1);
    assert_eq!(stats.truncated, 1);
    let (prefix_ids, prefix_miner, prefix_stats) =
        parse_bytes(&long[..MAX_LOG_BODY_BYTES], None, 1);
    assert_eq!(prefix_stats.truncated, 0);
    assert_eq!(miner.template(ids[0]), prefix_miner.template(prefix_ids[0]));
}

#[test]
fn odd_lines_are_counted_not_fatal() {
    let mut input = Vec::new();
    input.extend_from_slice(b"first line 1\n\n");
    input.extend_from_slice(b"bad utf8 \xff\xfe here\n");
    input.extend_from_slice(b"nul \0 byte\r\n");
    input.extend(std::iter::repeat_n(b'x', 1 << 20));
    input.extend_from_slice(b"\nlast line 2");
    let (ids, miner, stats) = parse_bytes(&input, None, 1);
    assert_eq!(
        stats,
        InputStats {
            lines: 6,
            empty: 1,
            invalid_utf8: 1,
            with_nul: 1,
            long: 1,
            truncated: 0,
            header_mismatch: 0
        }
    );
    assert_eq!(ids.len(), 6);
    assert_eq!(miner.template(ids[1]), Some(""));
    assert_eq!(
        miner.template(ids[2]),
        Some("bad utf8 \u{fffd}\u{fffd} here")
    ); // Empty lines share one template.
    let (ids, miner, _) = parse_bytes(b"\n\n\nx\n\n", None, 1);
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[4]);
    assert_eq!(miner.templates().count(), 2);
}

fn run_vigil(args: &[&str], stdin: &[u8]) -> (String, String, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        strip_ansi(&err),
        out.status.success(),
    )
}

/// Removes terminal colour codes (`ESC [ … m`) that the log formatter may add.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn parse_command_prints_jsonl_and_csv() {
    let input = b"user 1001 logged in\nuser 1002 logged in\ndisk \"sda, 1\" full\n";
    let (out, _, ok) = run_vigil(&["logs", "parse"], input);
    assert!(ok);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["line"], 1);
    assert_eq!(rows[0]["template"], "user <*> logged in");
    assert_eq!(rows[0]["template_id"], rows[1]["template_id"]);
    assert_eq!(rows[0]["template_id"].as_str().unwrap().len(), 16);

    let (out, _, ok) = run_vigil(&["logs", "parse", "--format", "csv", "-"], input);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "LineId,EventId,EventTemplate");
    assert!(lines[1].starts_with("1,") && lines[1].ends_with(",user <*> logged in"));
    assert!(
        lines[3].ends_with(",\"disk \"\"sda, <*>\"\" full\""),
        "{}",
        lines[3]
    );
}

#[test]
fn parse_command_splits_headers_and_reports_odd_input() {
    let input = b"2024-01-01 10:00:00 INFO api: started worker 7\nnot a header line\n\xff\n";
    let (out, err, ok) = run_vigil(
        &[
            "logs",
            "parse",
            "--header",
            "<Date> <Time> <Level> <Component>: <Content>",
        ],
        input,
    );
    assert!(ok, "{err}");
    assert!(out
        .lines()
        .next()
        .unwrap()
        .contains("\"template\":\"started worker <*>\""));
    assert!(
        err.contains("header_mismatch=2") && err.contains("invalid_utf8=1"),
        "{err}"
    );

    let (_, err, ok) = run_vigil(&["logs", "parse", "--header", "<Date> <Level>"], b"");
    assert!(!ok);
    assert!(err.contains("Content"), "{err}");
}
