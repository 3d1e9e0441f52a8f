//! Java `.properties` text, the format of Kafka's `server.properties` and of Ferry's own
//! metadata files: `key=value` or `key: value` lines, `#`/`!` comments, backslash line
//! continuations and escapes (`\n`, `\t`, `\\`, `\=`, `\:`, `\uXXXX`).

use std::collections::BTreeMap;

/// Parses properties text into an ordered map; later duplicates win, as in Java.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        if ends_with_continuation(line) {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        let (key, value) = split_key_value(&logical);
        out.insert(unescape(key), unescape(value));
        logical.clear();
    }
    if !logical.is_empty() {
        let (key, value) = split_key_value(&logical);
        out.insert(unescape(key), unescape(value));
    }
    out
}

/// True when the line ends in an odd number of backslashes.
fn ends_with_continuation(line: &str) -> bool {
    line.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

fn split_key_value(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' => {
                return (line[..i].trim_end(), line[i + 1..].trim_start());
            }
            b' ' | b'\t' => {
                let key = &line[..i];
                let rest = line[i..].trim_start();
                let rest = rest
                    .strip_prefix('=')
                    .or_else(|| rest.strip_prefix(':'))
                    .unwrap_or(rest)
                    .trim_start();
                return (key, rest);
            }
            _ => i += 1,
        }
    }
    (line, "")
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn escape(text: &str, is_key: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '=' | ':' | '#' | '!' if is_key || i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
    out
}

/// Renders a map as properties text that [`parse`] reads back exactly.
pub fn render(header_comment: &str, entries: &BTreeMap<String, String>) -> String {
    let mut out = format!("# {header_comment}\n");
    for (key, value) in entries {
        out.push_str(&escape(key, true));
        out.push('=');
        out.push_str(&escape(value, false));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_server_properties_forms() {
        let text = "# comment\n! other\nlisteners=PLAINTEXT://127.0.0.1:9092\n\
                    log.dirs : /tmp/a\nnum.partitions 3\nlong=one,\\\n    two\n";
        let map = parse(text);
        assert_eq!(map["listeners"], "PLAINTEXT://127.0.0.1:9092");
        assert_eq!(map["log.dirs"], "/tmp/a");
        assert_eq!(map["num.partitions"], "3");
        assert_eq!(map["long"], "one,two");
    }

    #[test]
    fn render_round_trips_awkward_values() {
        let mut map = BTreeMap::new();
        map.insert(
            "a key".to_string(),
            " leading space = : # and\nnewline\\".to_string(),
        );
        map.insert("unicode".to_string(), "héllo".to_string());
        map.insert("empty".to_string(), String::new());
        assert_eq!(parse(&render("test", &map)), map);
    }
}
