//! Template tokens: generalising two masked forms of a position into one template token,
//! checking whether a template token covers a token, finding conflicting constants, extracting
//! the values behind `<*>`, and [`Prepared`], a block of messages tokenized and masked into one
//! buffer for the miner.

use super::mask::*;
use super::tokenize::*;

pub(crate) fn generalise_token(a: &str, b: &str) -> String {
    if a == b {
        return a.to_owned();
    }
    if let (Some((pa, va)), Some((pb, vb))) = (keyed_value(a), keyed_value(b)) {
        if pa == pb {
            // One quantity in two units or shapes: one value, with the key before it and the
            // closing punctuation both keep (`t=<*> ms,` and `t=<*>,` give `t=<*>,`).
            return format!("{pa}{}", frame_wildcard(va, vb));
        }
    }
    if route_path(a).is_some() && a.replacen("?<*>", "", 1) == b.replacen("?<*>", "", 1) {
        // One endpoint with and without a query string.
        return if a.len() > b.len() { a } else { b }.to_owned();
    }
    let Some(slots) = align(a, b, is_segment_delim) else {
        return frame_wildcard(a, b);
    };
    let mut out = String::with_capacity(a.len());
    for slot in slots {
        match slot {
            Slot::Delim(d) => out.push_str(d),
            Slot::Same(t) => push_text(&mut out, t),
            Slot::Differ(x, y) => match align(x, y, is_sub_delim) {
                Some(sub)
                    if sub
                        .iter()
                        .any(|s| matches!(s, Slot::Same(t) if !t.is_empty() && *t != WILDCARD)) =>
                {
                    for s in sub {
                        match s {
                            Slot::Delim(d) => out.push_str(d),
                            Slot::Same(t) => push_text(&mut out, t),
                            Slot::Differ(..) => push_wildcard(&mut out),
                        }
                    }
                }
                _ => push_wildcard(&mut out),
            },
        }
    }
    out
}

/// `<*>` inside the punctuation both tokens start and end with: `LOCAL(0),` and `<*>,` give
/// `<*>,`, so the comma of the template survives.
fn frame_wildcard(a: &str, b: &str) -> String {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let frame = |c: u8| is_segment_delim(c) && c != b'<' && c != b'>';
    // Longest common prefix that ends just after a delimiter (`ws=`), and the same for suffixes.
    let mut pre = 0;
    let mut k = 0;
    while k < ab.len() && k < bb.len() && ab[k] == bb[k] && ab[k] != b'<' {
        k += 1;
        if frame(ab[k - 1]) {
            pre = k;
        }
    }
    let mut suf = 0;
    let mut k = 0;
    while k < ab.len() - pre
        && k < bb.len() - pre
        && ab[ab.len() - 1 - k] == bb[bb.len() - 1 - k]
        && ab[ab.len() - 1 - k] != b'>'
    {
        k += 1;
        if frame(ab[ab.len() - k]) {
            suf = k;
        }
    }
    let mut out = String::with_capacity(pre + suf + 3);
    out.push_str(&a[..pre]);
    out.push_str(WILDCARD);
    out.push_str(&a[a.len() - suf..]);
    out
}

fn is_sub_delim(b: u8) -> bool {
    matches!(b, b'-' | b'/' | b'+' | b'#')
}

fn push_text(out: &mut String, t: &str) {
    if t == WILDCARD {
        push_wildcard(out);
    } else {
        out.push_str(t);
    }
}

enum Slot<'a> {
    Delim(&'a str),
    Same(&'a str),
    Differ(&'a str, &'a str),
}

/// Cuts both strings at delimiter bytes (a `<*>` is never cut); `None` unless the delimiter
/// sequences are identical.
fn align<'a>(a: &'a str, b: &'a str, delim: fn(u8) -> bool) -> Option<Vec<Slot<'a>>> {
    let sa = cut(a, delim);
    let sb = cut(b, delim);
    if sa.len() != sb.len() {
        return None;
    }
    let mut out = Vec::with_capacity(sa.len());
    for (k, (x, y)) in sa.into_iter().zip(sb).enumerate() {
        if k % 2 == 1 {
            if x != y {
                return None;
            }
            out.push(Slot::Delim(x));
        } else if x == y {
            out.push(Slot::Same(x));
        } else {
            out.push(Slot::Differ(x, y));
        }
    }
    Some(out)
}

/// Alternating text / delimiter pieces, starting and ending with a (possibly empty) text.
fn cut(s: &str, delim: fn(u8) -> bool) -> Vec<&str> {
    let b = s.as_bytes();
    let mut v = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(WILDCARD.as_bytes()) {
            i += WILDCARD.len();
        } else if delim(b[i]) {
            v.push(&s[start..i]);
            v.push(&s[i..i + 1]);
            i += 1;
            start = i;
        } else {
            i += 1;
        }
    }
    v.push(&s[start..]);
    v
}

