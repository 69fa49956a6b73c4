//! The online template miner: a Drain-style clustering of pre-masked token sequences.
//!
//! Each message is tokenised on whitespace (plus user delimiters) and masked by shape
//! ([`super::mask`]). Clusters are bucketed by token count and first token (Drain's prefix tree of
//! depth one: deeper trees only pay off when no pre-masking is done). Within a bucket the message
//! joins the most similar cluster if the share of equal positions reaches the threshold, and the
//! positions that disagree generalise to `<*>`; otherwise it starts a cluster of its own. Memory is
//! bounded by the number of clusters, not of messages.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::mask::{
    collapse_dates, constant_conflict, extract_params, generalise_token, mask_token, split_tokens,
    WILDCARD,
};
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
    pub id: TemplateId,
    pub text: &'a str,
    /// Messages assigned to it (including counts carried over from a library).
    pub count: u64,
}

struct Cluster {
    tokens: Vec<Box<str>>,
    hashes: Vec<u64>,
    text: String,
    id: TemplateId,
    count: u64,
    /// Clusters split from each other only by constant words share a family; the family records
    /// which constants each position has shown, to turn the position into `<*>` once enough do.
    family: u32,
    alive: bool,
}

impl Cluster {
    fn new(tokens: Vec<Box<str>>, count: u64, family: u32) -> Cluster {
        let hashes = tokens.iter().map(|t| fnv1a(t.as_bytes())).collect();
        let text = tokens.join(" ");
        let id = TemplateId::of(&text);
        Cluster {
            tokens,
            hashes,
            text,
            id,
            count,
            family,
            alive: true,
        }
    }
}

/// The streaming miner. Deterministic: the same messages in the same order give the same
/// templates and ids.
pub struct Miner {
    config: MinerConfig,
    clusters: Vec<Cluster>,
    buckets: HashMap<(usize, u64), Vec<u32>>,
    by_id: HashMap<TemplateId, u32>,
    /// Ids a template had before it generalised, pointing to the id that replaced them.
    aliases: HashMap<TemplateId, TemplateId>,
    /// Per family: position → hashes of the distinct constants seen there (capped).
    families: HashMap<u32, HashMap<usize, Vec<u64>>>,
}

/// Messages per block handed from masking workers to the clustering thread.
const BLOCK: usize = 8192;

/// A message masked and hashed, ready to cluster.
struct Prepared<'a> {
    masked: Vec<Cow<'a, str>>,
    hashes: Vec<u64>,
}

/// A message cut into tokens: raw text and masked form for each.
struct Tokens<'a> {
    raw: Vec<&'a str>,
    masked: Vec<Cow<'a, str>>,
}

