//! The online template miner: a Drain-style clustering of pre-masked token sequences.
//!
//! Each message is tokenised on whitespace (plus user delimiters) and masked by shape
//! ([`super::mask`]). Clusters are bucketed by token count and first token (Drain's prefix tree of
//! depth one: deeper trees only pay off when no pre-masking is done). Within a bucket the message
//! joins the most similar cluster if the share of positions holding the same *constant* reaches
//! the threshold (Drain's rule: positions that are variables on both sides, such as timestamps and
//! trace ids, are no evidence of the same event), and the positions that disagree generalise to
//! `<*>` — slot by slot, so `rhost=<*>` keeps its key.
//!
//! Two refinements over Drain decide when a *word* becomes a variable (Brain's observation that
//! variables are the positions with many values): where a message differs from its cluster only
//! by shape-masked values it joins at once, but where both sides hold a different constant
//! (`startup`/`shutdown`) it starts a sibling cluster of the same family, and the position turns
//! into `<*>` only once the family has shown `distinct_constants` (3) values there — user names
//! soon do, state names of a two-way switch never. A message that differs in two or more
//! constants at once is another event, not a new value. Upper-case identifiers (`NEW`,
//! `RUNNING`) are states and event kinds and never merge. When siblings merge, their ids become
//! aliases.
//!
//! Memory is bounded by the number of clusters, not of messages.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::mask::WILDCARD;
use super::template::{
    conflicting_constants, constant_conflict, covers, extract_params, generalise_token, has_route,
    route_conflict, token_hash, value_token, PTok, Prepared, WILD_HASH,
};
use super::tokenize::{split_tokens, tok_hash};
use super::LogError;

/// Stable id of a template: FNV-1a 64 of its text, so the same template text has the same id in
/// every run, process and version (std's hasher makes no such promise). Shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TemplateId(pub u64);

impl TemplateId {
    /// The id of a template text.
    pub fn of(template: &str) -> TemplateId {
        TemplateId(fnv1a(template.as_bytes()))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for TemplateId {
    type Err = LogError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 {
            return Err(LogError::TemplateId(s.to_owned()));
        }
        u64::from_str_radix(s, 16)
            .map(TemplateId)
            .map_err(|_| LogError::TemplateId(s.to_owned()))
    }
}

impl Serialize for TemplateId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TemplateId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How the miner tokenises and masks. `Default` is the one configuration measured on Loghub;
/// users extend it with their own masks and delimiters.
#[derive(Clone, Debug)]
pub struct MinerConfig {
    /// Share of equal token positions needed to join a cluster (Drain's `st`).
    pub similarity: f64,
    /// Distinct constant values a position must show before it becomes `<*>`. Two values are
    /// more often two templates (`startup`/`shutdown succeeded`) than a variable; variables
    /// such as user names soon show a third. Variables recognised by shape merge at once.
    pub distinct_constants: usize,
    masks: Vec<Regex>,
    delimiters: Vec<char>,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            similarity: 0.5,
            distinct_constants: 3,
            masks: Vec::new(),
            delimiters: Vec::new(),
        }
    }
}

impl MinerConfig {
    /// Adds a regex whose matches are replaced by `<*>` before tokenising (as drain3's masking).
    pub fn with_mask(mut self, pattern: &str) -> Result<Self, LogError> {
        let re = Regex::new(pattern).map_err(|e| LogError::Mask {
            pattern: pattern.to_owned(),
            reason: e.to_string(),
        })?;
        self.masks.push(re);
        Ok(self)
    }

    /// Adds characters that separate tokens besides whitespace. They are dropped from the
    /// template text (tokens are joined by single spaces).
    pub fn with_delimiters(mut self, chars: &str) -> Self {
        self.delimiters.extend(chars.chars());
        self
    }
}

/// The template a message was assigned when it arrived, and the values of its `<*>` slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineMatch {
    /// Id of the template at add time; [`Miner::resolve`] maps it to the final one.
    pub template_id: TemplateId,
    /// Raw text behind each `<*>`, in order.
    pub params: Vec<String>,
}

/// A template as the miner currently knows it.
#[derive(Clone, Copy, Debug)]
pub struct Template<'a> {
    /// Current id (the hash of `text`); ids handed out earlier resolve to it.
    pub id: TemplateId,
    /// Current text, `<*>` for variables; borrowed from the miner, so it may change on the next
    /// `add`.
    pub text: &'a str,
    /// Messages assigned to it (including counts carried over from a library).
    pub count: u64,
}

