//! What a pick draws from ([`Draw`]: random numbers, or the day's for
//! `--daily`) and the weighted draw of a column in O(1) (`Alias`, Vose's
//! method: a column, then a coin), built once per table.

/// What a pick draws from: random numbers, or the day's (`--daily`).
pub trait Draw {
    /// Uniform in `0..n`; 0 when `n` is 0.
    fn below(&mut self, n: usize) -> usize;
    /// Uniform over all `u32`.
    fn coin(&mut self) -> u32;
}

impl Draw for rand::rngs::ThreadRng {
    fn below(&mut self, n: usize) -> usize {
        rand::RngExt::random_range(self, 0..n.max(1))
    }

    fn coin(&mut self) -> u32 {
        rand::RngExt::random(self)
    }
}

/// Vose's alias table: column `c` is itself with probability
/// `threshold[c] / 2^32`, else `alias[c]`.
#[derive(Debug, Clone)]
pub(super) struct Alias {
    threshold: Box<[u32]>,
    alias: Box<[u32]>,
}

impl Alias {
    /// For `weights` (not all zero), in any scale.
    pub(super) fn new(weights: &[f64]) -> Alias {
        let k = weights.len();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * k as f64 / total).collect();
        let mut threshold = vec![u32::MAX; k];
        let mut alias: Vec<u32> = (0..k as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..k).partition(|&i| scaled[i] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            threshold[s] = (scaled[s] * 4_294_967_296.0) as u32;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // What is left is 1 up to rounding: always itself.
        Alias {
            threshold: threshold.into(),
            alias: alias.into(),
        }
    }

    pub(super) fn column(&self, draw: &mut impl Draw) -> usize {
        let k = self.threshold.len();
        if k <= 1 {
            return 0;
        }
        let c = draw.below(k);
        if draw.coin() < self.threshold[c] {
            c
        } else {
            self.alias[c] as usize
        }
    }

    /// The probability of each column.
    #[cfg(test)]
    pub(super) fn odds(&self) -> Vec<f64> {
        let k = self.threshold.len();
        let mut p = vec![0.0; k];
        for c in 0..k {
            let stay = f64::from(self.threshold[c]) / 4_294_967_296.0;
            p[c] += stay / k as f64;
            p[self.alias[c] as usize] += (1.0 - stay) / k as f64;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_tables_give_the_weights() {
        for weights in [
            vec![1.0],
            vec![80.0, 20.0],
            vec![1.0, 2.0, 3.0, 4.0],
            vec![0.0, 5.0, 0.0, 5.0],
        ] {
            let total: f64 = weights.iter().sum();
            let got = Alias::new(&weights).odds();
            for (g, w) in got.iter().zip(&weights) {
                assert!((g - w / total).abs() < 1e-6, "{weights:?}: {got:?}");
            }
        }
    }
}
