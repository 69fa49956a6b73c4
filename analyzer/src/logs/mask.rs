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
//!   message's token count does not depend on what the quoted value says;
//! - a quantity restated in parentheses right after a value (`1190 bytes (1.16 KB)`,
//!   `dear 0x1feaa260 (35591540)`) is the same variable written a second time, and lines that
//!   leave it out (`0 bytes`) are the same event: it joins the value's token and leaves the
//!   template, so one variable written in two shapes does not split a template by token count.
//!
//! One variable, one token, whatever shape it took (issue 14): a template's token count must not
//! depend on how a value was written this time.
//! - a number and its unit from a closed list (byte sizes, SI and customary time units, bits,
//!   rates, frequencies, `%`; see `template::is_unit_name`) are one token, written apart or glued
//!   (`5 ms`, `5ms`, `time=5 ms`); a byte size reads `<*>`, other units stay visible (`<*> ms`),
//!   and values in different units or shapes never conflict;
//! - a sign or bound belongs to its number (`+12`, `~3`, `-1`, `<1`, `>=5`, `< 1 sec`), unless
//!   it stands between two values (`1234 > 999`); a duration in parts (`2h 3m 4s`) or on a clock
//!   (`00:02`, `1:02:03`) is one value; thousands separators (`1,234,567`) are one number;
//! - a key's missing value is the variable (`size=unknown`, `user=-`, `peer: N/A`); after a
//!   `key:` token only marks that cannot be prose (`-`, `--`, `N/A`) count, since `eth1: unknown
//!   lease` is text.
//!
//! Paths: a file path stays one `<*>` (the labels of the ten bundled systems write one so; keeping
//! the constant segments of every path costs HDFS 0.19 and BGL 0.02 GA, as file names vary in
//! depth and name). A *request target* after an HTTP method (RFC 9110's closed list) is an
//! endpoint: its segments are masked one by one (a segment with a digit is an identifier, an API
//! version such as `v2` is a name, a last segment `name.ext` is a file), so
//! `GET /v2/<*>/servers/detail` and `GET /v2/<*>/os-events` are two templates; a route with no
//! name left is one `<*>`. The miner never merges two endpoints (`template::route_conflict`).

//!
//! The tokenizers these rules run on are in [`super::tokenize`]; generalising, matching and
//! parameter extraction of template tokens, and the prepared (tokenized and masked) form of a
//! line, are in [`super::template`].

use std::borrow::Cow;

use super::tokenize::*;

