//! Batched matrix products of strided f32 operands into a fresh row-major buffer, by the `gemm`
//! crate that flex calls itself. Flex allocates each product's output zeroed and then copies it
//! once more to realign it (`FlexTensor::empty`): 10 % of a KWT-1 training step went to that
//! memset and copy. Here the output is allocated uninitialized and written once, by `gemm`.

use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

/// Multiply-adds of one product above which `gemm` splits it over threads (flex's threshold).
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;
/// Multiply-adds of a whole batch of smaller products above which the batch is split over
/// threads (flex's threshold).
const BATCH_PARALLEL_THRESHOLD: usize = 128 * 128 * 128;

/// A batch of matrices inside a flat f32 buffer: element `[b.., i, j]` sits at
/// `start + sum(b_d * batch_strides[d]) + i * row_stride + j * col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct StridedMatrices<'a> {
    pub data: &'a [f32],
    pub start: usize,
    /// One stride per batch dimension.
    pub batch_strides: &'a [usize],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl StridedMatrices<'_> {
    /// Whether every element of `batch` matrices of `rows x cols` lies inside `data`.
    pub(crate) fn fits(&self, batch: &[usize], rows: usize, cols: usize) -> bool {
        if self.batch_strides.len() != batch.len() {
            return false;
        }
        if batch.contains(&0) || rows == 0 || cols == 0 {
            return true;
        }
        let reach = batch
            .iter()
            .zip(self.batch_strides)
            .map(|(&d, &s)| (d - 1).checked_mul(s))
            .chain([
                (rows - 1).checked_mul(self.row_stride),
                (cols - 1).checked_mul(self.col_stride),
            ])
            .try_fold(self.start, |acc, step| acc.checked_add(step?));
        reach.is_some_and(|last| last < self.data.len())
    }

    /// Offset of matrix `b` (row-major over the batch shape).
    pub(crate) fn offset(&self, batch: &[usize], mut b: usize) -> usize {
        let mut offset = self.start;
        for (&d, &s) in batch.iter().zip(self.batch_strides).rev() {
            offset += (b % d) * s;
            b /= d;
        }
        offset
    }
}

/// One matrix inside a flat buffer: element `[i, j]` sits at `i * row_stride + j * col_stride`.
#[derive(Debug, Clone, Copy)]
pub struct MatrixView<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> MatrixView<'a, T> {
    /// A row-major `rows x cols` matrix at the start of `data`.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (`rows x cols`) of a row-major `cols x rows` matrix, without a copy.
    pub fn transposed(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    /// Whether every element lies inside `data`.
    fn fits(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
        last < self.data.len()
    }
}

