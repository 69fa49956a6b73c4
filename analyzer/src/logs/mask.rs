//! Variable detection: splits a message into tokens and replaces the variable parts of each token
//! with `<*>` before any clustering happens.
//!
//! Why mask before clustering: a clustering rule (Drain's similarity) can only generalise a position
//! after it has seen two different values there, so a template seen once keeps its numbers, and
//! messages whose constant part is short get split by their variables. Values whose *shape* says
//! they vary (numbers, hex, IPs, paths, ids with digits, booleans) are masked up front, consistently
//! in every message, which is what makes the default configuration work on systems never seen.
//!
//! The rules follow the template conventions of the corrected Loghub labels (Khan et al. 2022,
//! and Loghub-2.0's template rules):
//! - a token is cut at punctuation into pieces; a piece is variable when it starts with a digit,
//!   holds two or more digits, is a hex word of five or more characters with a digit, `0x…`,
//!   `v6`-style versions, or `true`/`false`/`null`;
//! - variables joined by `.` or `-` collapse into one `<*>` (IPs, versions, dates, UUIDs), and so
//!   do `host:port`, `ip:port`, `host/ip` (one address); a path (`/a/b`, `C:\x`) or URL is one
//!   variable; the other punctuation stays, so `node-12` becomes `node-<*>`, `uid=0` `uid=<*>`;
//! - across tokens: a written-out date (`Sun Jul 24 02:38:22 2005`) and a size with its unit
//!   (`16.0 KB`) become one `<*>`; a double-quoted string with spaces stays one token, so a
//!   message's token count does not depend on what the quoted value says.

use std::borrow::Cow;

/// The variable marker in template text.
pub const WILDCARD: &str = "<*>";

/// Delimiters that end a "segment" of a token: a path is recognised per segment, so that
/// `/10.1.2.3:50010` is a path-like address followed by a port.
const fn segment_delim_const(b: u8) -> bool {
    matches!(
        b,
        b',' | b';'
            | b':'
            | b'='
            | b'('
            | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'"'
            | b'\''
            | b'|'
            | b'<'
            | b'>'
            | b'!'
            | b'@'
            | b' '
            | b'\t'
    )
}

/// Delimiters that split a segment into pieces, each piece judged on its own.
const fn piece_delim_const(b: u8) -> bool {
    segment_delim_const(b)
        || matches!(
            b,
            b'.' | b'-' | b'+' | b'#' | b'$' | b'%' | b'&' | b'/' | b'*'
        )
}

/// Whether a piece (a run of non-delimiter bytes) is a variable by its shape.
fn piece_is_variable(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    if first.is_ascii_digit() {
        return true;
    }
    // A version: `v6`, `V2`.
    if p.len() > 1 && (first == b'v' || first == b'V') && p[1..].iter().all(u8::is_ascii_digit) {
        return true;
    }
    let digits = p.iter().filter(|b| b.is_ascii_digit()).count();
    if digits >= 2 {
        return true;
    }
    if p.len() > 2 && (p.starts_with(b"0x") || p.starts_with(b"0X")) {
        return p[2..].iter().all(u8::is_ascii_hexdigit);
    }
    if digits >= 1 && p.len() >= 5 && p.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    p.eq_ignore_ascii_case(b"true")
        || p.eq_ignore_ascii_case(b"false")
        || p.eq_ignore_ascii_case(b"null")
}

/// A path: `/` followed by at least one more byte and no `/`-only run, or a Windows path.
fn segment_is_path(s: &[u8]) -> bool {
    (s.len() > 1 && s[0] == b'/' && s[1] != b'/') || s.contains(&b'\\')
}

/// A host name with a digit or two dots in it (`msra-sa-41`, `db.example.org`); one dot and
/// no digit is more often a source file (`sweep.c:1112`).
fn host_like(s: &[u8]) -> bool {
    !s.is_empty()
        && s[0].is_ascii_alphanumeric()
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        && (s.iter().any(u8::is_ascii_digit) || s.iter().filter(|&&c| c == b'.').count() >= 2)
}

