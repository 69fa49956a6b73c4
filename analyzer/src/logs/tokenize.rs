//! Tokenizers and byte classes: how a message is cut into tokens (at whitespace, optional extra
//! delimiters, keeping a double-quoted string with spaces whole), and how a token is cut into
//! segments and pieces for masking. Three entry points share the same rules: [`split_tokens`]
//! (slices), [`split_token_spans`] (byte ranges) and the single-pass scanner behind
//! [`super::template::Prepared`], which also flags tokens that may hold a variable; plus
//! [`tok_hash`], the cheap hash prepared tokens are compared by.

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

/// Splits a message into tokens at ASCII whitespace and `extra` delimiters, keeping a
/// double-quoted string that contains spaces in one token (`tag="View Lock",`), so that the
/// number of tokens does not depend on what a quoted value says.
pub(crate) fn split_tokens<'a>(content: &'a str, extra: &[char], out: &mut Vec<&'a str>) {
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
/// Flag set in a span's start by [`scan_tokens`]: the token may hold a variable (a digit, a
/// slash, non-ASCII, a quote, a piece spelling `true`/`false`/`null`, or `=`/`:` before what may
/// be a missing-value word such as `unknown` or `-`). Offsets stay below it
/// because every message is capped at [`crate::telemetry::MAX_LOG_BODY_BYTES`] first.
pub(super) const SUSPICIOUS: u32 = 1 << 31;
const _: () = assert!(crate::telemetry::MAX_LOG_BODY_BYTES < SUSPICIOUS as usize);

const C_SUSPICIOUS: u8 = 1;
const C_PIECE: u8 = 2;
const C_SPACE: u8 = 4;
const C_QUOTE: u8 = 8;
const C_SEGMENT: u8 = 16;

#[inline]
pub(super) fn is_segment_delim(b: u8) -> bool {
    CLASS[b as usize] & C_SEGMENT != 0
}

#[inline]
pub(super) fn is_piece_delim(b: u8) -> bool {
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
pub(super) fn scan_tokens(b: &[u8], out: &mut Vec<(u32, u32)>) {
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
                // `key=unknown`, `key:-`: a missing value, see `mask::null_value_len`.
                suspicious |= matches!(b[i], b'=' | b':')
                    && i + 1 < n
                    && matches!(b[i + 1] | 0x20, b'-' | b'n' | b'u');
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
pub(crate) fn split_token_spans(content: &str, extra: &[char], out: &mut Vec<(u32, u32)>) {
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
pub(crate) const fn tok_hash(b: &[u8]) -> u64 {
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
