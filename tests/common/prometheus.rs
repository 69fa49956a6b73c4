//! A stand-in for Prometheus' range-query API over made-up data, shared by
//! tests/service_flagger.rs and the cluster tests (tests/common/cluster.rs). Included with
//! `#[path = "common/prometheus.rs"] mod prometheus;`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;

/// A fixed hash of `t` (and `salt`) in [0, 1): the same reading at every fetch.
pub fn noise(t: f64, salt: u64) -> f64 {
    let mut x = (t * 1000.0) as u64 ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % 10_000) as f64 / 10_000.0
}

pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// A stand-in for Prometheus' `POST /api/v1/query_range`: one series per query, sampled every
/// `step` from `start` to `end`: `(9 + 2·noise) × factor`, factor 1.6 for `version="v2"`, 1.0
/// otherwise; the noise is a fixed hash of the time, so every fetch sees the same data.
pub fn fake_prometheus() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    break (Some(at + 4), length);
                }
            };
            let Some(head_end) = head_end else { continue };
            while buf.len() < head_end + length {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let form = String::from_utf8_lossy(&buf[head_end..]).into_owned();
            let param = |name: &str| {
                form.split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .map(decode)
                    .unwrap_or_default()
            };
            let query = param("query");
            let (start, end, step): (f64, f64, f64) = (
                param("start").parse().unwrap(),
                param("end").parse().unwrap(),
                param("step").parse().unwrap(),
            );
            let (factor, salt) = if query.contains(r#"version="v2""#) {
                (1.6, 100)
            } else if query.contains(r#"version="v3""#) {
                (1.0, 200)
            } else {
                (1.0, 0)
            };
            let mut values = Vec::new();
            let mut t = start;
            while t <= end {
                values.push(format!(
                    "[{t},\"{}\"]",
                    (9.0 + 2.0 * noise(t, salt)) * factor
                ));
                t += step;
            }
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":[{}]}}]}}}}"#,
                values.join(",")
            );
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}