/// `host/1.2.3.4`, as Java prints an `InetAddress`.
fn is_address(s: &[u8]) -> bool {
    let Some(slash) = s.iter().position(|&c| c == b'/') else {
        return false;
    };
    let (host, ip) = (&s[..slash], &s[slash + 1..]);
    let host_ok = !host.is_empty()
        && host
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'));
    host_ok
        && ip.len() >= 7
        && ip.iter().all(|&c| c.is_ascii_digit() || c == b'.')
        && ip.iter().filter(|&&c| c == b'.').count() == 3
}

/// Length of `:port` (2 to 5 digits, then the end of the token or punctuation) at `rest`.
fn port_len(rest: &[u8]) -> Option<usize> {
    if rest.first() != Some(&b':') {
        return None;
    }
    let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    let after = rest.get(1 + digits).copied();
    let ends = after.is_none_or(|c| {
        matches!(
            c,
            b',' | b';' | b')' | b']' | b'}' | b'.' | b'/' | b'>' | b'"' | b'\''
        )
    });
    ((2..=5).contains(&digits) && ends).then_some(1 + digits)
}

/// Masks one token. Returns the token unchanged (borrowed) when nothing varies, the common case.
pub fn mask_token(tok: &str) -> Cow<'_, str> {
    let mut out = String::new();
    if mask_token_into(tok, &mut out) {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(tok)
    }
}

/// Writes the masked form of `tok` into the empty buffer `out` and returns true, or returns
/// false (leaving `out` unspecified) when the token has nothing variable in it.
pub fn mask_token_into(tok: &str, out: &mut String) -> bool {
    let b = tok.as_bytes();
    // Fast path: letters only, plus punctuation that cannot start a variable.
    let mut suspicious = false;
    for &c in b {
        if c.is_ascii_digit() || c == b'/' || c == b'\\' || c >= 0x80 {
            suspicious = true;
            break;
        }
    }
    if !suspicious && !has_keyword(b) {
        return false;
    }
    if let Some(i) = find_scheme_sep(b) {
        // A URL: the scheme's text before it stays if it is a key (`url=http://…`).
        let start = tok[..i].rfind(|c: char| c.is_ascii() && is_segment_delim(c as u8) && c != ':');
        let keep = start.map_or(0, |s| s + 1);
        let end = trailing_punct_start(tok);
        out.push_str(&tok[..keep]);
        out.push_str(WILDCARD);
        out.push_str(&tok[end.max(i + 3)..]);
        return true;
    }
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        if is_segment_delim(b[i]) {
            out.push(b[i] as char);
            i += 1;
            continue;
        }
        let start = i;
        let (mut slash, mut backslash) = (false, false);
        while i < b.len() && !is_segment_delim(b[i]) {
            slash |= b[i] == b'/';
            backslash |= b[i] == b'\\';
            i += 1;
        }
        // Non-ASCII bytes are never delimiters, so `start..i` is on char boundaries.
        let seg = &tok[start..i];
        let sb = seg.as_bytes();
        let port = port_len(&b[i..]);
        if slash && is_address(sb) {
            // `host/1.2.3.4` or `host/1.2.3.4:port`: one network address.
            i += port.unwrap_or(0);
            push_variable(out);
            changed = true;
        } else if port.is_some() && host_like(sb) {
            // `host:port`.
            i += port.unwrap_or(0);
            push_variable(out);
            changed = true;
        } else if (slash || backslash) && segment_is_path(sb) {
            push_variable(out);
            changed = true;
        } else {
            changed |= mask_segment(seg, out);
        }
    }
    changed
}

fn has_keyword(b: &[u8]) -> bool {
    // Cheap pre-check: only tokens containing a boolean/null word need the slow path.
    if b.len() < 4 {
        return false;
    }
    (0..=b.len() - 4).any(|i| {
        let w = &b[i..i + 4];
        match b[i] | 0x20 {
            b't' => w.eq_ignore_ascii_case(b"true"),
            b'f' => i + 5 <= b.len() && b[i..i + 5].eq_ignore_ascii_case(b"false"),
            b'n' => w.eq_ignore_ascii_case(b"null"),
            _ => false,
        }
    })
}

