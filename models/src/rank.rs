//! Rank tests (Mann-Whitney U) with scipy-compatible conventions.
