//! The HTTP faces of `vigil serve` that existing tools already speak.

pub mod kayenta;