/// Whether a template token already covers a token: its literal runs appear in order, the
/// first at the start and the last at the end (each `<*>` standing for any text).
pub fn covers(template_tok: &str, tok: &str) -> bool {
    let Some((head, rest)) = template_tok.split_once(WILDCARD) else {
        return template_tok == tok;
    };
    let Some(mut left) = tok.strip_prefix(head) else {
        return false;
    };
    let mut parts = rest.split(WILDCARD).peekable();
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            return left.len() >= p.len() && left.ends_with(p);
        }
        match left.find(p) {
            Some(i) => left = &left[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// The path of a request target in a masked token (see `mask::mask_route_into`), without its
/// query: the token itself when it starts with `/`, or the part after `METHOD ` in a quoted request
/// line. Any other path was masked to one `<*>`, so a masked `/name` is a route.
fn route_path(t: &str) -> Option<&str> {
    let at = if t.starts_with('/') {
        0
    } else {
        let sp = t.find(' ')?;
        is_http_method(strip_openers(&t[..sp])).then_some(sp + 1)?
    };
    let r = &t[at..];
    if !r.starts_with('/') && !r.contains("://") {
        return None;
    }
    let end = r
        .find(|c: char| c == '?' || c.is_ascii_whitespace() || c == '"' || c == '\'')
        .unwrap_or(r.len());
    Some(&r[..end])
}

/// Whether a masked token holds a request target.
pub(crate) fn has_route(t: &str) -> bool {
    route_path(t).is_some()
}

/// Whether two masked tokens hold request targets that name different endpoints: any difference
/// in the route's path, names or shape (`/servers/<*>` and `/servers/detail` are two operations).
/// Unlike other constants, these never merge however many appear: an API's endpoints are its
/// events, and identifiers in routes are written with digits.
pub(crate) fn route_conflict(a: &str, b: &str) -> bool {
    match (route_path(a), route_path(b)) {
        (Some(x), Some(y)) => x != y,
        _ => false,
    }
}

/// Whether two different masked tokens disagree in constant text: some slot differs where neither
/// side is a variable (`startup`/`shutdown`, `(uid=<*>)`/`LOGIN(uid=<*>)`). Such a difference
/// only becomes `<*>` once the position has shown enough distinct constants.
pub(crate) fn constant_conflict(a: &str, b: &str) -> bool {
    route_conflict(a, b) || conflicting_constants(a, b).is_some()
}

/// The constant texts that make two tokens conflict (see [`constant_conflict`]): the first
/// differing slot, or the leading words when the shapes differ. A position's distinct values
/// are counted on these, so `topActivity=ComponentInfo{A}` and `topActivity=…{B}` are one key.
pub(crate) fn conflicting_constants<'a>(a: &'a str, b: &'a str) -> Option<(&'a str, &'a str)> {
    if a == b {
        return None;
    }
    if let (Some((pa, _)), Some((pb, _))) = (keyed_value(a), keyed_value(b)) {
        if pa == pb {
            // `<*> ms` and `<*> s`: one quantity in two units.
            return None;
        }
    }
    // `<*> bytes` against a word (`cache`): the unit is evidence of the event, which the word
    // lacks — a conflict of constants, as `bytes` against `cache` would be.
    for (x, y) in [(a, b), (b, a)] {
        if let Some(unit) = x.strip_prefix("<*> ") {
            if value_token(x) && !y.contains(WILDCARD) {
                return Some((unit, y));
            }
        }
    }
    match align(a, b, is_segment_delim) {
        // Different shapes: a conflict when the leading words (the keys) differ, as in
        // `num=<*>,flags=<*>` against `topActivity=ComponentInfo{<*>}`.
        None => {
            let (ka, kb) = (first_slot(a), first_slot(b));
            (ka != kb && !ka.contains(WILDCARD) && !kb.contains(WILDCARD)).then_some((ka, kb))
        }
        Some(slots) => slots.into_iter().find_map(|s| match s {
            Slot::Differ(x, y) if !x.contains(WILDCARD) && !y.contains(WILDCARD) => Some((x, y)),
            _ => None,
        }),
    }
}

fn first_slot(s: &str) -> &str {
    cut(s, is_segment_delim)[0]
}

/// text (a range of the message) and the hash of the masked text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PTok {
    pub masked: (u32, u32),
    pub raw: (u32, u32),
    pub hash: u64,
}

