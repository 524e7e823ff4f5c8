//! Summaries of samples: median, min, max, percentiles, and cria/peer ratios.

/// A set of samples of one figure (milliseconds, MiB, …) for one system.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<f64>,
}

/// The summary the results table shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, v: f64) {
        self.values.push(v);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// Median, min and max; `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        let v = self.sorted();
        let n = v.len();
        let (&min, &max) = (v.first()?, v.last()?);
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            n,
            median,
            min,
            max,
        })
    }

    /// The `p`-th percentile (0–100) by the nearest-rank method: the smallest
    /// sample with at least p % of the samples at or below it.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let v = self.sorted();
        if v.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        v.get(rank.min(v.len()) - 1).copied()
    }
}

/// cria's median over the peer's (smaller is better for cria on time and
/// memory); `None` when either is missing or the peer's is zero.
pub fn ratio(cria: Option<Summary>, peer: Option<Summary>) -> Option<f64> {
    let (c, p) = (cria?, peer?);
    (p.median > 0.0).then(|| c.median / p.median)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(v: &[f64]) -> Samples {
        let mut s = Samples::default();
        for x in v {
            s.push(*x);
        }
        s
    }

    #[test]
    fn median_odd_and_even() {
        let s = samples(&[5.0, 1.0, 3.0]).summary().unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 3.0, 1.0, 5.0));
        let s = samples(&[4.0, 1.0, 3.0, 2.0]).summary().unwrap();
        assert_eq!(s.median, 2.5);
    }

    #[test]
    fn empty_has_no_summary() {
        assert!(Samples::default().summary().is_none());
        assert!(Samples::default().percentile(50.0).is_none());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = samples(&(1..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!(s.percentile(50.0), Some(50.0));
        assert_eq!(s.percentile(99.0), Some(99.0));
        assert_eq!(s.percentile(100.0), Some(100.0));
        let ten = samples(&(1..=10).map(f64::from).collect::<Vec<_>>());
        assert_eq!(ten.percentile(99.0), Some(10.0));
        assert_eq!(ten.percentile(0.0), Some(1.0));
    }

    #[test]
    fn ratio_of_medians() {
        let c = samples(&[1.0, 2.0, 3.0]).summary();
        let p = samples(&[4.0, 4.0]).summary();
        assert_eq!(ratio(c, p), Some(0.5));
        assert_eq!(ratio(c, None), None);
        assert_eq!(ratio(c, samples(&[0.0]).summary()), None);
    }
}
