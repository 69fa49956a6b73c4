//! The Kayenta-compatible judge (NetflixACAJudge) and orca's interval planning.