impl Miner {
    pub fn new(config: MinerConfig) -> Miner {
        Miner {
            config,
            clusters: Vec::new(),
            buckets: HashMap::new(),
            by_id: HashMap::new(),
            aliases: HashMap::new(),
            families: HashMap::new(),
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
    pub fn add(&mut self, content: &str) -> LineMatch {
        let masked_content = self.apply_masks(content);
        let toks = self.tokenize(&masked_content);
        let idx = self.cluster_for(&toks);
        let c = &self.clusters[idx];
        let mut params = Vec::new();
        for (t, raw) in c.tokens.iter().zip(&toks.raw) {
            extract_params(t, raw, &mut params);
        }
        LineMatch {
            template_id: c.id,
            params,
        }
    }

    /// Like [`Miner::add`] without extracting parameters (the fast path for counting).
    pub fn add_id(&mut self, content: &str) -> TemplateId {
        let p = self.prepare(content);
        let idx = self.assign(&p);
        self.clusters[idx].id
    }

    /// Assigns many messages; the result equals calling [`Miner::add_id`] on each in order.
    /// With `threads` > 1 (0 = available cores), tokenising and masking run on worker threads in
    /// blocks while this thread clusters, so the clustering order — and the result — is unchanged.
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
        let workers = threads - 1;
        let this: &Miner = self;
        let blocks: Vec<&[S]> = contents.chunks(BLOCK).collect();
        let prepared: Vec<Vec<Prepared<'_>>> = std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Prepared<'_>>)>(2 * workers);
            for w in 0..workers {
                let tx = tx.clone();
                let blocks = &blocks;
                scope.spawn(move || {
                    for (b, block) in blocks.iter().enumerate().skip(w).step_by(workers) {
                        let p = block.iter().map(|c| this.prepare(c.as_ref())).collect();
                        if tx.send((b, p)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            let mut slots: Vec<Option<Vec<Prepared<'_>>>> =
                (0..blocks.len()).map(|_| None).collect();
            for (b, p) in rx {
                slots[b] = Some(p);
            }
            slots.into_iter().map(Option::unwrap_or_default).collect()
        });
        for block in prepared {
            for p in &block {
                let ci = self.assign(p);
                ids.push(self.clusters[ci].id);
            }
        }
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
        TemplateLibrary {
            version: TemplateLibrary::VERSION,
            templates: self
                .templates()
                .map(|t| LibraryTemplate {
                    id: t.id,
                    template: t.text.to_owned(),
                    count: t.count,
                })
                .collect(),
        }
    }

    fn apply_masks<'a>(&self, content: &'a str) -> Cow<'a, str> {
        let mut cur = Cow::Borrowed(content);
        for re in &self.config.masks {
            if let Cow::Owned(s) = re.replace_all(&cur, WILDCARD) {
                cur = Cow::Owned(s);
            }
        }
        cur
    }

    fn tokenize<'a>(&self, content: &'a str) -> Tokens<'a> {
        let mut raw = Vec::new();
        split_tokens(content, &self.config.delimiters, &mut raw);
        let mut masked: Vec<Cow<'a, str>> = raw.iter().map(|t| mask_token(t)).collect();
        collapse_dates(content, &mut raw, &mut masked);
        Tokens { raw, masked }
    }

    /// Tokenises and masks a message; pure, so it can run on any thread.
    fn prepare<'a>(&self, content: &'a str) -> Prepared<'a> {
        let masked_content = self.apply_masks(content);
        let masked: Vec<Cow<'a, str>> = match masked_content {
            Cow::Borrowed(c) => self.tokenize(c).masked,
            Cow::Owned(c) => self
                .tokenize(&c)
                .masked
                .into_iter()
                .map(|t| Cow::Owned(t.into_owned()))
                .collect(),
        };
        let hashes = masked.iter().map(|t| fnv1a(t.as_bytes())).collect();
        Prepared { masked, hashes }
    }

    fn cluster_for(&mut self, toks: &Tokens<'_>) -> usize {
        let hashes: Vec<u64> = toks.masked.iter().map(|t| fnv1a(t.as_bytes())).collect();
        self.assign_hashed(&toks.masked, &hashes)
    }

    fn assign(&mut self, p: &Prepared<'_>) -> usize {
        self.assign_hashed(&p.masked, &p.hashes)
    }

    fn assign_hashed(&mut self, masked: &[Cow<'_, str>], hashes: &[u64]) -> usize {
        let key = bucket_key(hashes);
        let mut best: Option<(usize, usize, usize)> = None; // (eq, wildcards, cluster)
        if let Some(cands) = self.buckets.get(&key) {
            for &ci in cands {
                let c = &self.clusters[ci as usize];
                let mut eq = 0;
                let mut wild = 0;
                for (a, b) in c.hashes.iter().zip(hashes) {
                    if *a == WILD_HASH {
                        wild += 1;
                        if *b == WILD_HASH {
                            eq += 1;
                        }
                    } else if a == b {
                        eq += 1;
                    }
                }
                let better = match best {
                    None => true,
                    Some((be, bw, _)) => eq > be || (eq == be && wild > bw),
                };
                if better {
                    best = Some((eq, wild, ci as usize));
                }
            }
        }
        let n = hashes.len().max(1);
        let mut family = self.clusters.len() as u32;
        if let Some((eq, _, ci)) = best {
            if eq as f64 / n as f64 >= self.config.similarity {
                if self.constants_settled(ci, masked, hashes) {
                    self.merge_into(ci, masked, hashes);
                    self.absorb_family(ci);
                    return ci;
                }
                family = self.clusters[ci].family;
            }
        }
        let tokens: Vec<Box<str>> = masked.iter().map(|t| Box::from(t.as_ref())).collect();
        self.insert_cluster(Cluster::new(tokens, 1, family))
    }

    /// Whether a message may join cluster `ci`: true unless they differ at a position where both
    /// hold a constant that has not yet shown `distinct_constants` values in the family. Records
    /// the constants seen either way.
    fn constants_settled(&mut self, ci: usize, masked: &[Cow<'_, str>], hashes: &[u64]) -> bool {
        let c = &self.clusters[ci];
        let need = self.config.distinct_constants.max(2);
        let mut settled = true;
        for (k, h) in hashes.iter().enumerate() {
            if c.hashes[k] == *h || !constant_conflict(&c.tokens[k], &masked[k]) {
                continue;
            }
            if is_enum_word(&c.tokens[k]) && is_enum_word(&masked[k]) {
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
            for v in [c.hashes[k], *h] {
                if !seen.contains(&v) && seen.len() < need {
                    seen.push(v);
                }
            }
            if seen.len() < need {
                settled = false;
            }
        }
        settled
    }

    /// After cluster `ci` generalised, folds in the family's other clusters that now differ from
    /// it only where one side is a variable. Their ids become aliases of `ci`'s.
    fn absorb_family(&mut self, ci: usize) {
        let c = &self.clusters[ci];
        let family = c.family;
        let key = bucket_key(&c.hashes);
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
            let v_tokens: Vec<Cow<'_, str>> = self.clusters[vi]
                .tokens
                .iter()
                .map(|t| Cow::Owned(t.to_string()))
                .collect();
            let v_hashes = self.clusters[vi].hashes.clone();
            let v_count = self.clusters[vi].count;
            self.merge_into(ci, &v_tokens, &v_hashes);
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

    fn merge_into(&mut self, ci: usize, masked: &[Cow<'_, str>], hashes: &[u64]) {
        let c = &mut self.clusters[ci];
        c.count += 1;
        let mut changed = false;
        for (k, h) in hashes.iter().enumerate() {
            if c.hashes[k] != *h && c.hashes[k] != WILD_HASH {
                let g = generalise_token(&c.tokens[k], &masked[k]);
                c.hashes[k] = fnv1a(g.as_bytes());
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
        let key = bucket_key(&c.hashes);
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

const WILD_HASH: u64 = {
    // fnv1a("<*>") computed at compile time.
    let b = WILDCARD.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
};

fn bucket_key(hashes: &[u64]) -> (usize, u64) {
    (hashes.len(), hashes.first().copied().unwrap_or(0))
}

/// Saved templates, carried from one analysis to the next (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateLibrary {
    pub version: u32,
    pub templates: Vec<LibraryTemplate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LibraryTemplate {
    pub id: TemplateId,
    pub template: String,
    pub count: u64,
}

impl TemplateLibrary {
    pub const VERSION: u32 = 1;

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