#[derive(Clone)]
struct Cluster {
    tokens: Vec<Box<str>>,
    hashes: Vec<u64>,
    /// Per position, the hash of the last different token that the template token already
    /// covered (generalising changed nothing).
    fits: Vec<u64>,
    text: String,
    id: TemplateId,
    count: u64,
    /// Clusters split from each other only by constant words share a family; the family records
    /// which constants each position has shown, to turn the position into `<*>` once enough do.
    family: u32,
    alive: bool,
    /// Whether a token holds a request target (an endpoint): such clusters are only candidates
    /// for messages of the same endpoint.
    has_route: bool,
}

impl Cluster {
    fn new(tokens: Vec<Box<str>>, count: u64, family: u32) -> Cluster {
        let hashes: Vec<u64> = tokens.iter().map(|t| token_hash(t)).collect();
        let text = tokens.join(" ");
        let has_route = tokens.iter().any(|t| has_route(t));
        let id = TemplateId::of(&text);
        Cluster {
            tokens,
            fits: hashes.clone(),
            hashes,
            text,
            id,
            count,
            family,
            alive: true,
            has_route,
        }
    }
}

/// The streaming miner. Deterministic: the same messages in the same order give the same
/// templates and ids.
#[derive(Clone)]
pub struct Miner {
    config: MinerConfig,
    clusters: Vec<Cluster>,
    buckets: HashMap<u64, Vec<u32>, BuildHasherDefault<MixHasher>>,
    by_id: HashMap<TemplateId, u32>,
    /// Ids a template had before it generalised, pointing to the id that replaced them.
    aliases: HashMap<TemplateId, TemplateId>,
    /// Per family: position → hashes of the distinct constants seen there (capped).
    families: HashMap<u32, HashMap<usize, Vec<u64>>>,
    scratch: Prepared,
    hash_scratch: Vec<u64>,
}

/// The tokens of a message being clustered: from a prepared block, or a cluster's own tokens
/// when one cluster is folded into another.
enum LineView<'a> {
    Prepared(&'a Prepared, &'a [PTok]),
    Tokens(&'a [Box<str>]),
}

impl LineView<'_> {
    fn len(&self) -> usize {
        match self {
            LineView::Prepared(_, t) => t.len(),
            LineView::Tokens(t) => t.len(),
        }
    }

    fn text(&self, k: usize) -> &str {
        match self {
            LineView::Prepared(p, t) => p.text(&t[k]),
            LineView::Tokens(t) => &t[k],
        }
    }
}

/// Replaces the matches of the user's masks by `<*>`.
fn apply_masks<'a>(config: &MinerConfig, content: &'a str) -> Cow<'a, str> {
    let mut cur = Cow::Borrowed(content);
    for re in &config.masks {
        if let Cow::Owned(s) = re.replace_all(&cur, WILDCARD) {
            cur = Cow::Owned(s);
        }
    }
    cur
}

/// Masks and tokenises one message into `p`; pure, so it runs on any thread.
fn prepare_into(config: &MinerConfig, content: &str, p: &mut Prepared) {
    if config.masks.is_empty() {
        p.push(content, &config.delimiters);
    } else {
        p.push(&apply_masks(config, content), &config.delimiters);
    }
}

/// Messages per block handed from masking workers to the clustering thread.
const BLOCK: usize = 1024;

impl Miner {
    /// An empty miner: every template is new to it (see [`Miner::with_library`] to seed one).
    pub fn new(config: MinerConfig) -> Miner {
        Miner {
            config,
            clusters: Vec::new(),
            buckets: HashMap::default(),
            by_id: HashMap::new(),
            aliases: HashMap::new(),
            families: HashMap::new(),
            scratch: Prepared::default(),
            hash_scratch: Vec::new(),
        }
    }

    /// A miner that starts from the templates of a library (e.g. learned on the baseline), so
    /// known patterns keep their ids and counts.
    pub fn with_library(config: MinerConfig, library: &TemplateLibrary) -> Miner {
        let mut m = Miner::new(config);
        for t in &library.templates {
            let mut parts = Vec::new();
            split_tokens(&t.template, &[], &mut parts);
            let tokens: Vec<Box<str>> = parts.into_iter().map(Box::from).collect();
            let family = m.clusters.len() as u32;
            m.insert_cluster(Cluster::new(tokens, t.count, family));
        }
        m
    }

    /// Assigns a message to a template and returns it with the message's parameter values.
    /// (With user masks, the text a mask replaced is reported as `<*>`.)
    pub fn add(&mut self, content: &str) -> LineMatch {
        let masked_content = apply_masks(&self.config, content);
        let mut p = std::mem::take(&mut self.scratch);
        p.clear();
        p.push(&masked_content, &self.config.delimiters);
        let idx = self.assign(&p, 0);
        let c = &self.clusters[idx];
        let mut params = Vec::new();
        for (t, pt) in c.tokens.iter().zip(p.line(0)) {
            extract_params(
                t,
                &masked_content[pt.raw.0 as usize..pt.raw.1 as usize],
                &mut params,
            );
        }
        self.scratch = p;
        LineMatch {
            template_id: c.id,
            params,
        }
    }

