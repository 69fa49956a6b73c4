//! Deployment strategies.
