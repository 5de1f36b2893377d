//! The float graph's matrix products in f64 through `gemm`, which picks the widest vector
//! instructions of the CPU it runs on: the Linears and attention products are nearly all of a
//! calibration forward, and summing them element by element kept the baseline target's scalar
//! code. Every f32 product is exact in f64; only the order of the additions differs from a
//! plain loop.

pub(crate) use training::matmul_kernels::MatrixView;

/// `out = lhs rhs`, `out` row-major `lhs.rows x rhs.cols`, on the calling thread (the callers
/// run one clip per task already).
///
/// # Panics
/// When the shapes disagree or a view reaches past its buffer: a bug in the caller, never
/// user input (the graph's shapes are checked when it is built).
pub(crate) fn matmul_f64(lhs: MatrixView<f64>, rhs: MatrixView<f64>, out: &mut [f64]) {
    assert_eq!(out.len(), lhs.rows * rhs.cols, "output size");
    training::matmul_kernels::product_into(lhs, rhs, out, false);
}

/// `v` widened to f64.
pub(crate) fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(lhs: MatrixView<f64>, rhs: MatrixView<f64>) -> Vec<f64> {
        let mut out = Vec::new();
        for i in 0..lhs.rows {
            for j in 0..rhs.cols {
                let s: f64 = (0..lhs.cols)
                    .map(|p| {
                        lhs.data[i * lhs.row_stride + p * lhs.col_stride]
                            * rhs.data[p * rhs.row_stride + j * rhs.col_stride]
                    })
                    .sum();
                out.push(s);
            }
        }
        out
    }

    #[test]
    fn products_equal_the_definition_for_row_major_and_transposed_operands() {
        // halves and small integers: every partial sum is exact in any order
        for (m, k, n) in [(1, 1, 1), (3, 5, 2), (17, 64, 9), (99, 64, 99), (4, 0, 3)] {
            let a: Vec<f64> = (0..m * k).map(|i| (i % 13) as f64 * 0.5 - 3.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i % 7) as f64 - 3.0).collect();
            let lhs = MatrixView::row_major(&a, m, k);
            for rhs in [
                MatrixView::row_major(&b, k, n),
                MatrixView::transposed(&b, k, n),
            ] {
                let mut out = vec![f64::NAN; m * n];
                matmul_f64(lhs, rhs, &mut out);
                assert_eq!(out, naive(lhs, rhs), "{m}x{k}x{n}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "past its buffer")]
    fn a_view_past_its_buffer_is_refused() {
        let a = vec![1.0; 6];
        let lhs = MatrixView::row_major(&a, 2, 3);
        let rhs = MatrixView::row_major(&a, 3, 3);
        matmul_f64(lhs, rhs, &mut [0.0; 6]);
    }
}
