//! [`ImageSet`]: a labelled set of 8-bit images held as one flat CHW buffer, with seeded
//! stratified splits, balanced subsets, channel statistics and normalisation to `f32`.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::{DatasetError, Result};

/// Labelled 8-bit images of one shape. `images` holds `len() * channels * height * width` bytes:
/// image after image, each as `channels` planes of `height` rows of `width` pixels (CHW).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `N * C * H * W` pixel bytes, CHW per image.
    pub images: Vec<u8>,
    /// One label per image, each below `classes.len()`.
    pub labels: Vec<u8>,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
}

/// How much of a set [`ImageSet::split_off_validation`] holds out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Holdout {
    /// A fraction of the images, rounded to the nearest count; clamped to [0, 1] (NaN is 0).
    Fraction(f64),
    /// A number of images; more than the set holds means all of them.
    Count(usize),
}

impl From<f64> for Holdout {
    fn from(fraction: f64) -> Self {
        Self::Fraction(fraction)
    }
}

impl From<usize> for Holdout {
    fn from(count: usize) -> Self {
        Self::Count(count)
    }
}

impl Holdout {
    /// The number of images held out of a set of `total`.
    pub fn count_of(self, total: usize) -> usize {
        match self {
            Self::Fraction(f) if f.is_nan() || f <= 0.0 => 0,
            Self::Fraction(f) if f >= 1.0 => total,
            Self::Fraction(f) => ((f * total as f64).round() as usize).min(total),
            Self::Count(c) => c.min(total),
        }
    }
}