/// Messages tokenised and masked, packed in one buffer so that preparing a block of messages
/// allocates a handful of times, not once per token. Reused across calls.
#[derive(Default, Debug, Clone)]
pub(crate) struct Prepared {
    pub buf: String,
    pub toks: Vec<PTok>,
    /// End (exclusive) in `toks` of each message.
    pub ends: Vec<u32>,
    scratch: String,
    spans: Vec<(u32, u32)>,
}

impl Prepared {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.toks.clear();
        self.ends.clear();
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Tokens of message `i`.
    pub fn line(&self, i: usize) -> &[PTok] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.toks[start..self.ends[i] as usize]
    }

    /// Masked text of a token.
    pub fn text(&self, t: &PTok) -> &str {
        &self.buf[t.masked.0 as usize..t.masked.1 as usize]
    }

    /// Tokenises, masks and hashes one message and appends it.
    pub fn push(&mut self, content: &str, extra: &[char]) {
        // Offsets are u32 with one flag bit: a message is mined on its first
        // MAX_LOG_BODY_BYTES, far below the flag (callers count the lines they cut).
        let content = crate::telemetry::capped_body(content).unwrap_or(content);
        let first = self.toks.len();
        let mut collapse = false;
        let mut spans = std::mem::take(&mut self.spans);
        if extra.is_empty() {
            // One pass that finds the tokens and flags those that may hold a variable.
            scan_tokens(content.as_bytes(), &mut spans);
        } else {
            split_token_spans(content, extra, &mut spans);
            for s in spans.iter_mut() {
                s.0 |= SUSPICIOUS;
            }
        }
        let (mut after_key, mut after_value, mut after_method) = (false, false, false);
        for &(a, b) in &spans {
            let suspicious = a & SUSPICIOUS != 0;
            let a = a & !SUSPICIOUS;
            let raw = &content[a as usize..b as usize];
            let lead = raw.as_bytes().first().copied().unwrap_or(0);
            collapse |= may_collapse(raw)
                || opens_paren_number(raw)
                || (matches!(lead, b'<' | b'>' | b'~') && is_comparator(raw))
                || (lead.is_ascii_digit() && (is_duration_part(raw) || is_numeric_date(raw)))
                || (after_value && is_unit_name(trim_closing(raw)));
            let start = self.buf.len() as u32;
            self.scratch.clear();
            if after_method && is_request_target(raw) {
                // `GET /v2/42/servers`: the endpoint's names stay (see `mask_route_into`).
                let end = route_len(raw);
                mask_route_into(&raw[..end], &mut self.scratch);
                self.buf.push_str(&self.scratch);
                self.scratch.clear();
                if mask_token_into(&raw[end..], &mut self.scratch) {
                    self.buf.push_str(&self.scratch);
                } else {
                    self.buf.push_str(&raw[end..]);
                }
            } else if after_key && is_null_mark(trim_closing(raw).as_bytes()) {
                // `size: -`, `user: N/A`: a key's value that is missing this time.
                self.buf.push_str(WILDCARD);
                self.buf.push_str(&raw[trim_closing(raw).len()..]);
            } else if suspicious && mask_token_into(raw, &mut self.scratch) {
                self.buf.push_str(&self.scratch);
            } else {
                self.buf.push_str(raw);
            }
            after_key = raw.len() > 1 && raw.ends_with([':', '=']);
            after_method = matches!(lead, b'A'..=b'Z' | b'"' | b'\'' | b'[' | b'(')
                && is_http_method(strip_openers(raw));
            // A number at the token's end (`5`, `time=5`, `(5`) may have its unit next.
            after_value = raw.as_bytes().last().is_some_and(u8::is_ascii_digit)
                && self.buf.len() > start as usize
                && self.buf.ends_with(WILDCARD);
            let end = self.buf.len() as u32;
            let hash = tok_hash(&self.buf.as_bytes()[start as usize..]);
            self.toks.push(PTok {
                masked: (start, end),
                raw: (a, b),
                hash,
            });
        }
        spans.clear();
        self.spans = spans;
        if collapse {
            self.collapse(content, first);
        }
        self.ends.push(self.toks.len() as u32);
    }

    /// Appends `text` to the buffer as a new masked token covering raw range `raw`.
    fn synth(&mut self, text: &str, raw: (u32, u32)) -> PTok {
        let start = self.buf.len() as u32;
        self.buf.push_str(text);
        PTok {
            masked: (start, self.buf.len() as u32),
            raw,
            hash: token_hash(text),
        }
    }

    /// The multi-token values: a quantity with its unit (`16.0 KB`, `5 ms`) and a written-out
    /// date (`Sun Jul 24 02:38:22 2005`) become one token each.
    ///
    /// A unit is part of its value, and the same variable is written `5ms`, `5 ms` or `00:05`:
    /// the template's token count must not depend on which. A byte size becomes `<*>` (the
    /// corrected labels write a size as one value); any other unit from the closed list
    /// ([`is_unit_name`]) stays visible inside the one token (`<*> ms`), so the template still
    /// reads as written, and `<*> ms`, `<*> s` and `<*>` never conflict (see
    /// [`conflicting_constants`]).
    fn collapse(&mut self, content: &str, first: usize) {
        // `< 1 sec`: a comparator written apart joins the number after it; `2h 3m 4s`: the
        // parts of one duration are one value.
        let mut k = first;
        while k + 1 < self.toks.len() {
            let (a, b) = (self.toks[k], self.toks[k + 1]);
            let a_raw = &content[a.raw.0 as usize..a.raw.1 as usize];
            let b_raw = &content[b.raw.0 as usize..b.raw.1 as usize];
            // Between two values (`1234 > 999`) a comparator is an operator, not a bound.
            let bound = k == first || !self.text(&self.toks[k - 1]).ends_with(WILDCARD);
            let joined = if is_numeric_date(a_raw) && is_time_of_day(b_raw) {
                // `2016-09-28 04:30:30,123`: one timestamp, as `2016-09-28T04:30:30` is.
                let tail = b_raw.trim_end_matches([',', ';', ')', ']']);
                Some(format!("{WILDCARD}{}", &b_raw[tail.len()..]))
            } else if bound
                && is_comparator(a_raw)
                && self.text(&b).starts_with(WILDCARD)
                && b_raw.starts_with(|c: char| c.is_ascii_digit())
            {
                Some(self.text(&b).to_owned())
            } else if self.text(&a).ends_with(WILDCARD)
                && a_raw
                    .rsplit([' ', '=', ':', '('])
                    .next()
                    .is_some_and(is_duration_part)
                && is_duration_part(trim_closing(b_raw))
            {
                // `2h 3m`, `idle=2h 3m,`: the key before the duration stays.
                Some(format!(
                    "{}{}",
                    self.text(&a),
                    &b_raw[trim_closing(b_raw).len()..]
                ))
            } else {
                None
            };
            match joined {
                Some(text) => {
                    let t = self.synth(&text, (a.raw.0, b.raw.1));
                    self.toks.splice(k..k + 2, [t]);
                }
                None => k += 1,
            }
        }
        let mut k = first;
        while k + 1 < self.toks.len() {
            let (a, b) = (self.toks[k], self.toks[k + 1]);
            let unit_raw = &content[b.raw.0 as usize..b.raw.1 as usize];
            let unit = trim_closing(unit_raw);
            let a_raw = &content[a.raw.0 as usize..a.raw.1 as usize];
            let number_last =
                self.text(&a).ends_with(WILDCARD) && a_raw.ends_with(|c: char| c.is_ascii_digit());
            if number_last && is_unit_name(unit) {
                // `5 ms`, `time=5 ms,`, `(16 KB)`: the key or bracket before the number stays.
                let text = if BYTE_UNITS.contains(&unit) {
                    format!("{}{}", self.text(&a), &unit_raw[unit.len()..])
                } else {
                    format!("{} {unit_raw}", self.text(&a))
                };
                let t = self.synth(&text, (a.raw.0, b.raw.1));
                self.toks.splice(k..k + 2, [t]);
            }
            k += 1;
        }
        self.absorb_restatements(content, first);
        // Dates: an optional weekday, a month name, then at least two all-variable tokens.
        let mut k = first;
        while k < self.toks.len() {
            let raw = |t: &PTok| &content[t.raw.0 as usize..t.raw.1 as usize];
            let mut m = k;
            if calendar_word(raw(&self.toks[m])) == Some(false) {
                m += 1;
            }
            if m >= self.toks.len() || calendar_word(raw(&self.toks[m])) != Some(true) {
                k += 1;
                continue;
            }
            let mut end = m + 1;
            while end < self.toks.len() && all_variable(self.text(&self.toks[end])) {
                end += 1;
            }
            // A month alone, or with one number, is too weak a signal (`May 3` may be text).
            if end - m < 3 {
                k += 1;
                continue;
            }
            let t = self.synth(WILDCARD, (self.toks[k].raw.0, self.toks[end - 1].raw.1));
            self.toks.splice(k..end, [t]);
            k += 1;
        }
    }
}

