//! Log pattern mining: turns raw log messages into templates such as
//! `Received block <*> of size <*> from <*>`, so that logs can be counted per pattern and a canary
//! compared with its baseline.
//!
//! The public API, in one place:
//! - [`MinerConfig`]: `Default` is the one configuration measured on Loghub (`similarity` 0.5,
//!   `distinct_constants` 3); add regex masks with [`MinerConfig::with_mask`] (`Result`: the
//!   regex is checked) and token delimiters with [`MinerConfig::with_delimiters`].
//! - [`Miner`]: `Miner::new(config)`, `Miner::with_library(config, &library)`;
//!   `add(&mut self, content: &str) -> LineMatch { template_id, params }` (the template as the line
//!   arrives, and the raw text behind each `<*>`), `add_id(&mut self, &str) -> TemplateId` (same
//!   without parameters, the fast path), `add_batch(&mut self, &[S], threads) -> Vec<TemplateId>`
//!   (masking on `threads` workers, clustering in input order: the same ids as `add_id` in a loop).
//! - **Final grouping.** Templates generalise as lines arrive (`user 1001` then `user 1002` gives
//!   `user <*>`; constant words need three distinct values first), and a template's id is the
//!   hash of its text, so an id returned at add time may be superseded. Call
//!   [`Miner::resolve`]`(id) -> TemplateId` on any id ever returned to get the current one;
//!   [`Miner::template`]`(id) -> Option<&str>` accepts old or current ids. Group and count by
//!   resolved ids once the input is consumed.
//! - [`TemplateId`]: FNV-1a 64 of the template text — the same template has the same id in every
//!   run and process; `Display`/`FromStr` as 16 hex digits, serialised as that string.
//!   [`IdMap`] is a `HashMap` keyed by it with a cheap hasher.
//! - [`Miner::templates`] iterates `Template { id, text, count }` (first-seen order);
//!   [`Miner::library`] gives a [`TemplateLibrary`] (`to_json` / `from_json`, which checks the
//!   version and every id against its text) to seed the next miner with.
//! - [`LogFormat`]: logparser's header notation, `LogFormat::parse("<Date> <Time> <Level>
//!   <Component>: <Content>")?`, then `split(line) -> Option<Vec<(field, value)>>` and
//!   `content(line) -> Option<&str>`.
//! - [`mask_token`]: the variable detection applied to one token, for inspection.
//! - [`eval`]: Loghub accuracy metrics (GA, PA, FGA, FTA) and the runner behind `vigil logs eval`,
//!   with [`eval::leave_one_out`]: settings chosen on all systems but one, scored on that one.

pub mod eval;
mod format;
mod mask;
mod miner;
mod template;
mod tokenize;

pub mod judge;
pub mod parse;
pub mod records;

pub use format::LogFormat;
pub use mask::{mask_token, WILDCARD};
pub use miner::{
    IdMap, LibraryTemplate, LineMatch, Miner, MinerConfig, MixHasher, Template, TemplateId,
    TemplateLibrary,
};

/// Errors of the log-mining library; each names the input and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A mask given to [`MinerConfig::with_mask`] is not a valid regex.
    #[error("invalid mask regex `{pattern}`: {reason}")]
    Mask {
        /// The regex as given.
        pattern: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// A header given to [`LogFormat::parse`] is not valid logparser notation.
    #[error("invalid log format `{format}`: {reason}")]
    Format {
        /// The format as given.
        format: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A string that should be a [`TemplateId`] is not 16 hex digits; holds the string.
    #[error("invalid template id `{0}`: expected 16 hex digits")]
    TemplateId(String),
    /// A saved [`TemplateLibrary`] does not parse, has another version, or has an id that is not
    /// the hash of its text; holds the reason, naming the field.
    #[error("invalid template library: {0}")]
    Library(String),
    /// A labelled Loghub dataset (see [`eval`]) is malformed.
    #[error("{path}: {reason}")]
    Dataset {
        /// The dataset file.
        path: String,
        /// What is wrong, naming the line or column.
        reason: String,
    },
    /// A file could not be read.
    #[error("reading {path}")]
    Io {
        /// The file being read.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
