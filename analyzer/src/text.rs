//! Text shown to people: cutting long log lines and templates so that what remains reads as words.

/// `s` cut to at most `max` characters (plus an ellipsis when cut), at the last space in the
/// second half of the allowance so that no word is split; a text with no such space is cut hard.
/// A cut is always marked: a reader must not take a clipped log line for the whole line.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let hard: String = s.chars().take(max).collect();
    // Already at a boundary when the first character left out is a space.
    if s.chars().nth(max).is_some_and(char::is_whitespace) {
        return format!("{}…", hard.trim_end());
    }
    let cut = hard
        .char_indices()
        .filter(|(_, c)| c.is_whitespace())
        .map(|(i, _)| i)
        .rfind(|&i| hard[..i].chars().count() >= max / 2)
        .map_or(hard.as_str(), |i| &hard[..i]);
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn cuts_at_a_word_boundary_and_marks_the_cut() {
        assert_eq!(clip("short line", 40), "short line");
        assert_eq!(
            clip("connection refused by upstream host payments", 30),
            "connection refused by upstream…"
        );
        // No space in the second half: a hard cut, still marked.
        assert_eq!(clip("abcdefghijklmnop", 5), "abcde…");
        // Multi-byte characters are counted as characters, never split.
        assert_eq!(clip("ééé ééé ééé", 6), "ééé…");
    }
}