impl ImageSet {
    /// Builds a set after checking that the buffer holds whole images, one per label, and that
    /// every label names a class.
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        images: Vec<u8>,
        labels: Vec<u8>,
        classes: Vec<String>,
    ) -> Result<Self> {
        let set = Self {
            channels,
            height,
            width,
            images,
            labels,
            classes,
        };
        let expected = set.labels.len() * set.image_len();
        if set.images.len() != expected {
            return Err(DatasetError::Shape {
                what: "image buffer (labels x channels x height x width)",
                expected,
                found: set.images.len(),
            });
        }
        if let Some((i, &label)) = set
            .labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| usize::from(l) >= set.classes.len())
        {
            return Err(DatasetError::InvalidConfig {
                field: "labels",
                message: format!(
                    "image {i} has label {label}, but there are only {} classes",
                    set.classes.len()
                ),
            });
        }
        Ok(set)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image: `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The CHW bytes of image `i`. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The label of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// Number of images of each class, indexed by label (`classes.len()` entries at least).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            let l = usize::from(l);
            if l >= counts.len() {
                counts.resize(l + 1, 0);
            }
            counts[l] += 1;
        }
        counts
    }

    /// A new set of the images at `indices`, in that order (repeats allowed). Panics if an index
    /// is out of range.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        ImageSet {
            channels: self.channels,
            height: self.height,
            width: self.width,
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
        }
    }

    /// Moves a stratified, seeded random part of the set into a new validation set and keeps the
    /// rest. Each class gives its share of `amount` (largest-remainder rounding, so the total is
    /// exact); both sets keep the original order. The same seed gives the same split.
    pub fn split_off_validation(&mut self, amount: impl Into<Holdout>, seed: u64) -> ImageSet {
        let total = amount.into().count_of(self.len());
        let groups = self.class_groups();
        let quotas = proportional_quotas(&groups, total);
        let chosen = self.choose(groups, &quotas, seed);
        let mut held = vec![false; self.len()];
        for &i in &chosen {
            held[i] = true;
        }
        let rest: Vec<usize> = (0..self.len()).filter(|&i| !held[i]).collect();
        let validation = self.select(&chosen);
        *self = self.select(&rest);
        validation
    }

    /// A seeded subset of `n` images (all of them if `n >= len()`) balanced across classes: every
    /// class gets `n / classes` images, the remainder going one each to the lowest labels, and a
    /// class too small to fill its share gives the rest to the others. Original order is kept.
    pub fn subset(&self, n: usize, seed: u64) -> ImageSet {
        let n = n.min(self.len());
        let groups = self.class_groups();
        let quotas = balanced_quotas(&groups, n);
        let chosen = self.choose(groups, &quotas, seed);
        self.select(&chosen)
    }

    /// Per-channel mean and (population) standard deviation of the pixels, in [0, 1] units.
    /// An empty set gives zeros.
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let plane = self.height * self.width;
        let mut sum = vec![0u64; self.channels];
        let mut sum_sq = vec![0u64; self.channels];
        if plane > 0 {
            for (k, chunk) in self.images.chunks_exact(plane).enumerate() {
                let c = k % self.channels;
                for &p in chunk {
                    let p = u64::from(p);
                    sum[c] += p;
                    sum_sq[c] += p * p;
                }
            }
        }
        let count = (self.len() * plane) as f64;
        let mut mean = Vec::with_capacity(self.channels);
        let mut std = Vec::with_capacity(self.channels);
        for c in 0..self.channels {
            if count == 0.0 {
                mean.push(0.0);
                std.push(0.0);
                continue;
            }
            let m = sum[c] as f64 / count;
            let var = (sum_sq[c] as f64 / count - m * m).max(0.0);
            mean.push((m / 255.0) as f32);
            std.push((var.sqrt() / 255.0) as f32);
        }
        (mean, std)
    }

    /// Image `i` as CHW `f32`: `(pixel / 255 - mean[c]) / std[c]`. A channel whose std is not
    /// positive is only centred. Panics if `i >= len()` or `mean`/`std` do not hold one value per
    /// channel.
    pub fn to_f32_normalized(&self, i: usize, mean: &[f32], std: &[f32]) -> Vec<f32> {
        assert_eq!(mean.len(), self.channels, "one mean per channel");
        assert_eq!(std.len(), self.channels, "one std per channel");
        let plane = self.height * self.width;
        let mut out = Vec::with_capacity(self.image_len());
        if plane == 0 {
            return out;
        }
        for (c, chunk) in self.image(i).chunks_exact(plane).enumerate() {
            let scale = if std[c] > 0.0 { 1.0 / std[c] } else { 1.0 };
            out.extend(
                chunk
                    .iter()
                    .map(|&p| (f32::from(p) / 255.0 - mean[c]) * scale),
            );
        }
        out
    }

    /// Image indices grouped by label (256 groups, one per possible label byte).
    fn class_groups(&self) -> Vec<Vec<usize>> {
        let mut groups = vec![Vec::new(); 256];
        for (i, &l) in self.labels.iter().enumerate() {
            groups[usize::from(l)].push(i);
        }
        groups
    }

    /// Shuffles each group with one seeded generator, takes its quota, and returns the chosen
    /// indices in ascending order.
    fn choose(&self, groups: Vec<Vec<usize>>, quotas: &[usize], seed: u64) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut chosen = Vec::new();
        for (mut group, &quota) in groups.into_iter().zip(quotas) {
            if quota == 0 {
                continue;
            }
            group.shuffle(&mut rng);
            chosen.extend_from_slice(&group[..quota]);
        }
        chosen.sort_unstable();
        chosen
    }
}

/// Splits `total` over the groups in proportion to their sizes, by largest remainder (ties to the
/// lower label); never more than a group holds.
fn proportional_quotas(groups: &[Vec<usize>], total: usize) -> Vec<usize> {
    let n: usize = groups.iter().map(Vec::len).sum();
    if n == 0 {
        return vec![0; groups.len()];
    }
    let mut quotas = Vec::with_capacity(groups.len());
    let mut remainders = Vec::with_capacity(groups.len());
    for (k, g) in groups.iter().enumerate() {
        let scaled = total as u128 * g.len() as u128;
        quotas.push((scaled / n as u128) as usize);
        remainders.push((scaled % n as u128, k));
    }
    let left = total - quotas.iter().sum::<usize>();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, k) in remainders.iter().take(left) {
        quotas[k] += 1;
    }
    quotas
}

/// Splits `n` as evenly as possible over the non-empty groups, capped at each group's size.
fn balanced_quotas(groups: &[Vec<usize>], n: usize) -> Vec<usize> {
    let mut quotas = vec![0; groups.len()];
    let mut left = n;
    while left > 0 {
        let open: Vec<usize> = (0..groups.len())
            .filter(|&k| quotas[k] < groups[k].len())
            .collect();
        if open.is_empty() {
            break;
        }
        // Give every open group an equal share of what is left (at least one to the first ones).
        let share = (left / open.len()).max(1);
        for k in open {
            let give = share.min(groups[k].len() - quotas[k]).min(left);
            quotas[k] += give;
            left -= give;
            if left == 0 {
                break;
            }
        }
    }
    quotas
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `per_class` images of each of `classes` classes, 2x2x3 each, pixel bytes derived from the
    /// index so every image is distinct; labels interleaved.
    fn toy(classes: usize, per_class: usize) -> ImageSet {
        let n = classes * per_class;
        let (c, h, w) = (2, 2, 3);
        let mut images = Vec::with_capacity(n * c * h * w);
        for i in 0..n {
            for j in 0..c * h * w {
                images.push(((i * 7 + j * 13) % 256) as u8);
            }
        }
        // Tag image i in its first two bytes so images can be identified after a split.
        for i in 0..n {
            images[i * 12] = (i % 256) as u8;
            images[i * 12 + 1] = (i / 256) as u8;
        }
        let labels = (0..n).map(|i| (i % classes) as u8).collect();
        let names = (0..classes).map(|k| format!("class{k}")).collect();
        ImageSet::new(c, h, w, images, labels, names).unwrap()
    }

    fn ids(set: &ImageSet) -> Vec<usize> {
        (0..set.len())
            .map(|i| usize::from(set.image(i)[0]) + 256 * usize::from(set.image(i)[1]))
            .collect()
    }

    #[test]
    fn new_rejects_bad_shapes_and_labels() {
        let err = ImageSet::new(1, 2, 2, vec![0; 7], vec![0, 0], vec!["a".into()]).unwrap_err();
        assert!(
            matches!(err, DatasetError::Shape { expected: 8, .. }),
            "{err}"
        );
        let err = ImageSet::new(1, 1, 1, vec![0; 2], vec![0, 3], vec!["a".into()]).unwrap_err();
        assert!(err.to_string().contains("label 3"), "{err}");
    }

    #[test]
    fn image_and_len() {
        let set = toy(3, 4);
        assert_eq!(set.len(), 12);
        assert!(!set.is_empty());
        assert_eq!(set.image_len(), 12);
        assert_eq!(set.image(5).len(), 12);
        assert_eq!(ids(&set), (0..12).collect::<Vec<_>>());
        assert_eq!(set.class_counts(), vec![4, 4, 4]);
    }

    #[test]
    fn split_is_stratified_disjoint_and_covering() {
        let original = toy(4, 25);
        let mut train = original.clone();
        let val = train.split_off_validation(0.2, 7);
        assert_eq!(val.len(), 20);
        assert_eq!(train.len(), 80);
        assert_eq!(val.class_counts(), vec![5; 4]);
        assert_eq!(train.class_counts(), vec![20; 4]);
        let (tv, vv) = (ids(&train), ids(&val));
        assert!(tv.iter().all(|i| !vv.contains(i)), "sets overlap");
        let mut all: Vec<usize> = tv.iter().chain(&vv).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // Images and labels stay paired.
        for (k, &id) in vv.iter().enumerate() {
            assert_eq!(val.image(k), original.image(id));
            assert_eq!(val.label(k), original.label(id));
        }
        assert!(vv.windows(2).all(|w| w[0] < w[1]), "original order kept");
    }

    #[test]
    fn split_is_deterministic_per_seed() {
        let original = toy(3, 30);
        let split = |seed| {
            let mut t = original.clone();
            let v = t.split_off_validation(10usize, seed);
            (t, v)
        };
        let (t1, v1) = split(1);
        let (t2, v2) = split(1);
        let (_, v3) = split(2);
        assert_eq!((t1, &v1), (t2, &v2));
        assert_eq!(v1.len(), 10);
        assert_ne!(ids(&v1), ids(&v3));
    }

    #[test]
    fn split_counts_are_exact_with_uneven_classes() {
        let mut set = toy(3, 10);
        set.labels[0] = 1; // classes of 9, 11, 10
        let total = set.len();
        let val = set.split_off_validation(Holdout::Count(7), 3);
        assert_eq!(val.len(), 7);
        assert_eq!(set.len() + val.len(), total);
        let mut empty = toy(2, 3);
        assert_eq!(empty.split_off_validation(f64::NAN, 0).len(), 0);
        assert_eq!(empty.split_off_validation(1.5, 0).len(), 6);
        assert!(empty.is_empty());
    }

    #[test]
    fn subset_is_balanced_and_deterministic() {
        let set = toy(4, 20);
        let a = set.subset(10, 5);
        assert_eq!(a.len(), 10);
        assert_eq!(a.class_counts(), vec![3, 3, 2, 2]);
        assert_eq!(a, set.subset(10, 5));
        assert_ne!(ids(&a), ids(&set.subset(10, 6)));
        assert_eq!(set.subset(1000, 1).len(), 80);
        assert!(set.subset(0, 1).is_empty());
    }

    #[test]
    fn subset_fills_from_other_classes_when_one_is_small() {
        let mut set = toy(3, 10);
        // Class 2 keeps only two images.
        for l in set.labels.iter_mut().filter(|l| **l == 2).skip(2) {
            *l = 0;
        }
        let sub = set.subset(12, 9);
        assert_eq!(sub.len(), 12);
        let counts = sub.class_counts();
        assert_eq!(counts[2], 2);
        assert_eq!(counts[0] + counts[1], 10);
        assert!(counts[0].abs_diff(counts[1]) <= 1);
    }

    #[test]
    fn channel_stats_and_normalization() {
        // Two 1x2 images with two channels: channel 0 all 0 / 255, channel 1 constant 51.
        let set = ImageSet::new(
            2,
            1,
            2,
            vec![0, 255, 51, 51, 255, 0, 51, 51],
            vec![0, 0],
            vec!["a".into()],
        )
        .unwrap();
        let (mean, std) = set.channel_stats();
        assert!((mean[0] - 0.5).abs() < 1e-6 && (std[0] - 0.5).abs() < 1e-6);
        assert!((mean[1] - 0.2).abs() < 1e-6 && std[1].abs() < 1e-6);
        let x = set.to_f32_normalized(0, &mean, &std);
        assert_eq!(x.len(), 4);
        assert!((x[0] + 1.0).abs() < 1e-5 && (x[1] - 1.0).abs() < 1e-5);
        assert!(x[2].abs() < 1e-6 && x[3].abs() < 1e-6);
        let empty = set.select(&[]);
        assert_eq!(empty.channel_stats(), (vec![0.0; 2], vec![0.0; 2]));
    }
}
