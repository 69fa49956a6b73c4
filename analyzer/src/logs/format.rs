//! Header splitting with logparser's format notation, e.g.
//! `<Date> <Time> <Level> <Component>: <Content>`.
//!
//! As in logparser, `<Name>` becomes a lazy capture `(?P<Name>.*?)`, runs of spaces between fields
//! match any whitespace, and the text between fields is used as regex syntax (so formats written
//! for logparser, such as `\[<Process>\]` or `(\[<PID>\])?`, work unchanged).

use regex::Regex;

use super::LogError;

/// A compiled header format.
#[derive(Clone, Debug)]
pub struct LogFormat {
    regex: Regex,
    fields: Vec<String>,
}

impl LogFormat {
    /// Compiles a format; it must contain a `<Content>` field.
    pub fn parse(format: &str) -> Result<LogFormat, LogError> {
        let err = |reason: String| LogError::Format {
            format: format.to_owned(),
            reason,
        };
        let mut pattern = String::from("^");
        let mut fields = Vec::new();
        let mut rest = format;
        while let Some(open) = rest.find('<') {
            let Some(close_rel) = rest[open..].find('>') else {
                return Err(err(format!(
                    "`<` at byte {} has no closing `>`",
                    format.len() - rest.len() + open
                )));
            };
            let name = &rest[open + 1..open + close_rel];
            pattern.push_str(&spaces_to_ws(&rest[..open]));
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(err(format!(
                    "field name `{name}` must be letters, digits or `_`"
                )));
            }
            if fields.iter().any(|f| f == name) {
                return Err(err(format!("field `{name}` appears twice")));
            }
            pattern.push_str(&format!("(?P<{name}>.*?)"));
            fields.push(name.to_owned());
            rest = &rest[open + close_rel + 1..];
        }
        pattern.push_str(&spaces_to_ws(rest));
        pattern.push('$');
        if !fields.iter().any(|f| f == "Content") {
            return Err(err("expected a `<Content>` field".to_owned()));
        }
        let regex = Regex::new(&pattern).map_err(|e| err(e.to_string()))?;
        Ok(LogFormat { regex, fields })
    }

    /// Field names in order of appearance.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// Splits a line into `(field, value)` pairs, or `None` when the line does not fit the format.
    /// Optional groups that did not participate give an empty value.
    pub fn split<'a>(&'a self, line: &'a str) -> Option<Vec<(&'a str, &'a str)>> {
        let caps = self.regex.captures(line)?;
        Some(
            self.fields
                .iter()
                .map(|f| (f.as_str(), caps.name(f).map_or("", |m| m.as_str())))
                .collect(),
        )
    }

    /// The `Content` field of a line, or `None` when the line does not fit the format.
    pub fn content<'a>(&self, line: &'a str) -> Option<&'a str> {
        self.regex
            .captures(line)?
            .name("Content")
            .map(|m| m.as_str())
    }
}

fn spaces_to_ws(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    let mut in_spaces = false;
    for c in literal.chars() {
        if c == ' ' {
            if !in_spaces {
                out.push_str(r"\s+");
            }
            in_spaces = true;
        } else {
            out.push(c);
            in_spaces = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_hdfs_and_thunderbird_headers() {
        let f = LogFormat::parse("<Date> <Time> <Pid> <Level> <Component>: <Content>").unwrap();
        let line = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating";
        let v = f.split(line).unwrap();
        assert_eq!(v[0], ("Date", "081109"));
        assert_eq!(v[4], ("Component", "dfs.DataNode$PacketResponder"));
        assert_eq!(
            f.content(line),
            Some("PacketResponder 1 for block blk_38865049064139660 terminating")
        );
        assert_eq!(f.content("no header"), None);

        let t = LogFormat::parse(r"<Label> <Timestamp> <Date> <User> <Month> <Day> <Time> <Location> <Component>(\[<PID>\])?: <Content>").unwrap();
        let line = "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root";
        let v = t.split(line).unwrap();
        assert_eq!(v[8], ("Component", "crond(pam_unix)"));
        assert_eq!(v[9], ("PID", "2915"));
        assert_eq!(v[10], ("Content", "session closed for user root"));
    }

    #[test]
    fn rejects_bad_formats() {
        assert!(LogFormat::parse("<Date> <Level>").is_err());
        assert!(LogFormat::parse("<Date <Content>").is_err());
        assert!(LogFormat::parse("<A> <A> <Content>").is_err());
        assert!(LogFormat::parse("<Date> ( <Content>").is_err());
    }
}
