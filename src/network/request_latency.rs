//! How long the broker takes to answer, per API: from the moment a request's frame has
//! been read off the socket to the moment its response has been handed to the connection's
//! writer (the writer flushes as soon as no further response is ready). Time a request
//! spends in the kernel's socket buffers before Ferry reads it, or its response after, is
//! not included; a long-poll Fetch's wait is.
//!
//! Recording is one relaxed atomic add into a fixed log-linear histogram per API key (no
//! lock, no allocation on the request path). `take_report` reads and resets the counts;
//! the server logs a report when the process receives SIGUSR1, so an operator or the
//! benchmark harness can bracket exactly the interval it cares about.

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
        ApiKey::try_from(self.api_key)
            .map_or_else(|()| self.api_key.to_string(), |key| format!("{key:?}"))
    }
}

struct ApiHistogram {
    buckets: Box<[AtomicU64]>,
    max_us: AtomicU64,
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
        api.max_us.fetch_max(micros, Ordering::Relaxed);
    }

    /// Percentiles of every API that saw requests since the previous call, resetting the
    /// counts. Requests recorded while this runs land in this report or the next.
    pub fn take_report(&self) -> Vec<ApiLatency> {
        let mut report = Vec::new();
        for (api_key, api) in self.apis.iter().enumerate() {
            let counts: Vec<u64> = api
                .buckets
                .iter()
                .map(|b| b.swap(0, Ordering::Relaxed))
                .collect();
            let max_us = api.max_us.swap(0, Ordering::Relaxed);
            let requests: u64 = counts.iter().sum();
            if requests == 0 {
                continue;
            }
            let at = |quantile: f64| percentile(&counts, requests, quantile).min(max_us);
            report.push(ApiLatency {
                // API_KEYS < i16::MAX, so every index converts.
                api_key: i16::try_from(api_key).unwrap_or(i16::MAX),
                requests,
                p50_us: at(0.50),
                p99_us: at(0.99),
                p999_us: at(0.999),
                max_us,
            });
        }
        report
    }
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
    fn reports_percentiles_per_api_and_resets() {
        let latency = RequestLatency::new();
        for micros in 1..=1000 {
            latency.record(ApiKey::Produce as i16, micros);
        }
        latency.record(ApiKey::Fetch as i16, 500_000);
        latency.record(-1, 7);
        let report = latency.take_report();
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
        assert!(latency.take_report().is_empty());
    }
}
