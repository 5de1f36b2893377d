//! Cross-entropy with label smoothing, KWT's hard-label distillation loss (Eq. 6) and
//! soft-target distillation.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy of `logits` [batch, classes] against `targets` `[batch]`, with the
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

/// Soft-target distillation (Hinton et al. 2015): `(1 - weight)` times the smoothed
/// cross-entropy of `class_logits` against `targets` plus `weight` times
/// `temperature^2 KL(p_teacher || p_student)` of the distributions softened by `temperature`,
/// the student's read from `distill_logits`. The `temperature^2` keeps the soft term's
/// gradients at the scale of the hard term's whatever the temperature.
pub fn soft_distillation_loss(
    class_logits: Tensor<2>,
    distill_logits: Tensor<2>,
    targets: Tensor<1, Int>,
    teacher_logits: Tensor<2>,
    eps: f64,
    temperature: f64,
    weight: f64,
) -> Tensor<1> {
    let [batch, _] = distill_logits.dims();
    let t = 1.0 / temperature;
    let teacher_logits = teacher_logits.detach().mul_scalar(t);
    let p_teacher = softmax(teacher_logits.clone(), 1);
    let kl = (p_teacher.clone()
        * (log_softmax(teacher_logits, 1) - log_softmax(distill_logits.mul_scalar(t), 1)))
    .sum()
    .mul_scalar(temperature * temperature / batch as f64);
    smoothed_cross_entropy(class_logits, targets, eps).mul_scalar(1.0 - weight)
        + kl.mul_scalar(weight)
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

    #[test]
    fn soft_distillation_matches_hand_computed_values() {
        let device = Device::flex();
        let student = [[1.0f64, -0.5, 0.25], [0.0, 2.0, -1.0]];
        let teacher = [[2.0f64, 0.0, -2.0], [-1.0, 1.5, 0.5]];
        let targets = [0usize, 1];
        let (eps, temp, w) = (0.1, 2.0, 0.7);
        let log_softmax_row = |r: &[f64; 3], t: f64| -> Vec<f64> {
            let lse = r.iter().map(|v| (v / t).exp()).sum::<f64>().ln();
            r.iter().map(|v| v / t - lse).collect()
        };
        let mut ce = 0.0;
        let mut kl = 0.0;
        for i in 0..2 {
            let ls = log_softmax_row(&student[i], 1.0);
            for (c, l) in ls.iter().enumerate() {
                let q = if c == targets[i] { 1.0 - eps } else { 0.0 } + eps / 3.0;
                ce -= q * l / 2.0;
            }
            let (lt, lst) = (
                log_softmax_row(&teacher[i], temp),
                log_softmax_row(&student[i], temp),
            );
            for c in 0..3 {
                kl += lt[c].exp() * (lt[c] - lst[c]) * temp * temp / 2.0;
            }
        }
        let want = (1.0 - w) * ce + w * kl;
        let t2 =
            |v: [[f64; 3]; 2]| Tensor::<2>::from_floats(v.map(|r| r.map(|x| x as f32)), &device);
        let got: f32 = soft_distillation_loss(
            t2(student),
            t2(student),
            Tensor::<1, Int>::from_ints([0, 1], &device),
            t2(teacher),
            eps,
            temp,
            w,
        )
        .into_scalar();
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
        // The student that is its teacher pays only the label term.
        let same: f32 = soft_distillation_loss(
            t2(teacher),
            t2(teacher),
            Tensor::<1, Int>::from_ints([0, 1], &device),
            t2(teacher),
            eps,
            temp,
            1.0,
        )
        .into_scalar();
        assert!(
            same.abs() < 1e-6,
            "KL of a distribution with itself: {same}"
        );
    }
}