impl Prepared {
    /// A quantity restated in parentheses right after a value (`1190 bytes (1.16 KB)`,
    /// `5000 ms (5 s),`, `310 (75%)`) is the same variable written a second way, and some lines
    /// leave it out (`0 bytes`): it joins the value's token, so both forms have the same tokens.
    /// The value is the previous token, or the one before a unit-like word (`bytes`).
    fn absorb_restatements(&mut self, content: &str, first: usize) {
        let raw = |t: &PTok| &content[t.raw.0 as usize..t.raw.1 as usize];
        let mut k = first + 1;
        while k < self.toks.len() {
            let Some((n, trailing)) = paren_quantity(content, &self.toks[k..]) else {
                k += 1;
                continue;
            };
            let prev = self.toks[k - 1];
            let after_value = keyed_value(self.text(&prev)).is_some()
                || (k >= first + 2
                    && is_unit_word(raw(&prev))
                    && all_variable(self.text(&self.toks[k - 2])));
            if !after_value {
                k += 1;
                continue;
            }
            let text = format!("{}{trailing}", self.text(&prev));
            let t = self.synth(&text, (prev.raw.0, self.toks[k + n - 1].raw.1));
            self.toks.splice(k - 1..k + n, [t]);
        }
    }
}

/// A raw token that opens a parenthesis on a digit (`(1.16`, `(75%)`): the trigger for
/// [`Prepared::absorb_restatements`].
pub(super) fn opens_paren_number(raw: &str) -> bool {
    let b = raw.as_bytes();
    b.len() >= 2 && b[0] == b'(' && b[1].is_ascii_digit()
}

