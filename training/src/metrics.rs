//! Accuracy and confusion matrix over a split.

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

/// How many rows of `logits` have their arg-max at the row's label.
pub fn count_correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> u64 {
    let [n, _] = logits.dims();
    let hits: i64 = logits
        .detach()
        .argmax(1)
        .reshape([n])
        .equal(labels)
        .int()
        .sum()
        .into_scalar();
    hits as u64
}

/// `counts[true][predicted]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub labels: Vec<String>,
    pub counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    pub fn new(labels: Vec<String>) -> Self {
        let n = labels.len();
        Self {
            labels,
            counts: vec![vec![0; n]; n],
        }
    }

    /// The matrix of `(truth, predicted)` pairs; `Err` with the first pair naming a class
    /// outside `labels`.
    pub fn from_pairs(
        labels: Vec<String>,
        pairs: &[(usize, usize)],
    ) -> Result<Self, (usize, usize)> {
        let mut m = Self::new(labels);
        let n = m.labels.len();
        for &(truth, predicted) in pairs {
            if truth >= n || predicted >= n {
                return Err((truth, predicted));
            }
            m.add(truth, predicted);
        }
        Ok(m)
    }

    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..self.counts.len()).map(|i| self.counts[i][i]).sum()
    }

    /// Fraction correct in [0, 1]; 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            0.0
        } else {
            self.correct() as f64 / total as f64
        }
    }

    /// A plain-text table, rows = true label, columns = predicted label.
    pub fn to_table(&self) -> String {
        let width = self
            .labels
            .iter()
            .map(|l| l.len())
            .chain(self.counts.iter().flatten().map(|c| c.to_string().len()))
            .max()
            .unwrap_or(1)
            .max(5);
        let mut out = format!("{:>width$} |", "true\\pred");
        for l in &self.labels {
            out += &format!(" {l:>width$}");
        }
        out.push('\n');
        for (label, row) in self.labels.iter().zip(&self.counts) {
            out += &format!("{label:>width$} |");
            for c in row {
                out += &format!(" {c:>width$}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_table() {
        let mut m = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
        m.add(0, 0);
        m.add(0, 1);
        m.add(1, 1);
        m.add(1, 1);
        assert_eq!(m.total(), 4);
        assert_eq!(m.correct(), 3);
        assert!((m.accuracy() - 0.75).abs() < 1e-12);
        let t = m.to_table();
        assert_eq!(t.lines().count(), 3);
        assert!(t.lines().nth(1).unwrap().ends_with("1     1"), "{t}");
    }
}
