//! Shared helpers for the benchmarks (data generators), so every bench measures the same inputs.

// ---- Log mining (the `logs` bench and `peers/drain3_bench.py`) ----

/// Synthetic log messages built from the bundled Loghub-2k samples: each message is a random
/// sample line whose digit runs are replaced by random digits of the same length, so templates
/// are real and the number of distinct values is realistic (block ids, IPs, times all vary).
pub mod logs {
    use std::path::PathBuf;

    use vigil_analyzer::logs::eval::parse_csv;

    /// The ten bundled systems, in the order of the published tables.
    pub const SYSTEMS: [&str; 10] = [
        "HDFS",
        "Hadoop",
        "Spark",
        "Zookeeper",
        "BGL",
        "HPC",
        "Thunderbird",
        "Windows",
        "Linux",
        "Android",
    ];

    /// The `Content` column of a bundled system's labelled CSV.
    pub fn loghub_contents(system: &str) -> Result<Vec<String>, String> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../datasets/loghub")
            .join(format!("{system}_2k.log_structured_corrected.csv"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let rows = parse_csv(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let header = rows
            .first()
            .ok_or_else(|| format!("{}: empty", path.display()))?;
        let col = header
            .iter()
            .position(|h| h == "Content")
            .ok_or_else(|| format!("{}: no Content column", path.display()))?;
        Ok(rows[1..]
            .iter()
            .filter_map(|r| r.get(col).cloned())
            .collect())
    }

    /// xorshift64*: small, seeded, and the same on every platform.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// `n` messages from `samples`, digits varied, deterministic for a seed.
    pub fn generate(samples: &[String], n: usize, seed: u64) -> Vec<String> {
        let mut rng = Rng(seed | 1);
        let mut out = Vec::with_capacity(n);
        if samples.is_empty() {
            return out;
        }
        for _ in 0..n {
            let s = &samples[(rng.next() % samples.len() as u64) as usize];
            let mut line = String::with_capacity(s.len());
            let mut prev_digit = false;
            for c in s.chars() {
                if c.is_ascii_digit() {
                    // Keep a leading digit non-zero so lengths (and shapes) are preserved.
                    let d = if !prev_digit && c != '0' {
                        1 + rng.next() % 9
                    } else {
                        rng.next() % 10
                    };
                    line.push(char::from(b'0' + d as u8));
                    prev_digit = true;
                } else {
                    line.push(c);
                    prev_digit = false;
                }
            }
            out.push(line);
        }
        out
    }
}