/// A short word that may be a unit (`bytes`, `ms`, `KB`, `secs`): letters only, at most 7.
fn is_unit_word(t: &str) -> bool {
    (1..=7).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Whether the tokens start with a parenthesised quantity, a number with an optional unit, in
/// one or two tokens (`(1.16 KB)`, `(12%),`): returns how many tokens and the punctuation after
/// the closing parenthesis.
fn paren_quantity<'c>(content: &'c str, toks: &[PTok]) -> Option<(usize, &'c str)> {
    let first = toks.first()?;
    let a = &content[first.raw.0 as usize..first.raw.1 as usize];
    if !opens_paren_number(a) {
        return None;
    }
    let (n, inner, rest) = if let Some(close) = a.find(')') {
        (1, &a[1..close], &a[close + 1..])
    } else {
        let second = toks.get(1)?;
        let b = &content[second.raw.0 as usize..second.raw.1 as usize];
        let close = b.find(')')?;
        // The inner text as one string: the number, a space, the unit.
        let unit = &b[..close];
        if !is_quantity(&a[1..]) || !is_unit(unit) || unit.is_empty() {
            return None;
        }
        return trailing_punct(&b[close + 1..]).map(|t| (2, t));
    };
    if !is_quantity(inner) {
        return None;
    }
    trailing_punct(rest).map(|t| (n, t))
}

