//! Bounded-memory summaries: a HyperLogLog for unique counts and a
//! log-bucket histogram for latency percentiles. Both merge (for windows
//! and for hub shards) and serialize compactly.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// HyperLogLog with 2^10 registers: ~3.2% standard error, 1 KiB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hll {
    #[serde(with = "hex_bytes")]
    registers: Vec<u8>,
}

const P: u32 = 10;
const M: usize = 1 << P;

impl Default for Hll {
    fn default() -> Self {
        Hll { registers: vec![0; M] }
    }
}

impl Hll {
    pub fn insert(&mut self, item: &str) {
        let digest = Sha256::digest(item.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        let h = u64::from_le_bytes(first);
        let idx = (h >> (64 - P)) as usize;
        let rest = (h << P) | (1 << (P - 1)); // guard bit bounds the rank
        let rank = (rest.leading_zeros() + 1) as u8;
        if let Some(r) = self.registers.get_mut(idx) {
            *r = (*r).max(rank);
        }
    }

    pub fn merge(&mut self, other: &Hll) {
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
    }

    pub fn estimate(&self) -> f64 {
        let m = M as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self.registers.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln() // linear counting for small sets
        } else {
            raw
        }
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(s).map_err(serde::de::Error::custom)?;
        if v.len() == super::M {
            Ok(v)
        } else {
            Err(serde::de::Error::custom("wrong HLL size"))
        }
    }
}

/// Latency histogram: buckets grow by 10% from 0.1 ms (so a percentile is
/// within 10% of the true value), exact count, sum, min and max.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Sparse (bucket, count) pairs, sorted by bucket.
    buckets: Vec<(u16, u32)>,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

const BASE: f64 = 1.1;
const FIRST: f64 = 0.1;
const MAX_BUCKET: u16 = 250; // 0.1 ms * 1.1^250 ≈ 2e9 ms

fn bucket_of(x: f64) -> u16 {
    if x <= FIRST {
        return 0;
    }
    let b = ((x / FIRST).ln() / BASE.ln()).floor() + 1.0;
    if b >= f64::from(MAX_BUCKET) {
        MAX_BUCKET
    } else {
        b as u16
    }
}

/// The upper edge of a bucket (its representative value).
fn bucket_value(b: u16) -> f64 {
    FIRST * BASE.powi(i32::from(b))
}

impl Histogram {
    /// Buckets held (its size on the wire grows with them).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    pub fn record(&mut self, x: f64) {
        if !x.is_finite() || x < 0.0 {
            return;
        }
        let b = bucket_of(x);
        match self.buckets.binary_search_by_key(&b, |(k, _)| *k) {
            Ok(i) => {
                if let Some(e) = self.buckets.get_mut(i) {
                    e.1 = e.1.saturating_add(1);
                }
            }
            Err(i) => self.buckets.insert(i, (b, 1)),
        }
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        self.sum += x;
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        for &(b, c) in &other.buckets {
            match self.buckets.binary_search_by_key(&b, |(k, _)| *k) {
                Ok(i) => {
                    if let Some(e) = self.buckets.get_mut(i) {
                        e.1 = e.1.saturating_add(c);
                    }
                }
                Err(i) => self.buckets.insert(i, (b, c)),
            }
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The `q` quantile (0..1), clamped to the exact min and max.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for &(b, c) in &self.buckets {
            seen += u64::from(c);
            if seen >= rank {
                return Some(bucket_value(b).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hll_estimates_within_error() {
        for n in [0usize, 1, 10, 100, 1_000, 10_000, 100_000] {
            let mut h = Hll::default();
            for i in 0..n {
                h.insert(&format!("198.51.{}.{}", i / 256, i % 256));
                h.insert(&format!("198.51.{}.{}", i / 256, i % 256)); // duplicates do not count
            }
            let e = h.estimate();
            let err = if n == 0 { e } else { (e - n as f64).abs() / n as f64 };
            assert!(err < 0.08, "n={n}: estimate {e:.0}");
        }
    }

    #[test]
    fn hll_merge_is_union_and_serializes() {
        let (mut a, mut b) = (Hll::default(), Hll::default());
        for i in 0..1000 {
            a.insert(&format!("a{i}"));
            b.insert(&format!("b{i}"));
            b.insert(&format!("a{i}"));
        }
        a.merge(&b);
        assert!((a.estimate() - 2000.0).abs() < 160.0, "{}", a.estimate());
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Hll>(&text).unwrap(), a);
        assert!(serde_json::from_str::<Hll>(r#"{"registers":"00"}"#).is_err());
    }

    #[test]
    fn histogram_percentiles_within_ten_percent() {
        let mut h = Histogram::default();
        for i in 1..=1000 {
            h.record(f64::from(i));
        }
        for (q, want) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = h.quantile(q).unwrap();
            assert!((got - want).abs() / want <= 0.1, "q{q}: {got}");
        }
        assert_eq!((h.min, h.max, h.count), (1.0, 1000.0, 1000));
        assert_eq!(h.mean(), Some(500.5));
        assert_eq!(Histogram::default().quantile(0.5), None);
        let mut one = Histogram::default();
        one.record(7.0);
        assert_eq!(one.quantile(0.99), Some(7.0), "clamped to the exact value");
        one.record(f64::NAN);
        one.record(-1.0);
        assert_eq!(one.count, 1);
    }

    #[test]
    fn histogram_merge() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        for i in 0..100 {
            a.record(f64::from(i));
            b.record(f64::from(i + 100));
        }
        a.merge(&b);
        assert_eq!(a.count, 200);
        assert_eq!((a.min, a.max), (0.0, 199.0));
        let p50 = a.quantile(0.5).unwrap();
        assert!((p50 - 100.0).abs() <= 10.0, "{p50}");
    }
}
