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
