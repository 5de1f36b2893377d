//! Cross-entropy with label smoothing and KWT's hard-label distillation loss (Eq. 6).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy of `logits` [batch, classes] against `targets` [batch], with the
/// targets smoothed as `(1 - eps) * onehot + eps / classes`.
pub fn smoothed_cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>, eps: f64) -> Tensor<1> {
    let [batch, classes] = logits.dims();
    let onehot: Tensor<2> = targets.one_hot::<2>(classes).float();
    let q = onehot
        .mul_scalar(1.0 - eps)
        .add_scalar(eps / classes as f64);
    (q * log_softmax(logits, 1))
        .sum()
        .mul_scalar(-1.0 / batch as f64)
}

/// KWT Eq. 6: the class head learns the true labels, the distillation head (or, for a
/// student without one, the class head again) learns the teacher's hard decisions.
pub fn hard_distillation_loss(
    class_logits: Tensor<2>,
    distill_logits: Tensor<2>,
    targets: Tensor<1, Int>,
    teacher_labels: Tensor<1, Int>,
    eps: f64,
) -> Tensor<1> {
    (smoothed_cross_entropy(class_logits, targets, eps)
        + smoothed_cross_entropy(distill_logits, teacher_labels, eps))
    .mul_scalar(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn matches_hand_computed_values() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]], &device);
        let targets = Tensor::<1, Int>::from_ints([0, 2], &device);
        // Row 1: log-softmax of [2,0,-1]: lse = ln(e^2 + 1 + e^-1).
        let lse1 = (2f64.exp() + 1.0 + (-1f64).exp()).ln();
        let lp1 = [2.0 - lse1, -lse1, -1.0 - lse1];
        let lp2 = -(3f64).ln();
        let plain = (-lp1[0] - lp2) / 2.0;
        let got: f32 = smoothed_cross_entropy(logits.clone(), targets.clone(), 0.0).into_scalar();
        assert!((got as f64 - plain).abs() < 1e-5, "{got} vs {plain}");
        let eps = 0.1;
        let q1 = [1.0 - eps + eps / 3.0, eps / 3.0, eps / 3.0];
        let smooth1: f64 = -(0..3).map(|i| q1[i] * lp1[i]).sum::<f64>();
        let smooth = (smooth1 - lp2) / 2.0;
        let got: f32 = smoothed_cross_entropy(logits, targets, eps).into_scalar();
        assert!((got as f64 - smooth).abs() < 1e-5, "{got} vs {smooth}");
    }
}