    /// Like [`Miner::add`] without extracting parameters (the fast path for counting).
    pub fn add_id(&mut self, content: &str) -> TemplateId {
        let mut p = std::mem::take(&mut self.scratch);
        p.clear();
        prepare_into(&self.config, content, &mut p);
        let idx = self.assign(&p, 0);
        self.scratch = p;
        self.clusters[idx].id
    }

    /// Assigns many messages; the result equals calling [`Miner::add_id`] on each in order.
    /// With `threads` > 1 (0 = available cores), tokenising and masking — most of the work — run
    /// on `threads` workers, block by block, while this thread clusters the blocks in input order,
    /// so the result is the same as sequential.
    pub fn add_batch<S: AsRef<str> + Sync>(
        &mut self,
        contents: &[S],
        threads: usize,
    ) -> Vec<TemplateId> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let mut ids = Vec::with_capacity(contents.len());
        if threads <= 1 || contents.len() < 2 * BLOCK {
            for c in contents {
                ids.push(self.add_id(c.as_ref()));
            }
            return ids;
        }
        let config = self.config.clone();
        let blocks: Vec<&[S]> = contents.chunks(BLOCK).collect();
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, usize, Prepared)>(2 * threads);
            let mut recycle = Vec::with_capacity(threads);
            for w in 0..threads {
                let tx = tx.clone();
                // Buffers come back after clustering, so a worker allocates a few, not one per
                // block, and the blocks stay small enough for the clustering thread's cache.
                let (back_tx, back_rx) = std::sync::mpsc::channel::<Prepared>();
                recycle.push(back_tx);
                let (blocks, config) = (&blocks, &config);
                scope.spawn(move || {
                    for (b, block) in blocks.iter().enumerate().skip(w).step_by(threads) {
                        let mut p = back_rx.try_recv().unwrap_or_default();
                        p.clear();
                        for c in block.iter() {
                            prepare_into(config, c.as_ref(), &mut p);
                        }
                        if tx.send((b, w, p)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            // Blocks arrive in any order; cluster them in input order.
            let mut pending: HashMap<usize, (usize, Prepared)> = HashMap::new();
            let mut next = 0;
            for (b, w, p) in rx {
                pending.insert(b, (w, p));
                while let Some((w, p)) = pending.remove(&next) {
                    for i in 0..p.len() {
                        let ci = self.assign(&p, i);
                        ids.push(self.clusters[ci].id);
                    }
                    // A worker that has finished no longer listens; its buffer is just dropped.
                    let _ = recycle[w].send(p);
                    next += 1;
                }
            }
        });
        ids
    }

    /// The current id of a template given any id it had before (ids change when text generalises).
    pub fn resolve(&self, id: TemplateId) -> TemplateId {
        let mut cur = id;
        // Each alias step adds a wildcard, so chains are short; the bound guards against cycles.
        for _ in 0..=self.aliases.len() {
            match self.aliases.get(&cur) {
                Some(&next) if next != cur => cur = next,
                _ => break,
            }
        }
        cur
    }

    /// Current text of a template (given its current or any earlier id).
    pub fn template(&self, id: TemplateId) -> Option<&str> {
        let id = self.resolve(id);
        self.by_id
            .get(&id)
            .map(|&i| self.clusters[i as usize].text.as_str())
    }

    /// All templates, in order of first appearance.
    pub fn templates(&self) -> impl Iterator<Item = Template<'_>> + '_ {
        self.clusters.iter().filter(|c| c.alive).map(|c| Template {
            id: c.id,
            text: &c.text,
            count: c.count,
        })
    }

    /// The templates as a library to save and seed the next analysis with.
    pub fn library(&self) -> TemplateLibrary {
        // Two clusters can end with the same text (hence id); the library has one entry per id.
        let mut index: IdMap<usize> = IdMap::default();
        let mut templates: Vec<LibraryTemplate> = Vec::new();
        for t in self.templates() {
            match index.get(&t.id) {
                Some(&i) => templates[i].count += t.count,
                None => {
                    index.insert(t.id, templates.len());
                    templates.push(LibraryTemplate {
                        id: t.id,
                        template: t.text.to_owned(),
                        count: t.count,
                    });
                }
            }
        }
        TemplateLibrary {
            version: TemplateLibrary::VERSION,
            templates,
        }
    }

    fn assign(&mut self, p: &Prepared, line: usize) -> usize {
        let toks = p.line(line);
        let mut hashes = std::mem::take(&mut self.hash_scratch);
        hashes.clear();
        hashes.extend(toks.iter().map(|t| t.hash));
        let view = LineView::Prepared(p, toks);
        let ci = self.assign_hashed(&view, &hashes);
        self.hash_scratch = hashes;
        ci
    }

    fn assign_hashed(&mut self, masked: &LineView<'_>, hashes: &[u64]) -> usize {
        let key = bucket_key((masked.len() > 0).then(|| masked.text(0)), hashes);
        // (constant positions equal, all positions equal, wildcards, cluster)
        let mut best: Option<(usize, usize, usize, usize)> = None;
        if let Some(cands) = self.buckets.get(&key) {
            for &ci in cands {
                let c = &self.clusters[ci as usize];
                if c.has_route
                    && (0..hashes.len()).any(|k| {
                        c.hashes[k] != hashes[k] && route_conflict(&c.tokens[k], masked.text(k))
                    })
                {
                    // Another endpoint: not a candidate, so the message finds its own.
                    continue;
                }
                let (mut eq_const, mut eq_all, mut wild) = (0, 0, 0);
                for (a, b) in c.hashes.iter().zip(hashes) {
                    if *a == WILD_HASH {
                        wild += 1;
                        eq_all += usize::from(*b == WILD_HASH);
                    } else if a == b {
                        eq_const += 1;
                        eq_all += 1;
                    }
                }
                let better = match best {
                    None => true,
                    Some((bc, ba, bw, _)) => (eq_const, eq_all, wild) > (bc, ba, bw),
                };
                if better {
                    best = Some((eq_const, eq_all, wild, ci as usize));
                }
            }
        }
        let n = hashes.len().max(1);
        let mut family = self.clusters.len() as u32;
        if let Some((eq_const, eq_all, _, ci)) = best {
            // Similarity counts equal constants only, as Drain does: positions that are variables
            // on both sides (times, ids) say nothing about the event. An exact match (including
            // two empty messages) always joins.
            if eq_all == hashes.len() || eq_const as f64 / n as f64 >= self.config.similarity {
                if self.constants_settled(ci, masked, hashes) {
                    self.merge_into(ci, masked, hashes);
                    self.absorb_family(ci);
                    return ci;
                }
                family = self.clusters[ci].family;
            }
        }
        let tokens: Vec<Box<str>> = (0..masked.len())
            .map(|k| Box::from(masked.text(k)))
            .collect();
        self.insert_cluster(Cluster::new(tokens, 1, family))
    }

    /// Whether a message may join cluster `ci`: true unless they differ at a position where both
    /// hold a constant that has not yet shown `distinct_constants` values in the family. Records
    /// the constants seen either way.
    fn constants_settled(&mut self, ci: usize, masked: &LineView<'_>, hashes: &[u64]) -> bool {
        let c = &self.clusters[ci];
        let need = self.config.distinct_constants.max(2);
        let mut settled = true;
        let mut conflicts = 0;
        for (k, h) in hashes.iter().enumerate() {
            if c.hashes[k] == *h {
                continue;
            }
            if c.has_route && route_conflict(&c.tokens[k], masked.text(k)) {
                // Another endpoint: never the same event, however many appear.
                conflicts += 1;
                settled = false;
                continue;
            }
            if c.fits[k] == *h || covers(&c.tokens[k], masked.text(k)) {
                continue;
            }
            let Some((ca, cb)) = conflicting_constants(&c.tokens[k], masked.text(k)) else {
                continue;
            };
            conflicts += 1;
            if is_enum_word(&c.tokens[k]) && is_enum_word(masked.text(k)) {
                // Upper-case identifiers (`NEW`, `RUNNING`, `CONTAINER_REMOTE_LAUNCH`) are
                // states and event kinds: each value is its own template, however many appear.
                settled = false;
                continue;
            }
            let seen = self
                .families
                .entry(c.family)
                .or_default()
                .entry(k)
                .or_default();
            for v in [tok_hash(ca.as_bytes()), tok_hash(cb.as_bytes())] {
                if !seen.contains(&v) && seen.len() < need {
                    seen.push(v);
                }
            }
            if seen.len() < need {
                settled = false;
            }
        }
        settled && conflicts <= 1
    }

    /// After cluster `ci` generalised, folds in the family's other clusters that now differ from
    /// it only where one side is a variable. Their ids become aliases of `ci`'s.
    fn absorb_family(&mut self, ci: usize) {
        let c = &self.clusters[ci];
        let family = c.family;
        let key = bucket_key(c.tokens.first().map(|t| &**t), &c.hashes);
        let Some(cands) = self.buckets.get(&key) else {
            return;
        };
        let members: Vec<usize> = cands
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| i != ci && self.clusters[i].family == family)
            .collect();
        for vi in members {
            let compatible = {
                let (c, v) = (&self.clusters[ci], &self.clusters[vi]);
                c.tokens
                    .iter()
                    .zip(&v.tokens)
                    .all(|(a, b)| !constant_conflict(a, b))
            };
            if !compatible {
                continue;
            }
            let v_tokens: Vec<Box<str>> = self.clusters[vi].tokens.clone();
            let v_hashes = self.clusters[vi].hashes.clone();
            let v_count = self.clusters[vi].count;
            self.merge_into(ci, &LineView::Tokens(&v_tokens), &v_hashes);
            self.clusters[ci].count += v_count - 1;
            let v = &mut self.clusters[vi];
            v.alive = false;
            let vid = v.id;
            let cid = self.clusters[ci].id;
            if self.by_id.get(&vid) == Some(&(vi as u32)) {
                self.by_id.remove(&vid);
            }
            if vid != cid {
                self.aliases.insert(vid, cid);
            }
            if let Some(b) = self.buckets.get_mut(&key) {
                b.retain(|&i| i as usize != vi);
            }
        }
    }

    fn merge_into(&mut self, ci: usize, masked: &LineView<'_>, hashes: &[u64]) {
        let c = &mut self.clusters[ci];
        c.count += 1;
        let mut changed = false;
        for (k, h) in hashes.iter().enumerate() {
            if c.hashes[k] == WILD_HASH && *h == WILD_HASH && *c.tokens[k] != *masked.text(k) {
                // `<*> ms` meets `<*>` or `<*> s`: one value in two shapes, the template shows
                // the value alone.
                let g = generalise_token(&c.tokens[k], masked.text(k));
                if *g != *c.tokens[k] {
                    c.tokens[k] = g.into_boxed_str();
                    changed = true;
                }
                continue;
            }
            if c.hashes[k] != *h
                && c.hashes[k] != WILD_HASH
                && c.fits[k] != *h
                && !covers(&c.tokens[k], masked.text(k))
            {
                let g = generalise_token(&c.tokens[k], masked.text(k));
                if *g == *c.tokens[k] {
                    // Remember the value that the token already covers: the next message with
                    // the same value skips the comparison.
                    c.fits[k] = *h;
                    continue;
                }
                c.hashes[k] = token_hash(&g);
                c.tokens[k] = g.into_boxed_str();
                changed = true;
            }
        }
        if changed {
            let old = c.id;
            c.text = c.tokens.join(" ");
            c.id = TemplateId::of(&c.text);
            let new = c.id;
            if old != new {
                if self.by_id.get(&old) == Some(&(ci as u32)) {
                    self.by_id.remove(&old);
                }
                self.by_id.entry(new).or_insert(ci as u32);
                self.aliases.insert(old, new);
            }
        }
    }

    fn insert_cluster(&mut self, c: Cluster) -> usize {
        let idx = self.clusters.len();
        let key = bucket_key(c.tokens.first().map(|t| &**t), &c.hashes);
        // A live template owns its text's id again, even if an older template once had it.
        self.aliases.remove(&c.id);
        self.buckets.entry(key).or_default().push(idx as u32);
        self.by_id.entry(c.id).or_insert(idx as u32);
        self.clusters.push(c);
        idx
    }
}