fn trailing_punct_start(tok: &str) -> usize {
    tok.trim_end_matches(|c: char| {
        matches!(c, ',' | ';' | ')' | ']' | '}' | '"' | '\'' | '.' | '>')
    })
    .len()
}

/// Appends `seg` to `out` with its variable pieces replaced; returns whether anything was replaced.
fn mask_segment(seg: &str, out: &mut String) -> bool {
    let b = seg.as_bytes();
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        // A negative number: `-` at the start of a segment (after `:`, `=`, a space…).
        if i == 0 && b[0] == b'-' && b.len() > 1 && b[1].is_ascii_digit() {
            let end = piece_end(b, 1);
            push_variable(out);
            changed = true;
            i = end;
            continue;
        }
        if is_piece_delim(b[i]) {
            // Collapse `<*>.<*>` and `<*>-<*>`: an IP, a version, a date, a UUID is one value.
            let joins = matches!(b[i], b'.' | b'-');
            if joins && out.ends_with(WILDCARD) {
                let mut j = i;
                while j < b.len() && matches!(b[j], b'.' | b'-') {
                    j += 1;
                }
                let pend = piece_end(b, j);
                if j - i == 1 && pend > j && piece_is_variable(&b[j..pend]) {
                    i = pend;
                    changed = true;
                    continue;
                }
            }
            out.push(b[i] as char);
            i += 1;
            continue;
        }
        let mut end = piece_end(b, i);
        // `blk_-42`: an identifier whose number is negative is still one identifier.
        if b[end - 1] == b'_' && end + 1 < b.len() && b[end] == b'-' {
            end = piece_end(b, end + 1);
        }
        if piece_is_variable(&b[i..end]) {
            push_variable(out);
            changed = true;
        } else {
            out.push_str(&seg[i..end]);
        }
        i = end;
    }
    changed
}

fn piece_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !is_piece_delim(b[i]) {
        i += 1;
    }
    i
}

/// Appends `<*>` unless `out` already ends with one (adjacent variables are one value).
/// `push_wildcard` for masking: also folds `<*>:<*>` (`host:port`, `ip:port`) into one `<*>`,
/// as Loghub-2.0's template rules write an address.
fn push_variable(out: &mut String) {
    if out.ends_with("<*>:") {
        out.pop();
    } else {
        push_wildcard(out);
    }
}

/// Position of `://` in a token.
fn find_scheme_sep(b: &[u8]) -> Option<usize> {
    (0..b.len().saturating_sub(2)).find(|&i| b[i] == b':' && b[i + 1] == b'/' && b[i + 2] == b'/')
}

fn push_wildcard(out: &mut String) {
    if !out.ends_with(WILDCARD) {
        out.push_str(WILDCARD);
    }
}

