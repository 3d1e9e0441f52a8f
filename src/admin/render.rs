//! Output for operator tools: aligned text tables for people, JSON for scripts. Both are
//! built from the same rows so they never disagree.

use std::fmt::Write;

/// A cell value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(i64),
    /// Shown as `-` in tables and `null` in JSON.
    Missing,
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::Text(text.to_string())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Text(text)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Number(n)
    }
}

impl From<Option<i64>> for Value {
    fn from(n: Option<i64>) -> Value {
        n.map_or(Value::Missing, Value::Number)
    }
}

impl From<Option<String>> for Value {
    fn from(text: Option<String>) -> Value {
        text.map_or(Value::Missing, Value::Text)
    }
}

/// Rows with named columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub fn new(columns: &[&'static str]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Value>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    fn cell(value: &Value) -> String {
        match value {
            Value::Text(text) => text.clone(),
            Value::Number(n) => n.to_string(),
            Value::Missing => "-".to_string(),
        }
    }

    /// Aligned columns separated by two spaces, headers in capitals.
    pub fn to_text(&self) -> String {
        let headers: Vec<String> = self
            .columns
            .iter()
            .map(|c| c.to_ascii_uppercase().replace('_', "-"))
            .collect();
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(Table::cell).collect())
            .collect();
        let widths: Vec<usize> = (0..headers.len())
            .map(|i| {
                cells
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([headers[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for line in std::iter::once(&headers).chain(cells.iter()) {
            let padded: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", padded.join("  ").trim_end());
        }
        out
    }

    /// An array of objects keyed by column name.
    pub fn to_json(&self) -> String {
        let objects: Vec<String> = self
            .rows
            .iter()
            .map(|row| {
                let fields: Vec<String> = self
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(name, value)| format!("{}:{}", json_string(name), json_value(value)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            })
            .collect();
        format!("[{}]", objects.join(","))
    }
}

fn json_value(value: &Value) -> String {
    match value {
        Value::Text(text) => json_string(text),
        Value::Number(n) => n.to_string(),
        Value::Missing => "null".to_string(),
    }
}

/// A JSON string literal with every character that needs escaping escaped.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_agree() {
        let mut table = Table::new(&["group", "lag"]);
        table.push(vec!["orders".into(), Value::Number(5)]);
        table.push(vec!["a \"quoted\"\nname".into(), Value::Missing]);
        let text = table.to_text();
        assert!(text.starts_with("GROUP"), "{text}");
        assert!(text.contains("orders           5\n"), "{text}");
        assert_eq!(
            table.to_json(),
            r#"[{"group":"orders","lag":5},{"group":"a \"quoted\"\nname","lag":null}]"#
        );
    }
}
