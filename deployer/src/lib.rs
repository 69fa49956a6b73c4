//! Vigil's Kubernetes shim. Its one promise: **the baseline is sized and ready for full traffic
//! before traffic moves to it, and a failed canary's server group is deleted only after that.**
//!
//! - [`cluster`]: server groups (Deployments or ReplicaSets), traffic (Service selectors or
//!   Gateway API HTTPRoute weights), HPAs — read and written through kube's `Client`, with
//!   retries on transient API errors.
//! - [`rollback`]: the rollback contract as a recorded, resumable plan ([`rollback::plan_rollback`])
//!   and its idempotent execution ([`rollback::execute_rollback`]).
//! - [`strategy`]: red/black, rolling red/black with a verdict hook between steps, highlander.
//! - [`versioned`]: `name-vNNN` copies of ConfigMaps and Secrets, and their garbage collection.
//! - [`config`]: the deployer's YAML config file, including deployment windows.

// No panics on input-derived values outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cluster;
pub mod config;
pub mod rollback;
pub mod strategy;
pub mod versioned;

use std::time::Duration;

/// Annotation holding a recorded rollback plan (JSON) on the canary and the baseline.
pub const ROLLBACK_ANNOTATION: &str = "vigil.dev/rollback";

/// Annotation on a scaled-down canary: when its forensic retention ends (RFC 3339).
pub const RETAIN_UNTIL_ANNOTATION: &str = "vigil.dev/retain-until";

/// Everything that can go wrong, named so a person at a terminal knows what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {call}")]
    Api {
        call: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} {name:?} not found in namespace {namespace:?}")]
    NotFound {
        kind: String,
        name: String,
        namespace: String,
    },
    #[error(
        "baseline {group} is not ready: {ready} of {required} required replicas available \
         ({detail}) after {waited:?}; traffic was NOT moved. \
         Fix the baseline, then run the same rollback again to resume"
    )]
    BaselineNotReady {
        group: String,
        /// Available replicas (ready for `minReadySeconds`).
        ready: i32,
        required: i32,
        /// What is missing: availability, a rollout in progress, a stale status.
        detail: String,
        waited: Duration,
    },
    #[error(
        "backend Service {service} has {ready} ready endpoints, {required} required, after \
         {waited:?}; traffic was NOT moved to it"
    )]
    BackendNotReady {
        service: String,
        ready: i32,
        required: i32,
        waited: Duration,
    },
    #[error("HTTPRoute {route} is not programmed by its gateway: {status}")]
    RouteNotAccepted { route: String, status: String },
    #[error(
        "{object} is locked by {holder} (a deploy or rollback in progress) until {until}; \
         run again once it finished, or delete Lease vigil-traffic-{object} if its holder is gone"
    )]
    Locked {
        object: String,
        holder: String,
        until: String,
    },
    #[error("the rollback was cancelled during step {step}; run it again to resume")]
    Cancelled { step: String },
    #[error(
        "traffic on {object} did not read back as written: expected {expected}, found {found}"
    )]
    TrafficNotVerified {
        object: String,
        expected: String,
        found: String,
    },
    #[error(
        "nothing to roll back: canary {canary} does not exist and no unfinished rollback is \
         recorded on baseline {baseline}"
    )]
    NothingToRollBack { canary: String, baseline: String },
    #[error("cannot connect to the Kubernetes API: {context}")]
    Connect {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("the rollback record in annotation {ROLLBACK_ANNOTATION} on {object} is not readable")]
    BadRecord {
        object: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("outside the deployment window: {0}")]
    OutsideWindow(String),
    #[error(
        "the analysis verdict stopped the rollout at {percent}% and it was rolled back: {reason}"
    )]
    Stopped { percent: u32, reason: String },
    #[error("server group {group} did not become ready: {ready} of {required} after {waited:?}")]
    NotReady {
        group: String,
        ready: i32,
        required: i32,
        waited: Duration,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