/// An upper-case identifier such as `ASSIGNED` or `FAIL_TASK_CLEANUP` (trailing punctuation
/// allowed): in logs these name states and event kinds, not values.
fn is_enum_word(t: &str) -> bool {
    let t = t.trim_end_matches([',', '.', ':', ';', ')', ']']);
    t.len() >= 2
        && t.bytes().any(|b| b.is_ascii_uppercase())
        && t.bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
}

/// Bucket of a token sequence: its length and first token (Drain's first two tree levels).
/// A first token that is a value in any shape (`<*>`, `<*> ms`, `<*>,`) counts as `<*>`, so that
/// the shape a leading variable took does not put its lines in different buckets.
fn bucket_key(first_token: Option<&str>, hashes: &[u64]) -> u64 {
    let first = match first_token {
        Some(t) if t.starts_with(WILDCARD) && value_token(t) => WILD_HASH,
        _ => hashes.first().copied().unwrap_or(0),
    };
    first ^ (hashes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Hasher for keys that are already well-mixed hashes (template ids, token hashes): one multiply
/// instead of SipHash. Not DoS-resistant, which is fine for keys that are hashes of our own.
#[derive(Default)]
pub struct MixHasher(u64);

/// A map keyed by template id with a fast hasher, for per-line lookups.
pub type IdMap<V> = HashMap<TemplateId, V, BuildHasherDefault<MixHasher>>;

impl std::hash::Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// Saved templates, carried from one analysis to the next (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateLibrary {
    /// Format version; [`TemplateLibrary::from_json`] rejects any other than
    /// [`TemplateLibrary::VERSION`].
    pub version: u32,
    /// One entry per distinct id, in first-seen order.
    pub templates: Vec<LibraryTemplate>,
}

/// One saved template; its id is checked against its text on load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LibraryTemplate {
    /// FNV-1a 64 of `template`.
    pub id: TemplateId,
    /// The template text, `<*>` for variables.
    pub template: String,
    /// Messages assigned to it so far (summed over clusters that ended with the same text);
    /// carried into a miner seeded with the library.
    pub count: u64,
}

