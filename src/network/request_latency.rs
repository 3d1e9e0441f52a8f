//! How long the broker takes to answer, per API: from the moment a request's frame has
//! been read off the socket to the moment its response has been handed to the connection's
//! writer (the writer flushes as soon as no further response is ready). Time a request
//! spends in the kernel's socket buffers before Ferry reads it, or its response after, is
//! not included; a long-poll Fetch's wait is.
//!
//! Recording is two relaxed atomic adds (a bucket of a fixed log-linear histogram per API
//! key, and the API's sum) and an atomic max: no lock, no allocation on the request path.
//! The counts are cumulative and never reset: the metrics endpoint exports them as
//! Prometheus histograms (`histograms`), and the report the server logs when the process
//! receives SIGUSR1 (`report_since`) subtracts the counts of the previous report, so an
//! operator or the benchmark harness can bracket exactly the interval it cares about.

use std::sync::atomic::{AtomicU64, Ordering};

use proto_kafka::messages::ApiKey;

/// API keys covered: 0 to this bound (exclusive); Kafka's highest key is below it.
const API_KEYS: usize = 128;
/// Sub-buckets per power of two: a reported percentile is at most 1/8 (12.5%) above the
/// true value.
const SUB_BUCKET_BITS: u32 = 3;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Largest latency told apart, in microseconds (2^37 us is about 38 hours); larger
/// values count in the last bucket.
const MAX_EXPONENT: u32 = 37;
/// Buckets per API: `SUB_BUCKETS` single values, then `SUB_BUCKETS` per power of two from
/// `SUB_BUCKETS` up to `2^MAX_EXPONENT`.
const BUCKETS: usize = ((MAX_EXPONENT - SUB_BUCKET_BITS + 2) as usize) * SUB_BUCKETS as usize;

/// Bounds of the exported histogram's buckets, in microseconds: powers of two from 64 us
/// to about 16.8 s. Each is the lower edge of an internal bucket, so the requests at or
/// below it are exactly those counted in the internal buckets before that one (latencies
/// are recorded in whole microseconds, rounded down: a bucket ending at `2^k - 1` holds
/// every latency below `2^k` microseconds).
pub const EXPORTED_BOUNDS_US: [u64; 19] = [
    1 << 6,
    1 << 7,
    1 << 8,
    1 << 9,
    1 << 10,
    1 << 11,
    1 << 12,
    1 << 13,
    1 << 14,
    1 << 15,
    1 << 16,
    1 << 17,
    1 << 18,
    1 << 19,
    1 << 20,
    1 << 21,
    1 << 22,
    1 << 23,
    1 << 24,
];

/// The API's name as Kafka spells it, or its number if unknown.
pub fn api_name(api_key: i16) -> String {
    ApiKey::try_from(api_key).map_or_else(|()| api_key.to_string(), |key| format!("{key:?}"))
}

/// Latency percentiles of one API over a reporting interval, in microseconds (each an
/// upper bound within 12.5%, except `max_us`, which is exact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLatency {
    pub api_key: i16,
    pub requests: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl ApiLatency {
    /// The API's name as Kafka spells it, or its number if unknown.
    pub fn api_name(&self) -> String {
        api_name(self.api_key)
    }
}

/// One API's requests since the process started, in the exported buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    pub api_key: i16,
    pub requests: u64,
    /// Sum of the requests' latencies, in microseconds.
    pub sum_us: u64,
    /// Requests at or below each of `EXPORTED_BOUNDS_US` (cumulative, as Prometheus's `le`
    /// buckets); those above the last bound count only in `requests`.
    pub at_or_below: [u64; EXPORTED_BOUNDS_US.len()],
}

struct ApiHistogram {
    /// Requests per bucket since the process started; never reset.
    buckets: Box<[AtomicU64]>,
    /// Sum of the latencies since the process started, in microseconds.
    sum_us: AtomicU64,
    /// Largest latency since the previous report (each report resets it).
    max_us: AtomicU64,
}

impl ApiHistogram {
    fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }
}

/// Request latency histograms for every API key, shared by all connections.
pub struct RequestLatency {
    apis: Box<[ApiHistogram]>,
}

impl Default for RequestLatency {
    fn default() -> RequestLatency {
        RequestLatency::new()
    }
}

