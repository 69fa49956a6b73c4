//! Opaque page tokens for [`super::Store::list`].
//!
//! A token is the position after the last row of a page — its `(created_ms, id)`, the order key of
//! the listing — plus a fingerprint of the filter it was issued for, hex-encoded so that it is one
//! URL- and header-safe word. Keyset paging (rather than an offset) keeps a page stable while new
//! analyses are created: they sort before the position and never shift later pages. A token used
//! with a different filter, or one that was never issued, is an error naming `page_token`.

use super::error::StoreError;

const PREFIX: &str = "p1";

/// Where the next page starts: strictly after this `(created_ms, id)` in newest-first order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) created_ms: i64,
    pub(crate) id: String,
}

/// FNV-1a over the filter's app and (sorted, deduplicated) states; order of states does not matter.
pub(crate) fn fingerprint(app: Option<&str>, states: &[String]) -> u64 {
    let mut states: Vec<&str> = states.iter().map(String::as_str).collect();
    states.sort_unstable();
    states.dedup();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    match app {
        Some(a) => {
            feed(b"A");
            feed(&(a.len() as u64).to_le_bytes());
            feed(a.as_bytes());
        }
        None => feed(b"-"),
    }
    for s in states {
        feed(b"S");
        feed(&(s.len() as u64).to_le_bytes());
        feed(s.as_bytes());
    }
    h
}

pub(crate) fn encode(pos: &Position, fp: u64) -> String {
    let raw = format!("{}.{fp:016x}.{}", pos.created_ms, pos.id);
    let mut out = String::with_capacity(PREFIX.len() + raw.len() * 2);
    out.push_str(PREFIX);
    for b in raw.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub(crate) fn decode(token: &str, fp: u64) -> Result<Position, StoreError> {
    let bad = |why: &str| {
        StoreError::Invalid(format!(
            "page_token {}: {why}; pass back the next_page_token of the previous page unchanged",
            preview(token)
        ))
    };
    let hex = token
        .strip_prefix(PREFIX)
        .ok_or_else(|| bad("not a token issued by this store"))?;
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("not a token issued by this store"));
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad("not a token issued by this store"))?;
    let raw = String::from_utf8(bytes).map_err(|_| bad("not a token issued by this store"))?;
    let mut parts = raw.splitn(3, '.');
    let (Some(created), Some(tfp), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("not a token issued by this store"));
    };
    let created_ms: i64 = created
        .parse()
        .map_err(|_| bad("not a token issued by this store"))?;
    let tfp = u64::from_str_radix(tfp, 16).map_err(|_| bad("not a token issued by this store"))?;
    if tfp != fp {
        return Err(bad(
            "it was issued for a different filter (app or states); start again without a token",
        ));
    }
    Ok(Position {
        created_ms,
        id: id.to_string(),
    })
}

/// At most 40 characters of a rejected token, so an error message stays one readable line.
fn preview(token: &str) -> String {
    let mut s: String = token.chars().take(40).collect();
    if token.chars().count() > 40 {
        s.push('…');
    }
    format!("{s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_dots_and_unicode_in_id() {
        let fp = fingerprint(Some("checkout"), &["running".into()]);
        let pos = Position {
            created_ms: -5,
            id: "a.b.ç".into(),
        };
        assert_eq!(decode(&encode(&pos, fp), fp).unwrap(), pos);
    }

    #[test]
    fn fingerprint_ignores_state_order_but_not_app() {
        let a = fingerprint(Some("x"), &["running".into(), "pending".into()]);
        let b = fingerprint(Some("x"), &["pending".into(), "running".into()]);
        assert_eq!(a, b);
        assert_ne!(a, fingerprint(None, &["pending".into(), "running".into()]));
        assert_ne!(fingerprint(Some(""), &[]), fingerprint(None, &[]));
    }

    #[test]
    fn garbage_is_rejected_naming_the_field() {
        let fp = fingerprint(None, &[]);
        for t in ["", "p1", "p1zz", "p1abc", "hello", "p1ff", "p12e2e"] {
            let e = decode(t, fp).unwrap_err().to_string();
            assert!(e.starts_with("invalid page_token"), "{t}: {e}");
        }
        let other = encode(
            &Position {
                created_ms: 1,
                id: "x".into(),
            },
            fp ^ 1,
        );
        let e = decode(&other, fp).unwrap_err().to_string();
        assert!(e.contains("different filter"), "{e}");
    }
}