/// The variable marker in template text.
pub const WILDCARD: &str = "<*>";

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
pub(crate) fn mask_token_into(tok: &str, out: &mut String) -> bool {
    let b = tok.as_bytes();
    // Fast path: letters only, plus punctuation that cannot start a variable.
    let mut suspicious = false;
    for &c in b {
        if c.is_ascii_digit() || c == b'/' || c == b'\\' || c >= 0x80 {
            suspicious = true;
            break;
        }
    }
    if !suspicious && !has_keyword(b) && !has_null_value(b) {
        return false;
    }
    if let Some(at) = quoted_request_target(tok) {
        // `"GET /v2/42/servers HTTP/1.1"` kept whole by the tokenizer: the route, then the rest.
        let end = at + route_len(&tok[at..]);
        out.push_str(&tok[..at]);
        mask_route_into(&tok[at..end], out);
        let mut rest = String::new();
        if mask_token_into(&tok[end..], &mut rest) {
            out.push_str(&rest);
        } else {
            out.push_str(&tok[end..]);
        }
        return true;
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
        if let Some(n) = comparator_len(b, i) {
            // `<1`, `>=5`: a bound is the value written another way; the number that follows
            // becomes `<*>` and takes the comparator with it.
            i += n;
            continue;
        }
        if b[i] == b',' && out.ends_with(WILDCARD) && thousands_group(b, i) {
            // `1,234,567`: one number, written as `999` is.
            i += 4;
            continue;
        }
        if is_segment_delim(b[i]) {
            out.push(b[i] as char);
            i += 1;
            continue;
        }
        if let Some(n) = fixed_id_len(b, i) {
            // A UUID or a MAC address: one value, whatever letters its groups start with.
            push_variable(out);
            changed = true;
            i += n;
            continue;
        }
        if let Some(n) = null_value_len(b, i) {
            // `size=unknown`, `user=-`: a key whose value is missing stays the same variable.
            push_variable(out);
            changed = true;
            i += n;
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

/// Whether the `,` at `i` separates thousands: one to three digits before it (after the start
/// or punctuation), exactly three after it and then no more digits or letters.
fn thousands_group(b: &[u8], i: usize) -> bool {
    let before = b[..i]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let lead_ok =
        i == before || !b[i - before - 1].is_ascii_alphanumeric() && b[i - before - 1] != b'.';
    (1..=3).contains(&before)
        && lead_ok
        && b.len() >= i + 4
        && b[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        && b.get(i + 4)
            .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'.')
}

/// Length of a UUID (8-4-4-4-12 hex digits, RFC 9562) or a MAC address (six pairs of hex
/// digits joined by `:` or `-`, IEEE 802) at `i`, standing alone: after the start or a
/// delimiter, and before the end or a delimiter. Their groups need not hold a digit, so the piece
/// rule would keep some (`c4e3`, `ba`) and the same kind of value would take many shapes.
fn fixed_id_len(b: &[u8], i: usize) -> Option<usize> {
    if b.len() < i + 17 || !b[i].is_ascii_hexdigit() {
        return None;
    }
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || matches!(b[i - 1], b'-' | b':')) {
        return None;
    }
    let fits = |groups: &[usize], seps: &[u8]| -> Option<usize> {
        let mut j = i;
        let mut sep = None;
        for (g, &len) in groups.iter().enumerate() {
            if g > 0 {
                let c = *b.get(j)?;
                if !seps.contains(&c) || sep.is_some_and(|s| s != c) {
                    return None;
                }
                sep = Some(c);
                j += 1;
            }
            if b.len() < j + len || !b[j..j + len].iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            j += len;
        }
        let ends = b
            .get(j)
            .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'-' && *c != b':');
        ends.then_some(j - i)
    };
    fits(&[8, 4, 4, 4, 12], b"-").or_else(|| fits(&[2, 2, 2, 2, 2, 2], b":-"))
}

/// The request methods of HTTP (RFC 9110, and `PATCH` from RFC 5789): the token after one is a
/// request target, which names an endpoint.
pub(super) fn is_http_method(w: &str) -> bool {
    matches!(
        w,
        "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS" | "CONNECT" | "TRACE"
    )
}

/// Leading punctuation that may open a request line (`"GET`, `[POST`).
pub(super) fn strip_openers(t: &str) -> &str {
    t.trim_start_matches(['"', '\'', '[', '('])
}

/// Whether a raw token is a request target: an absolute path or a URL.
pub(super) fn is_request_target(t: &str) -> bool {
    let b = t.as_bytes();
    (b.len() > 1 && b[0] == b'/' && b[1] != b'/') || find_scheme_sep(b).is_some_and(|i| i > 0)
}

/// Where the request target starts in one token holding a whole quoted request line
/// (`"GET /a/b HTTP/1.1"`), if it is one.
fn quoted_request_target(tok: &str) -> Option<usize> {
    let body = strip_openers(tok);
    let lead = tok.len() - body.len();
    if lead == 0 {
        return None;
    }
    let sp = body.find(' ')?;
    (is_http_method(&body[..sp]) && is_request_target(&body[sp + 1..])).then_some(lead + sp + 1)
}

/// Length of the request target at the start of `s`: up to whitespace, a quote, or closing
/// punctuation at the end.
pub(super) fn route_len(s: &str) -> usize {
    let end = s
        .find(|c: char| c.is_ascii_whitespace() || c == '"' || c == '\'')
        .unwrap_or(s.len());
    s[..end].trim_end_matches([',', ';', ')', ']', '.']).len()
}

/// Whether a segment of a route is an identifier, not the name of a resource: it holds a digit
/// (ids, hashes, UUIDs; an API version such as `v2` is a name), is a shape-masked word (`true`), or, last, is a
/// file name with an extension (`app.js`: a static file is a value).
fn route_segment_is_id(seg: &str, last: bool) -> bool {
    let b = seg.as_bytes();
    if is_api_version(b) {
        return false;
    }
    if b.iter().any(|c| c.is_ascii_digit() || *c >= 0x80) || piece_is_variable(b) {
        return true;
    }
    last && seg.rsplit_once('.').is_some_and(|(name, ext)| {
        !name.is_empty()
            && (1..=5).contains(&ext.len())
            && ext.bytes().all(|c| c.is_ascii_alphanumeric())
    })
}

/// An API version in a route (`v2`, `V1.1`): part of the endpoint's name, the same in every
/// request to it.
fn is_api_version(b: &[u8]) -> bool {
    b.len() > 1
        && matches!(b[0], b'v' | b'V')
        && b[1].is_ascii_digit()
        && b[1..].iter().all(|c| c.is_ascii_digit() || *c == b'.')
}

/// Masks a request target after an HTTP method segment by segment: identifiers become `<*>`,
/// resource names stay, so `GET /v2/<*>/servers/detail` and `GET /v2/<*>/os-events` are two
/// endpoints; a query string is `?<*>`, a URL's scheme stays and its host is `<*>`. A route with
/// no resource name left (`/<*>/<*>`) is one `<*>`, as any other path.
pub(super) fn mask_route_into(route: &str, out: &mut String) {
    let (path, query) = match route.find('?') {
        Some(q) => (&route[..q], true),
        None => (route, false),
    };
    let mut body = String::with_capacity(route.len());
    let mut rest = path;
    if let Some(i) = find_scheme_sep(path.as_bytes()) {
        body.push_str(&path[..i + 3]);
        body.push_str(WILDCARD);
        let after = &path[i + 3..];
        rest = &after[after.find('/').unwrap_or(after.len())..];
    }
    let mut named = false;
    let segs = rest.split('/').count();
    for (j, seg) in rest.split('/').enumerate() {
        if j > 0 {
            body.push('/');
        }
        if seg.is_empty() {
            continue;
        }
        if route_segment_is_id(seg, j + 1 == segs) {
            body.push_str(WILDCARD);
        } else {
            body.push_str(seg);
            named = true;
        }
    }
    if !named {
        push_wildcard(out);
        return;
    }
    out.push_str(&body);
    if query {
        out.push_str("?<*>");
    }
}

/// Length of a comparator (`<`, `>`, `<=`, `>=`) at `i` that bounds the number right after it,
/// when it starts a value: at the start of the token or after `=`, `:`, `(`, `[`, `,`.
fn comparator_len(b: &[u8], i: usize) -> Option<usize> {
    if !matches!(b[i], b'<' | b'>')
        || (i > 0 && !matches!(b[i - 1], b'=' | b':' | b'(' | b'[' | b','))
    {
        return None;
    }
    let n = if b.get(i + 1) == Some(&b'=') { 2 } else { 1 };
    // `<1234@host>` opens a bracket: a `>` later in the token closes it.
    let bracket = b[i] == b'<' && b[i + n..].contains(&b'>');
    (!bracket && b.get(i + n).is_some_and(u8::is_ascii_digit)).then_some(n)
}

/// Words that stand for a missing value (closed list): where a key's value is usually a number
/// or a name, these are the same variable saying "none". Matched case-insensitively.
const NULL_WORDS: [&[u8]; 8] = [
    b"-",
    b"--",
    b"n/a",
    b"none",
    b"unknown",
    b"nil",
    b"nan",
    b"undefined",
];

/// Whether `w` (a whole value, trailing punctuation removed) is one of [`NULL_WORDS`].
pub(super) fn is_null_word(w: &[u8]) -> bool {
    NULL_WORDS.iter().any(|n| w.eq_ignore_ascii_case(n))
}

/// A missing-value mark that cannot be prose (`-`, `--`, `N/A`): after a `key:` token the next
/// word is as often text (`eth1: unknown lease`) as a value, a dash or `N/A` only a value.
pub(super) fn is_null_mark(w: &[u8]) -> bool {
    NULL_WORDS[..3].iter().any(|n| w.eq_ignore_ascii_case(n))
}

/// Length of a missing-value word at `i` that is a key's value: right after `=` or `:`, and
/// followed by the end of the token or a segment delimiter.
fn null_value_len(b: &[u8], i: usize) -> Option<usize> {
    if i == 0 || !matches!(b[i - 1], b'=' | b':') {
        return None;
    }
    let end = (i..b.len())
        .find(|&j| is_segment_delim(b[j]) && b[j] != b'-')
        .unwrap_or(b.len());
    is_null_word(&b[i..end]).then_some(end - i)
}

/// Cheap pre-check for [`null_value_len`]: `=` or `:` followed by the first letter of a
/// missing-value word.
pub(super) fn has_null_value(b: &[u8]) -> bool {
    b.windows(2)
        .any(|w| matches!(w[0], b'=' | b':') && matches!(w[1] | 0x20, b'-' | b'n' | b'u'))
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
        // A signed or approximate number: `-1`, `+12`, `~3` at the start of a segment (after
        // `:`, `=`, a space…). The sign is part of the value: `+12` and `12` are one shape.
        if i == 0 && matches!(b[0], b'-' | b'+' | b'~') && b.len() > 1 && b[1].is_ascii_digit() {
            let end = piece_end(b, 1);
            push_variable(out);
            changed = true;
            i = end;
            continue;
        }
        if is_piece_delim(b[i]) {
            // Collapse `<*>.<*>` and `<*>-<*>`: an IP, a version, a date, a UUID is one value.
            // `1.2e+06`: an exponent's sign joins too.
            let exponent =
                b[i] == b'+' && i > 1 && b[i - 1] | 0x20 == b'e' && b[i - 2].is_ascii_digit();
            let joins = matches!(b[i], b'.' | b'-') || exponent;
            if joins && out.ends_with(WILDCARD) {
                let mut j = i;
                while j < b.len() && (matches!(b[j], b'.' | b'-') || j == i) {
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

pub(super) fn push_wildcard(out: &mut String) {
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
pub(super) fn calendar_word(t: &str) -> Option<bool> {
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
pub(super) fn all_variable(t: &str) -> bool {
    // Without allocating: the bucket of every line asks this of its first token.
    let b = t.as_bytes();
    let (mut i, mut any) = (0, false);
    while i < b.len() {
        if b[i..].starts_with(WILDCARD.as_bytes()) {
            any = true;
            i += WILDCARD.len();
        } else if matches!(b[i], b':' | b'.' | b'-' | b'/' | b',') {
            i += 1;
        } else {
            return false;
        }
    }
    any
}

/// Whether a raw token is a month name or a byte unit: decides cheaply whether a line needs
/// the collapsing passes at all.
pub(super) fn may_collapse(t: &str) -> bool {
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
#[cfg(test)]
mod tests {
    use super::super::template::*;
    use super::super::tokenize::*;
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
            // Signs and bounds belong to the number.
            ("+12", "<*>"),
            ("~3,", "<*>,"),
            ("<1", "<*>"),
            ("wait>=250", "wait>=<*>"),
            ("wait=>=250", "wait=<*>"),
            ("limit=<100", "limit=<*>"),
            ("(>5)", "(<*>)"),
            ("id=<4711@mail.example>", "id=<<*>@mail.example>"),
            ("a<b", "a<b"),
            // UUIDs and MAC addresses, whatever their groups start with.
            ("54fadb41-cc4e-4acd-baed-ea35c35a9e01", "<*>"),
            (
                "[instance: c4e3da0b-abcd-ef01-2345-6789abcdef01]",
                "[instance: <*>]",
            ),
            ("hw=ab:cd:ef:01:23:45,", "hw=<*>,"),
            ("00-1A-2b-3C-4d-5E", "<*>"),
            ("ab:cd:ef:01:23:45:67", "ab:cd:ef:<*>"),
            ("deadbeef-dead", "deadbeef-dead"),
            // Thousands separators: one number.
            ("1,234,567", "<*>"),
            ("1.2e+06,", "<*>,"),
            ("5E-3", "<*>"),
            ("size+12", "size+<*>"),
            ("(12,480)", "(<*>)"),
            ("1,23", "<*>,<*>"),
            ("a1,234", "a1,<*>"),
            // A key whose value is missing.
            ("size=unknown,", "size=<*>,"),
            ("user=-", "user=<*>"),
            ("peer:N/A", "peer:<*>"),
            ("mode=nonempty", "mode=nonempty"),
            ("user=-x", "user=-x"),
            ("unknown", "unknown"),
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
    fn absorbs_a_quantity_restated_in_parentheses() {
        // The restatement joins the value before it (here the value with its unit `bytes`), so
        // the line with it and the line without it have the same masked tokens.
        let (with, raw) = prepared("sent 1190 bytes (1.16 KB) to peer");
        let (without, _) = prepared("sent 0 bytes to peer");
        assert_eq!(with.join(" "), "sent <*> bytes to peer");
        assert_eq!(with, without);
        assert_eq!(raw[1], "1190 bytes (1.16 KB)");
        // Behind a word that is not a unit, too.
        let (with, raw) = prepared("sent 1190 frames (1.16 KB) to peer");
        assert_eq!(with.join(" "), "sent <*> frames to peer");
        assert_eq!(raw[2], "frames (1.16 KB)");
        // One token, a percentage, and punctuation after the parenthesis.
        let (a, _) = prepared("used 310 (75%), free 100");
        let (b, _) = prepared("used 310, free 100");
        assert_eq!(a, b);
        let (a, _) = prepared("waited 5000 ms (5 s) for lock");
        assert_eq!(a.join(" "), "waited <*> ms for lock");
        // Not after a value: a parenthesised reading that is the event's only number stays.
        let (t, _) = prepared("Temperature (45C) exceeds threshold");
        assert_eq!(t.join(" "), "Temperature (<*>) exceeds threshold");
        // Not a quantity: an address or a name in parentheses after an address stays.
        let (c, _) = prepared("connection from 10.0.0.1 (10.0.0.1) at noon");
        assert_eq!(c.join(" "), "connection from <*> (<*>) at noon");
        let (c, _) = prepared("retry 3 (3 attempts left) now");
        assert_eq!(c.len(), 6);
    }

    #[test]
    fn one_variable_has_one_token_count_whatever_its_shape() {
        // A number with a unit written apart or glued, a bound, a clock duration, a unit word:
        // each is one token, and the unit stays visible in the template.
        let shapes = [
            ("request took 5 ms", "<*> ms"),
            ("request took 5ms", "<*>"),
            ("request took 1.25 seconds", "<*> seconds"),
            ("request took <1 sec", "<*> sec"),
            ("request took 00:02", "<*>"),
            ("request took 1:02:03", "<*>"),
            ("request took 2h3m", "<*>"),
            ("request took ~3 s", "<*> s"),
            ("request took < 1 sec", "<*> sec"),
            ("request took 2h 3m 4s", "<*>"),
            ("request took 1m 30.5s", "<*>"),
        ];
        for (line, value) in shapes {
            let (masked, _) = prepared(line);
            assert_eq!(masked, ["request", "took", value], "line {line}");
        }
        let (masked, raw) = prepared("cpu at 75 %, disk at 12%, link 100 Mbps.");
        assert_eq!(
            masked,
            [
                "cpu",
                "at",
                "<*> %,",
                "disk",
                "at",
                "<*>%,",
                "link",
                "<*> Mbps."
            ]
        );
        assert_eq!(raw[2], "75 %,");
        // A byte size is one `<*>`, as before; a word that is not a unit stays a token.
        let (masked, _) = prepared("wrote 16 KB in 3 blocks");
        assert_eq!(masked, ["wrote", "<*>", "in", "<*>", "blocks"]);
        // After a key or an opening bracket, too; the key stays.
        let (a, _) = prepared("flush time=12 ms, queue (3 KB) wait 2,500 ms");
        assert_eq!(
            a,
            ["flush", "time=<*> ms,", "queue", "(<*>)", "wait", "<*> ms"]
        );
        let (b, _) = prepared("flush time=12ms, queue (3072) wait 2500ms");
        assert_eq!(b, ["flush", "time=<*>,", "queue", "(<*>)", "wait", "<*>"]);
        let (a, _) = prepared("idle=2h 3m, took 4m 5s");
        assert_eq!(a, ["idle=<*>,", "took", "<*>"]);
        // A date and a time of day are one timestamp, as in ISO 8601's one-token form.
        let (a, _) = prepared("at 2016-09-28 04:30:30,123 ok");
        let (b, _) = prepared("at 2016-09-28T04:30:30.123Z ok");
        let (c, _) = prepared("at 28/09/2016 04:30, ok");
        assert_eq!(a, ["at", "<*>", "ok"]);
        assert_eq!(a, b);
        assert_eq!(c, ["at", "<*>,", "ok"]);
        let (d, _) = prepared("version 1.2.3 12:30 ok");
        assert_eq!(d.len(), 4);
        // Two numbers are two values; a duration's parts after a comma are not joined.
        let (a, _) = prepared("moved 3 to 4s ago");
        assert_eq!(a, ["moved", "<*>", "to", "<*>", "ago"]);
        let (a, _) = prepared("took 2h, 3m left");
        assert_eq!(a, ["took", "<*>,", "<*>", "left"]);
        let (a, _) = prepared("x < y by 2");
        assert_eq!(a.len(), 5);
        let (a, _) = prepared("image too big, 1234 > 999");
        assert_eq!(a, ["image", "too", "big,", "<*>", ">", "<*>"]);
        // A unit word without a number before it is text.
        let (masked, _) = prepared("timeout in seconds is 5");
        assert_eq!(masked.len(), 5);
    }

    #[test]
    fn a_missing_value_after_a_key_is_the_variable() {
        let (a, _) = prepared("peer: - state: up");
        let (b, _) = prepared("peer: 10.0.0.7 state: up");
        let (c, _) = prepared("peer: N/A, state: up");
        assert_eq!(a, b);
        assert_eq!(a.join(" "), "peer: <*> state: up");
        assert_eq!(c.join(" "), "peer: <*>, state: up");
        // After a key, a word that may be prose stays.
        let (d, _) = prepared("eth1: unknown lease 10.0.0.7");
        assert_eq!(d.join(" "), "eth1: unknown lease <*>");
        // A dash between words is punctuation, not a value.
        let (e, _) = prepared("worker 3 - exited");
        assert_eq!(e.join(" "), "worker <*> - exited");
    }

    #[test]
    fn a_route_after_an_http_method_keeps_its_names() {
        let (a, raw) = prepared("GET /v2/9f0c2e1ab47d/servers/detail HTTP/1.1 status: 200");
        assert_eq!(a[1], "/v2/<*>/servers/detail");
        assert_eq!(raw[1], "/v2/9f0c2e1ab47d/servers/detail");
        let (b, _) = prepared("GET /v2/77aa01/os-events HTTP/1.1 status: 200");
        assert_eq!(b[1], "/v2/<*>/os-events");
        // Ids, a file name, a query, a URL's host; punctuation after the route stays.
        let (c, _) = prepared("POST /api/users/5521/avatar/me.png?size=2 done");
        assert_eq!(c[1], "/api/users/<*>/avatar/<*>?<*>");
        let (d, _) = prepared("PUT http://10.0.0.7:8080/store/items/a7-3, ok");
        assert_eq!(d[1], "http://<*>/store/items/<*>,");
        // A route of identifiers only is one value, as any path.
        let (e, _) = prepared("DELETE /1234/abcd5678 now");
        assert_eq!(e[1], "<*>");
        // A whole quoted request line, kept as one token by the tokenizer.
        let (f, _) = prepared(r#"from 10.1.1.1 "GET /v1.1/7f3e/flavors?limit=5 HTTP/1.1" 200"#);
        assert_eq!(f[2], r#""GET /v1.1/<*>/flavors?<*> HTTP/<*>""#);
        // Without a method, a path is one variable (a file name, as the labels write one).
        let (g, _) = prepared("reading /var/lib/app/state.db");
        assert_eq!(g[1], "<*>");
        let (h, _) = prepared("GETTING /var/lib/app/state.db");
        assert_eq!(h[1], "<*>");
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
