//! Figures: latency histograms and their percentiles, number formatting for the tables, and
//! the hand-written JSON of the results (no serde in this crate).

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Largest latency a histogram tells apart (one hour); larger values are recorded as this.
pub const LATENCY_MAX_US: u64 = 3_600_000_000;
/// Significant decimal digits kept by the latency histograms (0.1% relative error).
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// Bytes in a MiB and a GiB: every throughput figure is in binary units.
pub const MIB_BYTES: f64 = 1024.0 * 1024.0;
pub const GIB_BYTES: f64 = 1024.0 * 1024.0 * 1024.0;

/// Microseconds since the UNIX epoch by the wall clock: what producers stamp into values and
/// consumers subtract from, so the two sides agree even across processes.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A latency histogram in microseconds (HDR: constant relative precision at every scale).
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        Latency {
            hist: Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
        }
    }

    pub fn record(&mut self, micros: u64) {
        self.hist.saturating_record(micros);
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// `None` when nothing was recorded.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.hist.is_empty() {
            return None;
        }
        Some(Percentiles {
            count: self.hist.len(),
            p50_us: self.hist.value_at_quantile(0.50),
            p99_us: self.hist.value_at_quantile(0.99),
            p999_us: self.hist.value_at_quantile(0.999),
            max_us: self.hist.max(),
        })
    }
}

/// A JSON value, rendered by hand.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    /// Rendered with at most three decimals; NaN and infinities become `null`.
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn object(fields: Vec<(&str, Json)>) -> Json {
        Json::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    pub fn float(value: Option<f64>) -> Json {
        value.map_or(Json::Null, Json::Float)
    }

    pub fn uint(value: Option<u64>) -> Json {
        value.map_or(Json::Null, |v| {
            Json::Int(i64::try_from(v).unwrap_or(i64::MAX))
        })
    }

    pub fn text(value: &str) -> Json {
        Json::Str(value.to_string())
    }

    /// Indented by two spaces per level, one field per line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out, 0);
        out
    }

    fn render_into(&self, out: &mut String, depth: usize) {
        let indent = |out: &mut String, depth: usize| {
            out.push('\n');
            out.push_str(&"  ".repeat(depth));
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Json::Float(f) => out.push_str(&json_float(*f)),
            Json::Str(s) => out.push_str(&crate::admin::render::json_string(s)),
            Json::Array(items) if items.is_empty() => out.push_str("[]"),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(out, depth + 1);
                    item.render_into(out, depth + 1);
                }
                indent(out, depth);
                out.push(']');
            }
            Json::Object(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(out, depth + 1);
                    out.push_str(&crate::admin::render::json_string(key));
                    out.push_str(": ");
                    value.render_into(out, depth + 1);
                }
                indent(out, depth);
                out.push('}');
            }
        }
    }
}

fn json_float(value: f64) -> String {
    if !value.is_finite() {
        return "null".to_string();
    }
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// A figure for a table: three significant digits for small values, whole numbers above
/// 100, `-` when unknown.
pub fn fmt_figure(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if !v.is_finite() => "-".to_string(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// A fraction as a percentage for a table.
pub fn fmt_percent(fraction: Option<f64>) -> String {
    match fraction {
        Some(f) if f.is_finite() => format!("{:.1}%", f * 100.0),
        _ => "-".to_string(),
    }
}

/// `numerator / denominator` when both are known and the denominator is positive.
pub fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 && n.is_finite() => Some(n / d),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut latency = Latency::new();
        assert_eq!(latency.percentiles(), None);
        for us in 1..=10_000 {
            latency.record(us);
        }
        let p = latency.percentiles().unwrap();
        assert_eq!(p.count, 10_000);
        // HDR keeps three significant digits: within 0.1% of the exact rank.
        assert!((4_995..=5_005).contains(&p.p50_us), "{p:?}");
        assert!((9_890..=9_910).contains(&p.p99_us), "{p:?}");
        assert!((9_980..=10_000).contains(&p.p999_us), "{p:?}");
        assert!((10_000..=10_010).contains(&p.max_us), "{p:?}");
    }

    #[test]
    fn out_of_range_latencies_saturate_and_merge() {
        let mut a = Latency::new();
        a.record(0);
        a.record(LATENCY_MAX_US * 10);
        let mut b = Latency::new();
        b.record(7);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        let p = a.percentiles().unwrap();
        assert!(p.max_us >= LATENCY_MAX_US && p.max_us <= LATENCY_MAX_US + LATENCY_MAX_US / 500);
        assert_eq!(p.p50_us, 7);
    }

    #[test]
    fn json_rendering() {
        let json = Json::object(vec![
            (
                "limits",
                Json::object(vec![("loopback_mib_s", Json::Float(1234.5678))]),
            ),
            ("name", Json::text("a \"b\"\n")),
            ("nan", Json::Float(f64::NAN)),
            ("whole", Json::Float(3.0)),
            ("missing", Json::float(None)),
            ("count", Json::uint(Some(5))),
            ("empty", Json::Array(vec![])),
            ("list", Json::Array(vec![Json::Bool(true), Json::Int(-2)])),
        ]);
        assert_eq!(
            json.render(),
            "{\n  \"limits\": {\n    \"loopback_mib_s\": 1234.568\n  },\n  \"name\": \"a \\\"b\\\"\\n\",\n  \
             \"nan\": null,\n  \"whole\": 3,\n  \"missing\": null,\n  \"count\": 5,\n  \"empty\": [],\n  \
             \"list\": [\n    true,\n    -2\n  ]\n}"
        );
        assert_eq!(json_float(-0.0001), "0");
        assert_eq!(json_float(0.25), "0.25");
    }

    #[test]
    fn table_formatting() {
        assert_eq!(fmt_figure(Some(123_456.7)), "123457");
        assert_eq!(fmt_figure(Some(48.94)), "48.9");
        assert_eq!(fmt_figure(Some(0.4567)), "0.46");
        assert_eq!(fmt_figure(None), "-");
        assert_eq!(fmt_percent(Some(0.1234)), "12.3%");
        assert_eq!(fmt_percent(ratio(Some(1.0), Some(0.0))), "-");
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
    }
}