/// The counts of the previous SIGUSR1 report, per API key (empty: none yet), so that the
/// next report covers only the requests since.
#[derive(Debug, Default)]
pub struct ReportBaseline {
    counts: Vec<Vec<u64>>,
}

/// The bucket holding `micros`: values below `SUB_BUCKETS` have their own bucket, larger
/// ones share a bucket with those that agree in their top `SUB_BUCKET_BITS + 1` bits.
fn bucket_of(micros: u64) -> usize {
    if micros < SUB_BUCKETS {
        return micros as usize;
    }
    let exponent = (63 - micros.leading_zeros()).min(MAX_EXPONENT);
    let micros = micros.min((1 << (MAX_EXPONENT + 1)) - 1);
    let sub = (micros >> (exponent - SUB_BUCKET_BITS)) & (SUB_BUCKETS - 1);
    ((exponent - SUB_BUCKET_BITS + 1) as usize) * SUB_BUCKETS as usize + sub as usize
}

/// The largest value that falls into `bucket`.
fn bucket_upper_bound(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < SUB_BUCKETS {
        return bucket;
    }
    let exponent = bucket / SUB_BUCKETS + u64::from(SUB_BUCKET_BITS) - 1;
    let sub = bucket % SUB_BUCKETS;
    let lower = (SUB_BUCKETS + sub) << (exponent - u64::from(SUB_BUCKET_BITS));
    lower + (1 << (exponent - u64::from(SUB_BUCKET_BITS))) - 1
}

impl RequestLatency {
    pub fn new() -> RequestLatency {
        let apis = (0..API_KEYS)
            .map(|_| ApiHistogram {
                buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
                sum_us: AtomicU64::new(0),
                max_us: AtomicU64::new(0),
            })
            .collect();
        RequestLatency { apis }
    }

    /// Counts one request of `api_key` that took `micros`. Keys outside the table (none
    /// are decoded today) are not counted.
    pub fn record(&self, api_key: i16, micros: u64) {
        let Some(api) = usize::try_from(api_key).ok().and_then(|k| self.apis.get(k)) else {
            return;
        };
        api.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        api.sum_us.fetch_add(micros, Ordering::Relaxed);
        api.max_us.fetch_max(micros, Ordering::Relaxed);
    }

    /// Percentiles of every API that saw requests since the previous report (`baseline`,
    /// which becomes this one). Requests recorded while this runs land in this report or
    /// the next.
    pub fn report_since(&self, baseline: &mut ReportBaseline) -> Vec<ApiLatency> {
        baseline.counts.resize_with(self.apis.len(), Vec::new);
        let mut report = Vec::new();
        for ((api_key, api), previous) in self.apis.iter().enumerate().zip(&mut baseline.counts) {
            let now = api.counts();
            let counts: Vec<u64> = if previous.is_empty() {
                now.clone()
            } else {
                now.iter()
                    .zip(previous.iter())
                    .map(|(now, before)| now.saturating_sub(*before))
                    .collect()
            };
            *previous = now;
            let max_us = api.max_us.swap(0, Ordering::Relaxed);
            let requests: u64 = counts.iter().sum();
            if requests == 0 {
                continue;
            }
            let at = |quantile: f64| percentile(&counts, requests, quantile).min(max_us);
            report.push(ApiLatency {
                api_key: key_of(api_key),
                requests,
                p50_us: at(0.50),
                p99_us: at(0.99),
                p999_us: at(0.999),
                max_us,
            });
        }
        report
    }

    /// Every API that saw requests since the process started, with its cumulative counts
    /// in the exported buckets (for the metrics endpoint).
    pub fn histograms(&self) -> Vec<LatencyHistogram> {
        self.apis
            .iter()
            .enumerate()
            .filter_map(|(api_key, api)| {
                let counts = api.counts();
                let requests: u64 = counts.iter().sum();
                (requests > 0).then(|| LatencyHistogram {
                    api_key: key_of(api_key),
                    requests,
                    sum_us: api.sum_us.load(Ordering::Relaxed),
                    at_or_below: exported_buckets(&counts),
                })
            })
            .collect()
    }
}

/// The API key at `index` of the table (`API_KEYS` < `i16::MAX`, so every index converts).
fn key_of(index: usize) -> i16 {
    i16::try_from(index).unwrap_or(i16::MAX)
}