/// Generalises two different masked forms of the same token position. Both are cut into slots
/// at segment delimiters (`=`, `:`, `,`, brackets, quotes…); if the delimiters agree, equal slots
/// stay and differing slots become `<*>` (so `rhost=1.2.3.4` and `rhost=example.org` give
/// `rhost=<*>`, and `()` and `(host)` give `(<*>)`). A differing slot is cut once more at `-`, `/`,
/// `+`, `#` to keep a constant prefix such as `MININT-<*>`; dotted names stay whole, because a
/// host or package name is one value. Tokens with different delimiters become `<*>`.
pub fn generalise_token(a: &str, b: &str) -> String {
    if a == b {
        return a.to_owned();
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

/// Splits a message into tokens at ASCII whitespace and `extra` delimiters, keeping a
/// double-quoted string that contains spaces in one token (`tag="View Lock",`), so that the
/// number of tokens does not depend on what a quoted value says.
pub fn split_tokens<'a>(content: &'a str, extra: &[char], out: &mut Vec<&'a str>) {
    let b = content.as_bytes();
    let is_delim = |c: char| c.is_ascii_whitespace() || extra.contains(&c);
    if extra.is_empty() && !b.contains(&b'"') {
        out.extend(content.split_ascii_whitespace());
        return;
    }
    let mut start: Option<usize> = None;
    let mut iter = content.char_indices();
    while let Some((i, c)) = iter.next() {
        let opens_quote =
            c == '"' && start.is_none_or(|_| matches!(b[i - 1], b'=' | b'(' | b'[' | b'{' | b':'));
        if opens_quote {
            let open = i;
            if let Some(close) = content[open + 1..].find('"') {
                let close = open + 1 + close;
                if start.is_none() {
                    start = Some(open);
                }
                // Skip to the closing quote; the token continues after it.
                for (j, _) in iter.by_ref() {
                    if j == close {
                        break;
                    }
                }
                continue;
            }
        }
        if is_delim(c) {
            if let Some(s) = start.take() {
                out.push(&content[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&content[s..]);
    }
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

/// Whether two different masked tokens disagree in constant text: some slot differs where neither
/// side is a variable (`startup`/`shutdown`, `(uid=<*>)`/`LOGIN(uid=<*>)`). Such a difference
/// only becomes `<*>` once the position has shown enough distinct constants.
pub fn constant_conflict(a: &str, b: &str) -> bool {
    conflicting_constants(a, b).is_some()
}

/// The constant texts that make two tokens conflict (see [`constant_conflict`]): the first
/// differing slot, or the leading words when the shapes differ. A position's distinct values
/// are counted on these, so `topActivity=ComponentInfo{A}` and `topActivity=…{B}` are one key.
pub fn conflicting_constants<'a>(a: &'a str, b: &'a str) -> Option<(&'a str, &'a str)> {
    if a == b {
        return None;
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

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

const MONTH_NAMES: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `Jul`, `July`, `Mon`, `Monday,` (ASCII, case-insensitive): `Some(true)` for a month,
/// `Some(false)` for a weekday.
fn calendar_word(t: &str) -> Option<bool> {
    let t = t.strip_suffix(',').unwrap_or(t).as_bytes();
    if t.len() < 3 || t.len() > 9 {
        return None;
    }
    let head = [t[0] | 0x20, t[1] | 0x20, t[2] | 0x20];
    let (is_month, i) = if let Some(i) = MONTHS.iter().position(|m| m.as_bytes() == head) {
        (true, i)
    } else if let Some(i) = WEEKDAYS.iter().position(|d| d.as_bytes() == head) {
        (false, i)
    } else {
        return None;
    };
    let full = if is_month {
        MONTH_NAMES[i]
    } else {
        DAY_NAMES[i]
    };
    (t.len() == 3 && t.iter().all(u8::is_ascii_alphabetic)
        || t.eq_ignore_ascii_case(full.as_bytes()))
    .then_some(is_month)
}

/// A masked token with no constant text left (`<*>`, `<*>:<*>:<*>`, `<*>,`).
fn all_variable(t: &str) -> bool {
    t.contains(WILDCARD)
        && t.replace(WILDCARD, "")
            .bytes()
            .all(|b| matches!(b, b':' | b'.' | b'-' | b'/' | b','))
}

/// Whether a raw token is a month name or a byte unit: decides cheaply whether a line needs
/// the collapsing passes at all.
fn may_collapse(t: &str) -> bool {
    let b = t.as_bytes();
    match b.first() {
        Some(b'B' | b'K' | b'M' | b'G' | b'T') if b.len() <= 4 => true,
        Some(c)
            if (3..=10).contains(&b.len())
                && matches!(
                    c | 0x20,
                    b'j' | b'f' | b'm' | b'a' | b's' | b'o' | b'n' | b'd'
                ) =>
        {
            calendar_word(t) == Some(true)
        }
        _ => false,
    }
}

/// One token of a prepared message: its masked text (a range of [`Prepared::buf`]), its raw
/// text (a range of the message) and the hash of the masked text.
#[derive(Clone, Copy, Debug)]
pub struct PTok {
    pub masked: (u32, u32),
    pub raw: (u32, u32),
    pub hash: u64,
}

/// Messages tokenised and masked, packed in one buffer so that preparing a block of messages
/// allocates a handful of times, not once per token. Reused across calls.
#[derive(Default, Debug, Clone)]
pub struct Prepared {
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
        for &(a, b) in &spans {
            let suspicious = a & SUSPICIOUS != 0;
            let a = a & !SUSPICIOUS;
            let raw = &content[a as usize..b as usize];
            collapse |= may_collapse(raw);
            let start = self.buf.len() as u32;
            self.scratch.clear();
            if suspicious && mask_token_into(raw, &mut self.scratch) {
                self.buf.push_str(&self.scratch);
            } else {
                self.buf.push_str(raw);
            }
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
            hash: tok_hash(text.as_bytes()),
        }
    }

    /// The multi-token values: a byte size (`16.0 KB`) and a written-out date
    /// (`Sun Jul 24 02:38:22 2005`) become one `<*>` token each.
    fn collapse(&mut self, content: &str, first: usize) {
        // Byte sizes: a number followed by its unit; punctuation after the unit stays.
        let mut k = first;
        while k + 1 < self.toks.len() {
            let (a, b) = (self.toks[k], self.toks[k + 1]);
            let unit_raw = &content[b.raw.0 as usize..b.raw.1 as usize];
            let unit = unit_raw.trim_end_matches([',', ';', ')', ']', '.']);
            if self.text(&a) == WILDCARD && BYTE_UNITS.contains(&unit) {
                let text = format!("{WILDCARD}{}", &unit_raw[unit.len()..]);
                let t = self.synth(&text, (a.raw.0, b.raw.1));
                self.toks.splice(k..k + 2, [t]);
            }
            k += 1;
        }
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

/// Flag set in a span's start by [`scan_tokens`]: the token may hold a variable (a digit, a
/// slash, non-ASCII, a quote, or a piece spelling `true`/`false`/`null`). Offsets stay below it
/// because every message is capped at [`crate::telemetry::MAX_LOG_BODY_BYTES`] first.
const SUSPICIOUS: u32 = 1 << 31;
const _: () = assert!(crate::telemetry::MAX_LOG_BODY_BYTES < SUSPICIOUS as usize);

const C_SUSPICIOUS: u8 = 1;
const C_PIECE: u8 = 2;
const C_SPACE: u8 = 4;
const C_QUOTE: u8 = 8;
const C_SEGMENT: u8 = 16;

#[inline]
fn is_segment_delim(b: u8) -> bool {
    CLASS[b as usize] & C_SEGMENT != 0
}

#[inline]
fn is_piece_delim(b: u8) -> bool {
    CLASS[b as usize] & C_PIECE != 0
}

/// Byte classes for the tokeniser; letters are 0, so the common byte costs one load and one
/// branch.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_digit() || b == b'/' || b == b'\\' || b >= 0x80 {
            t[c] |= C_SUSPICIOUS;
        }
        if piece_delim_const(b) {
            t[c] |= C_PIECE;
        }
        if segment_delim_const(b) {
            t[c] |= C_SEGMENT;
        }
        if b.is_ascii_whitespace() {
            t[c] |= C_SPACE;
        }
        if b == b'"' {
            t[c] |= C_QUOTE;
        }
        c += 1;
    }
    t
};

fn is_keyword_piece(p: &[u8]) -> bool {
    match p.len() {
        4 => p.eq_ignore_ascii_case(b"true") || p.eq_ignore_ascii_case(b"null"),
        5 => p.eq_ignore_ascii_case(b"false"),
        _ => false,
    }
}

/// Splits at ASCII whitespace (keeping quoted strings whole, as [`split_tokens`]) and marks
/// suspicious tokens with [`SUSPICIOUS`] in the start offset, in a single pass over the bytes.
fn scan_tokens(b: &[u8], out: &mut Vec<(u32, u32)>) {
    let n = b.len();
    let mut i = 0;
    loop {
        while i < n && CLASS[b[i] as usize] & C_SPACE != 0 {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i;
        let mut suspicious = false;
        let mut piece = i;
        while i < n {
            let cls = CLASS[b[i] as usize];
            if cls == 0 {
                i += 1;
                continue;
            }
            if cls & C_SPACE != 0 {
                break;
            }
            if cls & C_QUOTE != 0
                && (i == start || matches!(b[i - 1], b'=' | b'(' | b'[' | b'{' | b':'))
            {
                if let Some(off) = b[i + 1..].iter().position(|&x| x == b'"') {
                    i += off + 2;
                    suspicious = true;
                    piece = i;
                    continue;
                }
            }
            suspicious |= cls & C_SUSPICIOUS != 0;
            if cls & C_PIECE != 0 {
                suspicious |= is_keyword_piece(&b[piece..i]);
                piece = i + 1;
            }
            i += 1;
        }
        suspicious |= is_keyword_piece(&b[piece..i]);
        let flag = if suspicious { SUSPICIOUS } else { 0 };
        out.push((start as u32 | flag, i as u32));
    }
}

/// Token boundaries (byte ranges of `content`), split as [`split_tokens`] does.
pub fn split_token_spans(content: &str, extra: &[char], out: &mut Vec<(u32, u32)>) {
    let b = content.as_bytes();
    if extra.is_empty() && !b.contains(&b'"') {
        let mut start: Option<usize> = None;
        for (i, &c) in b.iter().enumerate() {
            if c.is_ascii_whitespace() {
                if let Some(s) = start.take() {
                    out.push((s as u32, i as u32));
                }
            } else if start.is_none() {
                start = Some(i);
            }
        }
        if let Some(s) = start {
            out.push((s as u32, b.len() as u32));
        }
        return;
    }
    let mut v = Vec::new();
    split_tokens(content, extra, &mut v);
    let base = content.as_ptr() as usize;
    out.extend(v.iter().map(|t| {
        let s = t.as_ptr() as usize - base;
        (s as u32, (s + t.len()) as u32)
    }));
}

/// Hash of a token's masked text, for comparing tokens without comparing strings: eight bytes
/// at a time (FxHash's mixing). Internal only; template ids use FNV-1a of the whole text.
pub const fn tok_hash(b: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = b.len() as u64;
    let mut i = 0;
    while i + 8 <= b.len() {
        let w = u64::from_le_bytes([
            b[i],
            b[i + 1],
            b[i + 2],
            b[i + 3],
            b[i + 4],
            b[i + 5],
            b[i + 6],
            b[i + 7],
        ]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        i += 8;
    }
    if i < b.len() {
        let mut w: u64 = 0;
        let mut s = 0;
        while i < b.len() {
            w |= (b[i] as u64) << s;
            s += 8;
            i += 1;
        }
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

const BYTE_UNITS: [&str; 9] = ["B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"];

/// Extracts the values that the `<*>` of a template token stand for in a raw token: each literal
/// run of the template must occur in order; what lies between is a parameter. When the raw token
/// does not fit (it cannot happen for tokens this module masked), the whole token is the value.
pub fn extract_params(template_tok: &str, raw: &str, out: &mut Vec<String>) {
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
            } else {
                None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_by_shape() {
        let cases = [
            ("blk_-6952295868487656571", "<*>"),
            ("10.251.43.21:50010", "<*>"),
            ("/10.10.34.11:45307", "<*>"),
            ("msra-sa-41:9000.", "<*>."),
            ("MININT-FNANLI5/10.86.169.121:53419", "<*>"),
            ("timeout:3000", "timeout:<*>"),
            ("[ib_sm_sweep.c:1112]:", "[ib_sm_sweep.c:<*>]:"),
            ("node-246", "node-<*>"),
            ("core.114", "core.<*>"),
            ("0x00e462c0,", "<*>,"),
            ("001064fc", "<*>"),
            ("eth0", "eth0"),
            ("vCores:-1>", "vCores:<*>>"),
            ("uid=0", "uid=<*>"),
            ("allDrawn=false,", "allDrawn=<*>,"),
            ("/usr/lib/x", "<*>"),
            ("http://example.com/a?b=1", "<*>"),
            ("00000001@2016/9/27:20:30:31.455", "<*>@<*>/<*>/<*>"),
            ("v6.1.7601.23505", "<*>"),
            ("Registered", "Registered"),
            (
                "i-fetch......................0",
                "i-fetch......................<*>",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(mask_token(input), want, "input {input}");
        }
    }

    fn prepared(content: &str) -> (Vec<String>, Vec<String>) {
        let mut p = Prepared::default();
        p.push(content, &[]);
        let masked = p.line(0).iter().map(|t| p.text(t).to_owned()).collect();
        let raw = p
            .line(0)
            .iter()
            .map(|t| content[t.raw.0 as usize..t.raw.1 as usize].to_owned())
            .collect();
        (masked, raw)
    }

    #[test]
    fn collapses_dates_and_sizes() {
        let (masked, raw) = prepared("connection from 1.2.3.4 () at Sun Jul 24 02:38:22 2005");
        assert_eq!(
            raw.last().map(String::as_str),
            Some("Sun Jul 24 02:38:22 2005")
        );
        assert_eq!(masked.join(" "), "connection from <*> () at <*>");
        let (masked, _) = prepared("May I help");
        assert_eq!(masked.len(), 3);
        let (masked, raw) = prepared("estimated size 16.0 B, free 413.9 KB)");
        assert_eq!(masked.join(" "), "estimated size <*>, free <*>)");
        assert_eq!(raw, ["estimated", "size", "16.0 B,", "free", "413.9 KB)"]);
    }

    #[test]
    fn keeps_quoted_strings_whole() {
        let mut v = Vec::new();
        split_tokens(r#"acquire tag="View Lock", name=x "a b" c"#, &[], &mut v);
        assert_eq!(
            v,
            ["acquire", r#"tag="View Lock","#, "name=x", r#""a b""#, "c"]
        );
        v.clear();
        split_tokens(r#"say "unclosed quote"#, &['|'], &mut v);
        assert_eq!(v, ["say", "\"unclosed", "quote"]);
        v.clear();
        split_tokens("a|b  c", &['|'], &mut v);
        assert_eq!(v, ["a", "b", "c"]);
    }

    #[test]
    fn covers_by_glob() {
        assert!(covers("rhost=<*>", "rhost=example.org"));
        assert!(covers("rhost=<*>", "rhost="));
        assert!(covers("<*>", "anything"));
        assert!(covers("a<*>b<*>c", "aXbYc"));
        assert!(!covers("a<*>b<*>c", "aXc"));
        assert!(!covers("node-<*>", "host-1"));
        assert!(covers("plain", "plain") && !covers("plain", "other"));
    }

    #[test]
    fn generalises_piecewise() {
        assert_eq!(generalise_token("node-<*>", "node-<*>"), "node-<*>");
        assert_eq!(generalise_token("MININT-ABC", "MININT-XYZ"), "MININT-<*>");
        assert_eq!(generalise_token("root", "guest"), "<*>");
        assert_eq!(generalise_token("a.b", "a.b.c"), "<*>");
        assert_eq!(
            generalise_token("rhost=1.2.3.4", "rhost=example.org"),
            "rhost=1.2.3.4".replace("1.2.3.4", "<*>")
        );
        assert_eq!(generalise_token("()", "(host)"), "(<*>)");
        assert_eq!(generalise_token("LOCAL(<*>),", "<*>,"), "<*>,");
        assert_eq!(generalise_token("(a:b)", "(c)"), "(<*>)");
        assert_eq!(
            generalise_token("ws=<*>,", "ws=WorkSource{<*>},"),
            "ws=<*>,"
        );
        assert!(constant_conflict(
            "num=<*>,flags=<*>",
            "topActivity=ComponentInfo{<*>}"
        ));
        assert!(!constant_conflict("ws=<*>,", "ws=WorkSource{<*>},"));
        assert_eq!(generalise_token("com.a.b", "com.c.d"), "<*>");
    }

    #[test]
    fn extracts_params() {
        let mut v = Vec::new();
        extract_params("<*>:<*>", "10.0.0.1:80", &mut v);
        extract_params("node-<*>", "node-7", &mut v);
        extract_params("<*>", "x y", &mut v);
        assert_eq!(v, ["10.0.0.1", "80", "7", "x y"]);
    }
}