impl TemplateLibrary {
    /// The format version this build reads and writes; bumped when the JSON shape changes.
    pub const VERSION: u32 = 1;

    /// Pretty-printed JSON, the input of [`TemplateLibrary::from_json`].
    pub fn to_json(&self) -> String {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a saved library; checks the version and that each id matches its template text.
    pub fn from_json(json: &str) -> Result<TemplateLibrary, LogError> {
        let lib: TemplateLibrary =
            serde_json::from_str(json).map_err(|e| LogError::Library(e.to_string()))?;
        if lib.version != Self::VERSION {
            return Err(LogError::Library(format!(
                "field `version`: expected {}, found {}",
                Self::VERSION,
                lib.version
            )));
        }
        for (i, t) in lib.templates.iter().enumerate() {
            if TemplateId::of(&t.template) != t.id {
                return Err(LogError::Library(format!(
                    "templates[{i}].id: expected {} (the hash of its template), found {}",
                    TemplateId::of(&t.template),
                    t.id
                )));
            }
        }
        Ok(lib)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_generalises() {
        let mut m = Miner::new(MinerConfig::default());
        let a = m.add("Connected to host 10.0.0.1 port 80");
        let b = m.add("Connected to host 10.0.0.2 port 81");
        assert_eq!(a.params, ["10.0.0.1", "80"]);
        assert_eq!(b.params, ["10.0.0.2", "81"]);
        assert_eq!(a.template_id, b.template_id);
        assert_eq!(
            m.template(a.template_id),
            Some("Connected to host <*> port <*>")
        );
        assert_ne!(m.add_id("Disk full"), b.template_id);
    }

    #[test]
    fn constant_words_split_until_a_third_value() {
        let mut m = Miner::new(MinerConfig::default());
        let start = m.add_id("cupsd startup succeeded");
        let stop = m.add_id("cupsd shutdown succeeded");
        assert_ne!(m.resolve(start), m.resolve(stop));
        let alice = m.add("session opened for user alice");
        let bob = m.add_id("session opened for user bob");
        assert_ne!(m.resolve(alice.template_id), m.resolve(bob));
        let carol = m.add("session opened for user carol");
        // The third user name shows the position is a variable: all three now share a template.
        assert_eq!(m.resolve(alice.template_id), carol.template_id);
        assert_eq!(m.resolve(bob), carol.template_id);
        assert_eq!(
            m.template(alice.template_id),
            Some("session opened for user <*>")
        );
        assert_eq!(carol.params, ["carol"]);
        assert_eq!(m.templates().count(), 3);
    }

    #[test]
    fn a_value_with_and_without_its_restatement_is_one_template() {
        let mut m = Miner::new(MinerConfig::default());
        let a = m.add("Flushed 1190 bytes (1.16 KB) to disk");
        let b = m.add("Flushed 0 bytes to disk");
        let c = m.add("Flushed 2097152 bytes (2.00 MB) to disk");
        assert_eq!(m.resolve(a.template_id), m.resolve(b.template_id));
        assert_eq!(m.resolve(b.template_id), c.template_id);
        assert_eq!(m.template(c.template_id), Some("Flushed <*> bytes to disk"));
        assert_eq!(a.params, ["1190"]);
        assert_ne!(m.add_id("Flushed cache to disk"), c.template_id);
    }

    #[test]
    fn a_duration_in_any_shape_is_one_template() {
        let mut m = Miner::new(MinerConfig::default());
        let lines = [
            "job 1 finished in 5 ms",
            "job 2 finished in 12ms",
            "job 3 finished in <1 sec",
            "job 4 finished in 00:02",
            "job 5 finished in 3 seconds",
            "job 6 finished in 1.5 s",
        ];
        let ids: Vec<TemplateId> = lines.iter().map(|l| m.add_id(l)).collect();
        let last = m.resolve(ids[5]);
        for (id, line) in ids.iter().zip(lines) {
            assert_eq!(m.resolve(*id), last, "line {line}");
        }
        assert_eq!(m.template(last), Some("job <*> finished in <*>"));
        // Another event with the same count of tokens stays apart.
        assert_ne!(m.add_id("job 7 cancelled in 5 ms"), last);
        // Once shapes mixed, the `<*>` stands for the value with its unit.
        assert_eq!(m.add("job 8 finished in 9 ms").params, ["8", "9 ms"]);
        // While the template keeps the unit, the value is the number.
        let mut m = Miner::new(MinerConfig::default());
        m.add("flush took 5 ms");
        assert_eq!(m.add("flush took 7 ms").params, ["7"]);
    }

    #[test]
    fn a_keyed_quantity_and_a_leading_one_merge_across_shapes() {
        let mut m = Miner::new(MinerConfig::default());
        let a = m.add_id("flush done time=12 ms, queue 3");
        let b = m.add_id("flush done time=7ms, queue 4");
        let c = m.add_id("flush done time=1.5 s, queue 5");
        assert_eq!(m.resolve(a), m.resolve(c));
        assert_eq!(m.resolve(b), m.resolve(c));
        assert_eq!(m.template(c), Some("flush done time=<*>, queue <*>"));
        // Another key is another template.
        assert_ne!(m.add_id("flush done size=12 ms, queue 3"), m.resolve(c));
        // A line of values only: a shape change is still an exact match of the variables.
        let g = m.add_id("10.0.0.1 5 ms 12");
        let h = m.add_id("10.0.0.2 00:02 13");
        let i = m.add_id("10.0.0.3 4 s 14");
        assert_eq!(m.resolve(g), m.resolve(i));
        assert_eq!(m.resolve(h), m.resolve(i));
        assert_eq!(m.template(i), Some("<*> <*> <*>"));
        // The value first on the line: its shape does not choose the bucket.
        let d = m.add_id("250 ms spent in garbage collection");
        let e = m.add_id("1,250 ms spent in garbage collection");
        let f = m.add_id("3s spent in garbage collection");
        assert_eq!(m.resolve(d), m.resolve(f));
        assert_eq!(m.resolve(e), m.resolve(f));
    }

    #[test]
    fn a_missing_value_joins_the_template_of_present_ones() {
        let mut m = Miner::new(MinerConfig::default());
        let a = m.add_id("lease for client: - renewed");
        let b = m.add_id("lease for client: 10.1.2.3 renewed");
        let c = m.add_id("lease for client: N/A renewed");
        assert_eq!(m.resolve(a), m.resolve(b));
        assert_eq!(m.resolve(b), m.resolve(c));
    }

    #[test]
    fn endpoints_are_templates_of_their_own() {
        let mut m = Miner::new(MinerConfig::default());
        let line = |path: &str, ms: u32| format!("GET {path} HTTP/1.1 status: 200 time: {ms}");
        let detail = m.add_id(&line("/v2/4fa0c1/servers/detail", 12));
        let detail2 = m.add_id(&line("/v2/99b01e/servers/detail", 30));
        assert_eq!(m.resolve(detail), m.resolve(detail2));
        // Four more endpoints of the same shape: none merges with another, as a user name would
        // after three values.
        let others: Vec<TemplateId> = ["os-events", "flavors", "images", "volumes"]
            .iter()
            .map(|e| m.add_id(&line(&format!("/v2/4fa0c1/{e}"), 7)))
            .collect();
        let mut all: Vec<TemplateId> = others.iter().map(|&i| m.resolve(i)).collect();
        all.push(m.resolve(detail));
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 5);
        assert_eq!(
            m.template(detail),
            Some("GET /v2/<*>/servers/detail HTTP/<*> status: <*> time: <*>")
        );
        // An id where another route has a name is another operation, too.
        let one = m.add_id(&line("/v2/4fa0c1/servers/77", 7));
        assert_ne!(m.resolve(one), m.resolve(detail));
        // The same endpoint with a query string is the same template.
        let q = m.add_id(&line("/v2/4fa0c1/flavors?limit=3", 7));
        assert_eq!(m.resolve(q), m.resolve(others[1]));
        assert_eq!(
            m.template(q),
            Some("GET /v2/<*>/flavors?<*> HTTP/<*> status: <*> time: <*>")
        );
    }

    /// Invented events whose variables take several shapes each (issue 14's first kind) and
    /// REST endpoints (its second): every line's true event is the generator's, so the grouping
    /// is scored against a truth written by hand, not by the miner.
    #[test]
    fn invented_logs_in_many_shapes_group_by_event() {
        let mut seed: u64 = 7;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut lines: Vec<(String, String)> = Vec::new();
        for _ in 0..3000 {
            let dur = match next(8) {
                0 => format!("{} ms", next(999)),
                1 => format!("{}ms", next(999)),
                2 => "<1 sec".to_owned(),
                3 => format!("{:02}:{:02}", next(60), next(60)),
                4 => format!("{}.{} s", next(9), next(9)),
                5 => format!("{} seconds", next(9) + 1),
                6 => format!("{}h {}m", next(3) + 1, next(59) + 1),
                _ => format!("~{} s", next(9) + 1),
            };
            let size = match next(4) {
                0 => format!("{} bytes", next(9999)),
                1 => format!("{} bytes ({}.{:02} KB)", next(9999), next(9), next(99)),
                2 => format!("{},{:03} bytes", next(9) + 1, next(999)),
                _ => format!("{}KB", next(999)),
            };
            let who = ["-", "N/A", "unknown", "u1234"][next(4) as usize];
            let endpoint =
                ["servers/detail", "os-events", "flavors", "images/detail"][next(4) as usize];
            let method = ["GET", "POST"][next(2) as usize];
            let (event, line) = match next(6) {
                0 => ("finished".to_owned(), format!("worker {} finished job {} in {dur}", next(99), next(99))),
                1 => ("close".to_owned(), format!("gw{}.example.net:{} close, {size} sent, lifetime {dur}", next(9), next(60000))),
                2 => ("session".to_owned(), format!("session {} user={who} idle={dur}", next(9999))),
                3 => ("drift".to_owned(), format!("clock drift {}{} applied", ["+", "-", "~", ""][next(4) as usize], next(500))),
                4 => ("compaction".to_owned(), format!("{dur} spent in compaction of shard {}", next(99))),
                _ => (
                    format!("{method} {endpoint}"),
                    format!(
                        "10.1.1.{} \"{method} /v2/{:016x}/{endpoint} HTTP/1.1\" status: 200 time: 0.{}",
                        next(9),
                        next(u64::MAX),
                        next(999)
                    ),
                ),
            };
            lines.push((event, line));
        }
        let mut m = Miner::new(MinerConfig::default());
        let ids: Vec<TemplateId> = lines.iter().map(|(_, l)| m.add_id(l)).collect();
        let groups: Vec<TemplateId> = ids.iter().map(|&i| m.resolve(i)).collect();
        let truth: Vec<&str> = lines.iter().map(|(e, _)| e.as_str()).collect();
        let texts: Vec<&str> = groups
            .iter()
            .map(|&g| m.template(g).unwrap_or(""))
            .collect();
        let scores = crate::logs::eval::score(&truth, &groups, &texts);
        assert!(scores.ga > 0.999_999, "GA {} on invented shapes", scores.ga);
        // 5 plain events and 8 endpoints.
        let distinct: std::collections::HashSet<&TemplateId> = groups.iter().collect();
        assert_eq!(distinct.len(), 13);
    }

    #[test]
    fn ids_are_stable_hashes() {
        // FNV-1a 64 reference values (from the FNV specification's test suite).
        assert_eq!(TemplateId::of("").0, 0xcbf29ce484222325);
        assert_eq!(TemplateId::of("a").0, 0xaf63dc4c8601ec8c);
        assert_eq!(
            TemplateId(0xaf63dc4c8601ec8c).to_string(),
            "af63dc4c8601ec8c"
        );
        assert_eq!(
            "af63dc4c8601ec8c".parse::<TemplateId>().ok(),
            Some(TemplateId(0xaf63dc4c8601ec8c))
        );
        assert!("xyz".parse::<TemplateId>().is_err());
    }

    #[test]
    fn library_round_trip_and_seed() {
        let mut m = Miner::new(MinerConfig::default());
        m.add("user 1001 logged in");
        m.add("user 1002 logged in");
        let lib = TemplateLibrary::from_json(&m.library().to_json()).unwrap();
        assert_eq!(lib, m.library());
        let mut seeded = Miner::with_library(MinerConfig::default(), &lib);
        let id = seeded.add_id("user 1003 logged in");
        assert_eq!(id, lib.templates[0].id);
        let bad = lib
            .to_json()
            .replace(&lib.templates[0].id.to_string(), "0000000000000000");
        assert!(TemplateLibrary::from_json(&bad).is_err());
    }

    #[test]
    fn user_masks_and_delimiters() {
        let cfg = MinerConfig::default()
            .with_mask(r"req-[a-z]+")
            .unwrap()
            .with_delimiters("|");
        let mut m = Miner::new(cfg);
        let a = m.add("handled req-abc|ok");
        assert_eq!(m.template(a.template_id), Some("handled <*> ok"));
        assert!(MinerConfig::default().with_mask("(").is_err());
    }
}