/// Internal bucket counts summed up to each exported bound: the buckets wholly below it.
fn exported_buckets(counts: &[u64]) -> [u64; EXPORTED_BOUNDS_US.len()] {
    let mut at_or_below = [0; EXPORTED_BOUNDS_US.len()];
    let mut below = 0u64;
    let mut bucket = 0;
    for (slot, bound) in at_or_below.iter_mut().zip(EXPORTED_BOUNDS_US) {
        let first_above = bucket_of(bound);
        below += counts[bucket..first_above].iter().sum::<u64>();
        bucket = first_above;
        *slot = below;
    }
    at_or_below
}

/// The upper bound of the bucket holding the `quantile`-th of `requests` values.
fn percentile(counts: &[u64], requests: u64, quantile: f64) -> u64 {
    let rank = ((quantile * requests as f64).ceil() as u64).clamp(1, requests);
    let mut seen = 0;
    for (bucket, &count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return bucket_upper_bound(bucket);
        }
    }
    bucket_upper_bound(counts.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_bound_is_within_an_eighth() {
        for micros in (0..5_000).chain([65_535, 1 << 20, 123_456_789, 1 << 37]) {
            let bucket = bucket_of(micros);
            assert!(bucket < BUCKETS);
            let upper = bucket_upper_bound(bucket);
            assert!(upper >= micros, "{micros} above its bucket's bound {upper}");
            assert!(
                upper - micros <= micros / 8,
                "{micros} reported as {upper}, more than 12.5% off"
            );
            if bucket > 0 {
                assert!(bucket_upper_bound(bucket - 1) < micros);
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn reports_percentiles_per_api_since_the_previous_report() {
        let latency = RequestLatency::new();
        let mut baseline = ReportBaseline::default();
        for micros in 1..=1000 {
            latency.record(ApiKey::Produce as i16, micros);
        }
        latency.record(ApiKey::Fetch as i16, 500_000);
        latency.record(-1, 7);
        let report = latency.report_since(&mut baseline);
        assert_eq!(report.len(), 2);
        let produce = &report[0];
        assert_eq!(produce.api_name(), "Produce");
        assert_eq!(produce.requests, 1000);
        assert!(
            (500..=500 + 500 / 8).contains(&produce.p50_us),
            "{produce:?}"
        );
        assert!((990..=1000).contains(&produce.p99_us), "{produce:?}");
        assert_eq!(produce.max_us, 1000);
        assert_eq!(
            (report[1].api_name().as_str(), report[1].max_us),
            ("Fetch", 500_000)
        );
        assert!(latency.report_since(&mut baseline).is_empty());
        latency.record(ApiKey::Produce as i16, 3);
        let next = latency.report_since(&mut baseline);
        assert_eq!(
            (next.len(), next[0].requests, next[0].max_us),
            (1, 1, 3),
            "{next:?}"
        );
    }

    /// Every exported bound is an internal bucket edge: the value just below it is in the
    /// previous bucket, so a bound's count is exactly the internal buckets before it.
    #[test]
    fn exported_bounds_are_internal_bucket_edges() {
        for bound in EXPORTED_BOUNDS_US {
            assert_eq!(bucket_upper_bound(bucket_of(bound - 1)), bound - 1);
            assert_eq!(bucket_of(bound), bucket_of(bound - 1) + 1);
        }
        assert!(EXPORTED_BOUNDS_US.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn histograms_are_cumulative_and_survive_reports() {
        let latency = RequestLatency::new();
        let produce = ApiKey::Produce as i16;
        let values = [
            0,
            63,
            64,
            65,
            127,
            128,
            1_000,
            1 << 24,
            (1 << 24) + 1,
            1 << 30,
        ];
        for micros in values {
            latency.record(produce, micros);
        }
        latency.report_since(&mut ReportBaseline::default());
        let histograms = latency.histograms();
        assert_eq!(histograms.len(), 1, "only APIs with requests");
        let histogram = &histograms[0];
        assert_eq!(histogram.api_key, produce);
        assert_eq!(histogram.requests, values.len() as u64);
        assert_eq!(histogram.sum_us, values.iter().sum::<u64>());
        for (bound, count) in EXPORTED_BOUNDS_US.iter().zip(histogram.at_or_below) {
            let expected = values.iter().filter(|&&v| v < *bound).count() as u64;
            assert_eq!(count, expected, "at or below {bound} us");
        }
    }
}