/// `rest` if it is only closing punctuation (`,`, `;`, `.`, `:`).
fn trailing_punct(rest: &str) -> Option<&str> {
    rest.bytes()
        .all(|b| matches!(b, b',' | b';' | b'.' | b':'))
        .then_some(rest)
}

/// A number (`12`, `1.16`, `-3`, `0,5`) directly followed by an optional unit (`KB`, `%`,
/// `ms`, `KB/s`).
fn is_quantity(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == start {
        return false;
    }
    if i + 1 < b.len() && matches!(b[i], b'.' | b',') && b[i + 1].is_ascii_digit() {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    // `1.16 KB` arrives as one token once the unit has joined its number.
    let unit = &s[i..];
    is_unit(unit.strip_prefix(' ').unwrap_or(unit))
}

/// An optional unit: empty, `%`, or up to 7 letters with at most one `/` (`KB/s`).
fn is_unit(u: &str) -> bool {
    u.is_empty()
        || u == "%"
        || (u.len() <= 7
            && u.bytes().filter(|&b| b == b'/').count() <= 1
            && !u.starts_with('/')
            && !u.ends_with('/')
            && u.bytes().all(|b| b.is_ascii_alphabetic() || b == b'/'))
}

const BYTE_UNITS: [&str; 9] = ["B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"];

/// A date written in numbers: three groups of digits joined by the same `-`, `/` or `.`, one of
/// them a four-digit year (`2016-09-28`, `28/09/2016`, `2016.09.28`).
fn is_numeric_date(raw: &str) -> bool {
    let b = raw.as_bytes();
    if !(8..=10).contains(&b.len()) || !b[0].is_ascii_digit() {
        return false;
    }
    let Some(&sep) = b.iter().find(|c| !c.is_ascii_digit()) else {
        return false;
    };
    if !matches!(sep, b'-' | b'/' | b'.') {
        return false;
    }
    // Without allocating: every token of 8 to 10 bytes that starts with a digit asks.
    let (mut groups, mut year) = (0, false);
    for g in b.split(|&c| c == sep) {
        groups += 1;
        if groups > 3 || !(1..=4).contains(&g.len()) || !g.iter().all(u8::is_ascii_digit) {
            return false;
        }
        year |= g.len() == 4;
    }
    groups == 3 && year
}

/// A time of day after a date (`04:30`, `04:30:30`, `04:30:30,123`, `04:30:30.123Z`, with
/// closing punctuation allowed).
fn is_time_of_day(raw: &str) -> bool {
    let t = raw.trim_end_matches([',', ';', ')', ']']);
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (hms, frac) = match t.find(['.', ',']) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, "0"),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| (1..=2).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()))
        && !frac.is_empty()
        && frac.bytes().all(|c| c.is_ascii_digit())
}

/// A comparator standing alone before a number (`<`, `>`, `<=`, `>=`, `~`).
fn is_comparator(raw: &str) -> bool {
    matches!(raw, "<" | ">" | "<=" | ">=" | "~")
}

/// One part of a duration written in units (`2h`, `3m`, `4s`, `1.5s`, `250ms`, `2d`).
fn is_duration_part(raw: &str) -> bool {
    let b = raw.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_digit) {
        return false;
    }
    let n = b
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == b'.')
        .count();
    matches!(
        &raw[n..],
        "d" | "h" | "m" | "s" | "ms" | "us" | "ns" | "min"
    )
}

/// `raw` without closing punctuation (`ms,` → `ms`, `KB)` → `KB`).
fn trim_closing(raw: &str) -> &str {
    raw.trim_end_matches([',', ';', ')', ']', '.'])
}

