//! When masks are (re)computed and to which sparsity: one-shot, or AGP (Zhu and Gupta 2017):
//! `s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3` for `t = t0, t0 + dt, ..., t0 + n dt`.
//! Steps count optimizer steps taken (the trainer's global step).

use serde::{Deserialize, Serialize};

use crate::error::PruneError;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// Prune to the final sparsity once, after `step` optimizer steps (0: before training),
    /// then fine-tune with the masks fixed.
    OneShot {
        #[serde(default)]
        step: usize,
    },
    /// Gradual pruning: masks updated at `start_step + k * frequency` for `k = 0..=steps`,
    /// from `initial_sparsity` (capped at each layer's target) to each layer's target.
    Agp {
        #[serde(default)]
        initial_sparsity: f64,
        #[serde(default)]
        start_step: usize,
        /// `dt`: optimizer steps between mask updates.
        frequency: usize,
        /// `n`: number of pruning steps after the first.
        steps: usize,
    },
}

impl Schedule {
    pub fn validate(&self) -> Result<(), PruneError> {
        if let Schedule::Agp {
            initial_sparsity,
            frequency,
            steps,
            ..
        } = *self
        {
            if !(0.0..1.0).contains(&initial_sparsity) {
                return Err(PruneError::Schedule(format!(
                    "`initial_sparsity` must be in [0, 1), got {initial_sparsity}"
                )));
            }
            if frequency == 0 {
                return Err(PruneError::Schedule(
                    "`frequency` must be at least 1".into(),
                ));
            }
            if steps == 0 {
                return Err(PruneError::Schedule(
                    "`steps` must be at least 1 (use OneShot for a single pruning step)".into(),
                ));
            }
        }
        Ok(())
    }

    /// The step of the last mask update; from then on every layer is at its target.
    pub fn end_step(&self) -> usize {
        match *self {
            Schedule::OneShot { step } => step,
            Schedule::Agp {
                start_step,
                frequency,
                steps,
                ..
            } => start_step + frequency * steps,
        }
    }

    /// Whether the masks are recomputed after `step` optimizer steps.
    pub fn is_update(&self, step: usize) -> bool {
        match *self {
            Schedule::OneShot { step: at } => step == at,
            Schedule::Agp {
                start_step,
                frequency,
                ..
            } => {
                step >= start_step
                    && step <= self.end_step()
                    && (step - start_step).is_multiple_of(frequency.max(1))
            }
        }
    }

    /// Target sparsity of a layer whose final sparsity is `target`, after `step` steps
    /// (piecewise constant between updates).
    pub fn sparsity(&self, target: f64, step: usize) -> f64 {
        match *self {
            Schedule::OneShot { step: at } => {
                if step >= at {
                    target
                } else {
                    0.0
                }
            }
            Schedule::Agp {
                initial_sparsity,
                start_step,
                frequency,
                steps,
            } => {
                if step < start_step {
                    return 0.0;
                }
                let dt = frequency.max(1);
                let k = ((step - start_step) / dt).min(steps);
                let initial = initial_sparsity.min(target);
                let progress = k as f64 / steps.max(1) as f64;
                target + (initial - target) * (1.0 - progress).powi(3)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agp_follows_the_cubic_and_is_monotone() {
        let s = Schedule::Agp {
            initial_sparsity: 0.1,
            start_step: 10,
            frequency: 5,
            steps: 4,
        };
        s.validate().unwrap();
        assert_eq!(s.end_step(), 30);
        assert_eq!(s.sparsity(0.8, 9), 0.0);
        assert!((s.sparsity(0.8, 10) - 0.1).abs() < 1e-12);
        // t = 15: progress 1/4: 0.8 + (0.1 - 0.8) * 0.75^3
        let want = 0.8 - 0.7 * 0.421875;
        assert!((s.sparsity(0.8, 15) - want).abs() < 1e-12);
        assert!(
            (s.sparsity(0.8, 19) - want).abs() < 1e-12,
            "constant between updates"
        );
        assert!((s.sparsity(0.8, 30) - 0.8).abs() < 1e-12);
        assert!((s.sparsity(0.8, 1000) - 0.8).abs() < 1e-12);
        let updates: Vec<usize> = (0..100).filter(|&t| s.is_update(t)).collect();
        assert_eq!(updates, vec![10, 15, 20, 25, 30]);
        let mut last = 0.0;
        for t in 0..40 {
            let v = s.sparsity(0.8, t);
            assert!(v >= last);
            last = v;
        }
        // A layer whose target is below the initial sparsity never exceeds its target.
        assert_eq!(s.sparsity(0.0, 20), 0.0);
    }

    #[test]
    fn one_shot_and_bad_schedules() {
        let s = Schedule::OneShot { step: 0 };
        assert!(s.is_update(0) && !s.is_update(1));
        assert_eq!(s.sparsity(0.5, 0), 0.5);
        let bad = Schedule::Agp {
            initial_sparsity: 0.0,
            start_step: 0,
            frequency: 0,
            steps: 3,
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("frequency")
        );
        let bad = Schedule::Agp {
            initial_sparsity: 1.0,
            start_step: 0,
            frequency: 1,
            steps: 3,
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("initial_sparsity")
        );
    }
}
