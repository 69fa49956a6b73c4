//! Shared helpers for the benchmarks (data generators), so every bench measures the same inputs.
