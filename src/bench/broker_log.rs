//! Reading the log of a Ferry the harness started: warning and error lines, and the request
//! latency reports Ferry logs on SIGUSR1 (`network::request_latency`). The harness signals
//! the broker when a phase starts (discarding what came before) and when it ends, so the
//! newest report covers exactly the phase.

use super::stats::Percentiles;

/// What Ferry's latency report lines say before their fields.
const LATENCY_MESSAGE: &str = "request latency since the previous report";
/// What the report's fsync line says before its fields.
const FSYNCS_MESSAGE: &str = "fsyncs since the previous report";

/// Warning and error lines.
pub fn problems(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .cloned()
        .collect()
}

/// The broker's fsyncs in the newest report among `lines`.
pub fn newest_fsyncs(lines: &[String]) -> Option<u64> {
    lines
        .iter()
        .filter(|line| line.contains(FSYNCS_MESSAGE))
        .filter_map(|line| {
            let report: u64 = field(line, "report")?.parse().ok()?;
            Some((report, field(line, "fsyncs")?.parse().ok()?))
        })
        .max_by_key(|&(report, _)| report)
        .map(|(_, fsyncs)| fsyncs)
}

/// `api`'s latency in the newest report among `lines` (`count` is its number of requests);
/// `None` if there is no report or the newest one saw no request of that API.
pub fn newest_latency(lines: &[String], api: &str) -> Option<Percentiles> {
    let reports: Vec<(u64, &str)> = lines
        .iter()
        .filter(|line| line.contains(LATENCY_MESSAGE))
        .filter_map(|line| Some((field(line, "report")?.parse().ok()?, line.as_str())))
        .collect();
    let newest = reports.iter().map(|(n, _)| *n).max()?;
    let line = reports
        .iter()
        .find(|(n, line)| *n == newest && field(line, "api") == Some(api))?
        .1;
    let number = |name: &str| field(line, name)?.parse::<u64>().ok();
    Some(Percentiles {
        count: number("requests")?,
        p50_us: number("p50_us")?,
        p99_us: number("p99_us")?,
        p999_us: number("p999_us")?,
        max_us: number("max_us")?,
    })
}

/// The value of a `name=value` field of a log line (tracing's text format).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn takes_the_newest_report_only() {
        let lines = log(
            "2026-11-21T21:10:00Z  INFO ferry::server: request latency since the previous report report=3 api=Produce requests=9 p50_us=1 p99_us=2 p999_us=3 max_us=4\n\
             2026-11-21T21:10:01Z  WARN ferry::network::connection: closing connection: x\n\
             2026-11-21T21:10:05Z  INFO ferry::server: request latency since the previous report report=4 api=Produce requests=47471 p50_us=207 p99_us=3583 p999_us=11263 max_us=19560\n\
             2026-11-21T21:10:05Z  INFO ferry::server: request latency since the previous report report=4 api=Fetch requests=5 p50_us=127 p99_us=6143 p999_us=12287 max_us=24143\n",
        );
        let produce = newest_latency(&lines, "Produce").expect("report 4 has Produce");
        assert_eq!(
            produce,
            Percentiles {
                count: 47471,
                p50_us: 207,
                p99_us: 3583,
                p999_us: 11263,
                max_us: 19560
            }
        );
        assert_eq!(newest_latency(&lines, "Fetch").map(|p| p.count), Some(5));
        assert_eq!(newest_fsyncs(&lines), None);
        let fsyncs = log(
            "x INFO ferry::server: fsyncs since the previous report report=6 fsyncs=12\n\
             x INFO ferry::server: fsyncs since the previous report report=7 fsyncs=3051\n",
        );
        assert_eq!(newest_fsyncs(&fsyncs), Some(3051));
        assert_eq!(problems(&lines).len(), 1);
    }

    #[test]
    fn an_api_missing_from_the_newest_report_has_no_figures() {
        let lines = log(
            "x INFO ferry::server: request latency since the previous report report=1 api=Produce requests=9 p50_us=1 p99_us=2 p999_us=3 max_us=4\n\
             x INFO ferry::server: request latency since the previous report: no requests report=2\n",
        );
        assert_eq!(newest_latency(&lines, "Produce"), None);
        assert_eq!(newest_latency(&[], "Produce"), None);
    }
}
