//! Shared helpers for the benchmarks (data generators), so every bench measures the same inputs.

// ---------------------------------------------------------------------------------------------
// Rank tests (Mann-Whitney U): inputs for `benches/benches/rank.rs` and the scipy peer script.
// ---------------------------------------------------------------------------------------------

/// Seeded samples for the Mann-Whitney benchmarks. Generated here, in plain code, so the data do
/// not depend on a random-number crate's version; the bench writes them to a file that the scipy
/// script reads, so both sides time exactly the same numbers.
pub mod rank {
    /// Per-sample sizes: the bench times 2 × each.
    pub const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

    /// A baseline drawn from N(0, 1) and a canary from N(0.05, 1): a small shift, as in a real
    /// canary, so neither the sort nor the tail computation gets an easy input. No ties.
    pub fn samples(n: usize) -> (Vec<f64>, Vec<f64>) {
        let mut rng = SplitMix64(0x5EED_0000 + n as u64);
        let baseline = (0..n).map(|_| rng.normal()).collect();
        let canary = (0..n).map(|_| 0.05 + rng.normal()).collect();
        (baseline, canary)
    }

    /// Sizes of the larger sample in the exact-method benchmark, against a smaller sample of 8:
    /// the largest size for which scipy's `auto` still chooses the exact distribution.
    pub const EXACT_SIZES: [usize; 3] = [1_000, 10_000, 100_000];
    pub const EXACT_SMALL: usize = 8;

    /// 8 canary points against `n` baseline points, shifted by 0.3: the shape of a short canary
    /// (few pods or few intervals) where scipy's `auto` rule picks the exact method. No ties.
    pub fn exact_samples(n: usize) -> (Vec<f64>, Vec<f64>) {
        let mut rng = SplitMix64(0xE7AC_0000 + n as u64);
        let canary = (0..EXACT_SMALL).map(|_| 0.3 + rng.normal()).collect();
        let baseline = (0..n).map(|_| rng.normal()).collect();
        (canary, baseline)
    }

    /// SplitMix64 (Steele, Lea and Flood 2014): tiny, well mixed, and stable across releases.
    struct SplitMix64(u64);

    impl SplitMix64 {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform on (0, 1]: never 0, so the logarithm below is finite.
        fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
        }

        /// Box-Muller, one draw per pair of uniforms (simple over fast; generation is not timed).
        fn normal(&mut self) -> f64 {
            let (u1, u2) = (self.uniform(), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
    }
}

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