/// `out = lhs rhs`, or `out += lhs rhs` with `accumulate`, into the first `lhs.rows x rhs.cols`
/// elements of `out` (row-major), by `gemm` on the calling thread (for callers that spread
/// their own work over the threads).
///
/// # Panics
/// When the shapes disagree, a view reaches past its buffer or `out` is too short: a bug in
/// the caller, never user input.
pub fn product_into<T: Copy + From<f32> + 'static>(
    lhs: MatrixView<T>,
    rhs: MatrixView<T>,
    out: &mut [T],
    accumulate: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions differ");
    assert!(out.len() >= m * n, "output shorter than {m} x {n}");
    assert!(lhs.fits() && rhs.fits(), "a view reaches past its buffer");
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(T::from(0.0));
        }
        return;
    }
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: every element `gemm` reads is inside `lhs.data` or `rhs.data` (`fits`), every one
    // it writes inside `out` (row-major, at least `m * n` long); `out` is borrowed mutably and
    // the operands immutably, so they do not alias.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::from(1.0),
            T::from(1.0),
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// `lhs [batch.., m, k] x rhs [batch.., k, n]` as a row-major `[batch.., m, n]` (the same products
/// as flex's matmul), or `None` when an operand's strides do not match `batch` or reach outside
/// its buffer.
pub fn batched_matmul(
    batch: &[usize],
    [m, k, n]: [usize; 3],
    lhs: StridedMatrices,
    rhs: StridedMatrices,
) -> Option<Vec<f32>> {
    if !lhs.fits(batch, m, k) || !rhs.fits(batch, k, n) {
        return None;
    }
    let count: usize = batch.iter().product();
    let size = m.checked_mul(n)?;
    let total = count.checked_mul(size)?;
    if total == 0 || k == 0 {
        return Some(vec![0.0; total]);
    }
    let per_product = size.saturating_mul(k);
    let mut out: Vec<f32> = Vec::with_capacity(total);
    let dst = &mut out.spare_capacity_mut()[..total];
    let run = |b: usize, matrix: &mut [MaybeUninit<f32>], parallelism: Parallelism| {
        let (l, r) = (lhs.offset(batch, b), rhs.offset(batch, b));
        // SAFETY: `fits` checked that every element both operands' strides reach lies in their
        // buffers; `matrix` holds exactly `m * n` elements, written row-major (column stride 1,
        // row stride n); with `read_dst` false gemm only writes the destination.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                matrix.as_mut_ptr().cast::<f32>(),
                1,
                n as isize,
                false,
                lhs.data.as_ptr().add(l),
                lhs.col_stride as isize,
                lhs.row_stride as isize,
                rhs.data.as_ptr().add(r),
                rhs.col_stride as isize,
                rhs.row_stride as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    };
    if count > 1
        && per_product < PARALLEL_THRESHOLD
        && count.saturating_mul(per_product) >= BATCH_PARALLEL_THRESHOLD
    {
        dst.par_chunks_mut(size)
            .enumerate()
            .for_each(|(b, matrix)| run(b, matrix, Parallelism::None));
    } else {
        let parallelism = if per_product >= PARALLEL_THRESHOLD {
            Parallelism::Rayon(0)
        } else {
            Parallelism::None
        };
        for (b, matrix) in dst.chunks_mut(size).enumerate() {
            run(b, matrix, parallelism);
        }
    }
    // SAFETY: the loops above ran gemm over every `m x n` chunk of the first `total` elements,
    // and gemm (k > 0, read_dst false) writes every element of its destination.
    unsafe { out.set_len(total) };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The f64 product of element accessors, row-major `[count, m, n]`.
    fn reference(
        count: usize,
        [m, k, n]: [usize; 3],
        a: impl Fn(usize, usize, usize) -> f32,
        b: impl Fn(usize, usize, usize) -> f32,
    ) -> Vec<f32> {
        let mut out = Vec::new();
        for t in 0..count {
            for i in 0..m {
                for j in 0..n {
                    let s: f64 = (0..k).map(|p| a(t, i, p) as f64 * b(t, p, j) as f64).sum();
                    out.push(s as f32);
                }
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "element {i}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn contiguous_and_transposed_operands_match_the_definition() {
        // batch [2, 3]; lhs contiguous [2, 3, m, k]; rhs stored as [2, 3, n, k] and read
        // transposed (the pattern of q k^T), starting 5 elements into its buffer
        let (m, k, n) = (7, 5, 9);
        let batch = [2, 3];
        let a = values(6 * m * k, 1);
        let b = values(5 + 6 * n * k, 2);
        let lhs = StridedMatrices {
            data: &a,
            start: 0,
            batch_strides: &[3 * m * k, m * k],
            row_stride: k,
            col_stride: 1,
        };
        let rhs = StridedMatrices {
            data: &b,
            start: 5,
            batch_strides: &[3 * n * k, n * k],
            row_stride: 1,
            col_stride: k,
        };
        let got = batched_matmul(&batch, [m, k, n], lhs, rhs).unwrap();
        let want = reference(
            6,
            [m, k, n],
            |t, i, p| a[t * m * k + i * k + p],
            |t, p, j| b[5 + t * n * k + j * k + p],
        );
        assert_close(&got, &want);
    }

    #[test]
    fn large_batches_and_large_products_take_the_threaded_paths() {
        // 64 products of 40 x 40 x 40 (batch split over threads) and one 200 x 200 x 200
        // (split by gemm)
        for (count, s) in [(64, 40), (1, 200)] {
            let a = values(count * s * s, 3);
            let b = values(count * s * s, 4);
            let strides = [s * s];
            let op = |data| StridedMatrices {
                data,
                start: 0,
                batch_strides: &strides,
                row_stride: s,
                col_stride: 1,
            };
            let (lhs, rhs) = (op(&a), op(&b));
            let got = batched_matmul(&[count], [s, s, s], lhs, rhs).unwrap();
            let want = reference(
                count,
                [s, s, s],
                |t, i, p| a[t * s * s + i * s + p],
                |t, p, j| b[t * s * s + p * s + j],
            );
            assert_close(&got, &want);
        }
    }

    #[test]
    fn empty_inner_dimension_gives_zeros_and_out_of_bounds_strides_are_refused() {
        let data = values(12, 5);
        let op = StridedMatrices {
            data: &data,
            start: 0,
            batch_strides: &[],
            row_stride: 4,
            col_stride: 1,
        };
        assert_eq!(
            batched_matmul(&[], [3, 0, 2], op, op).unwrap(),
            vec![0.0; 6]
        );
        // 3 x 4 fits in 12 elements; 4 x 4 does not
        assert!(batched_matmul(&[], [3, 4, 3], op, op).is_none());
        assert!(
            batched_matmul(
                &[],
                [4, 4, 3],
                op,
                StridedMatrices {
                    row_stride: 3,
                    ..op
                }
            )
            .is_none()
        );
        let ok = batched_matmul(
            &[],
            [3, 4, 3],
            op,
            StridedMatrices {
                row_stride: 3,
                ..op
            },
        );
        assert_eq!(ok.map(|v| v.len()), Some(9));
        // a batch dimension without its stride
        assert!(batched_matmul(&[1], [1, 1, 1], op, op).is_none());
    }
}