/// A unit of measure written after a number, from a closed list: byte sizes, SI and
/// customary time units, bits and rates, frequencies and `%` (case as conventionally written;
/// one-letter units other than `s` and `B` are left out, being more often words).
pub(super) fn is_unit_name(u: &str) -> bool {
    // By length first: every token after a number asks, so this is on the hot path.
    match u.len() {
        1 => matches!(u, "B" | "s" | "%"),
        2 => matches!(
            u,
            "KB" | "MB" | "GB" | "TB" | "PB" | "kB" | "ns" | "us" | "ms" | "hr" | "Hz"
        ),
        3 => matches!(
            u,
            "KiB"
                | "MiB"
                | "GiB"
                | "TiB"
                | "PiB"
                | "bit"
                | "µs"
                | "μs"
                | "sec"
                | "min"
                | "hrs"
                | "day"
                | "bps"
                | "B/s"
                | "kHz"
                | "MHz"
                | "GHz"
        ),
        4 => matches!(
            u,
            "byte"
                | "bits"
                | "secs"
                | "mins"
                | "hour"
                | "days"
                | "kbps"
                | "Kbps"
                | "Mbps"
                | "Gbps"
                | "KB/s"
                | "kB/s"
                | "MB/s"
                | "GB/s"
        ),
        5 => matches!(u, "bytes" | "hours"),
        6 => matches!(u, "second" | "minute"),
        7 => matches!(u, "seconds" | "minutes"),
        _ => false,
    }
}

/// A masked token that is a value: all variable (`<*>`, `<*>:<*>`) or a value with its unit
/// (`<*> ms`, `<*> seconds,`).
pub(crate) fn value_token(t: &str) -> bool {
    all_variable(t)
        || t.strip_prefix("<*> ")
            .is_some_and(|u| is_unit_name(trim_closing(u)))
}

/// The hash of `<*>`.
pub(crate) const WILD_HASH: u64 = tok_hash(WILDCARD.as_bytes());

/// The hash a masked token is compared by: a value with its unit (`<*> ms`) hashes as `<*>`, so
/// the miner's similarity counts it as the variable it is, whichever shape the value took (a line
/// of values only, `<*> <*> ms <*>` and `<*> <*> <*>`, is then an exact match).
pub(crate) fn token_hash(t: &str) -> u64 {
    if t.starts_with("<*> ") && value_token(t) {
        WILD_HASH
    } else {
        tok_hash(t.as_bytes())
    }
}

/// A masked token that is a value after a constant prefix without variables (`time=<*> ms,`,
/// `(<*>)`, `<*>`): the prefix and the value. Two such tokens with the same prefix hold one
/// quantity, whatever its unit or shape.
pub(super) fn keyed_value(t: &str) -> Option<(&str, &str)> {
    let i = t.find(WILDCARD)?;
    let (prefix, value) = t.split_at(i);
    value_token(value).then_some((prefix, value))
}

/// Extracts the values that the `<*>` of a template token stand for in a raw token: each literal
/// run of the template must occur in order; what lies between is a parameter. When the raw token
/// does not fit (it cannot happen for tokens this module masked), the whole token is the value.
pub(crate) fn extract_params(template_tok: &str, raw: &str, out: &mut Vec<String>) {
    if template_tok == WILDCARD {
        out.push(raw.to_owned());
        return;
    }
    if !template_tok.contains(WILDCARD) {
        return;
    }
    let parts: Vec<&str> = template_tok.split(WILDCARD).collect();
    let mut found = Vec::with_capacity(parts.len() - 1);
    let mut pos = match raw.strip_prefix(parts[0]) {
        Some(_) => parts[0].len(),
        None => {
            out.push(raw.to_owned());
            return;
        }
    };
    for (k, lit) in parts.iter().enumerate().skip(1) {
        let last = k == parts.len() - 1;
        let next = if last {
            if raw.len() >= pos + lit.len() && raw.ends_with(lit) {
                Some(raw.len() - lit.len())
            } else if lit.is_empty() {
                None
            } else {
                // A restatement absorbed after the literal (`1190 bytes (1.16 KB)` for
                // `<*> bytes`): the value is what comes before the literal.
                raw[pos..].find(lit).map(|o| pos + o)
            }
        } else if lit.is_empty() {
            Some(pos)
        } else {
            raw[pos..].find(lit).map(|o| pos + o)
        };
        match next {
            Some(n) => {
                found.push(raw[pos..n].to_owned());
                pos = n + lit.len();
            }
            None => {
                out.push(raw.to_owned());
                return;
            }
        }
    }
    out.extend(found);
}
