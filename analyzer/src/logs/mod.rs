//! Log pattern mining: turns raw log messages into templates such as
//! `Received block <*> of size <*> from <*>`, so that logs can be counted per pattern and a canary
//! compared with its baseline.
//!
//! The public API, in one place:
//! - [`MinerConfig`]: `Default` is the one configuration measured on Loghub; add regex masks with
//!   [`MinerConfig::with_mask`] and token delimiters with [`MinerConfig::with_delimiters`].
//! - [`Miner`]: `Miner::new(config)`, `Miner::with_library(config, &library)`;
//!   `add(&mut self, content) -> LineMatch { template_id, params }` (the template as the line
//!   arrives), `add_id` (same without parameters, faster), `add_batch(&mut self, &[S], threads)`
//!   (parallel masking, same result as sequential `add_id`).
//! - Templates generalise as lines arrive (`user alice` then `user bob` gives `user <*>`), and a
//!   template's id is the hash of its text, so the id returned at add time may be superseded.
//!   **Final grouping**: call [`Miner::resolve`] on any id ever returned to get the current id;
//!   [`Miner::template`] accepts old or current ids. Ids are [`TemplateId`]: FNV-1a 64 of the
//!   template text, stable across runs and processes, displayed as 16 hex digits.
//! - [`Miner::templates`] iterates `Template { id, text, count }`; [`Miner::library`] gives a
//!   [`TemplateLibrary`] (`to_json` / `from_json`) that seeds the next miner.
//! - [`LogFormat`]: logparser's header notation, `LogFormat::parse("<Date> <Time> <Level>
//!   <Component>: <Content>")`, then `split(line)` / `content(line)`.
//! - [`eval`]: Loghub accuracy metrics (GA, PA, FGA, FTA) and the runner behind `vigil logs eval`.

pub mod eval;
mod format;
pub mod mask;
mod miner;

pub mod judge;
pub mod records;

pub use format::LogFormat;
pub use mask::WILDCARD;
pub use miner::{
    IdMap, LibraryTemplate, LineMatch, Miner, MinerConfig, MixHasher, Template, TemplateId,
    TemplateLibrary,
};

/// Errors of the log-mining library; each names the input and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid mask regex `{pattern}`: {reason}")]
    Mask { pattern: String, reason: String },
    #[error("invalid log format `{format}`: {reason}")]
    Format { format: String, reason: String },
    #[error("invalid template id `{0}`: expected 16 hex digits")]
    TemplateId(String),
    #[error("invalid template library: {0}")]
    Library(String),
    #[error("{path}: {reason}")]
    Dataset { path: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}
