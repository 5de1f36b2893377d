//! GELU and softmax as single operations with their own backward pass on flex (the default CPU
//! backend), through a Burn backend extension that runs the vectorized loops of
//! [`crate::cpu_kernels`]; Burn's own versions on every other backend. Same functions, same
//! gradients; only the speed differs.

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::ActivationOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, backend_extension};
use burn::tensor::{Device, Tensor, TensorData};

use crate::cpu_kernels;

/// The fused operations. The default bodies (Burn's operations) serve backends without a kernel.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    fn exact_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, grad)
    }

    /// Softmax over the last dimension.
    fn last_dim_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composite_softmax::<Self>(x)
    }

    /// Softmax's input gradient from its output `y` and output gradient `grad`.
    fn last_dim_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composite_softmax_backward::<Self>(y, grad)
    }
}

/// `exp(x - max) / sum` over the last dimension, from Burn's operations.
fn composite_softmax<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let dim = x.shape().num_dims() - 1;
    let max = B::float_max_dim(x.clone(), dim);
    let e = B::float_exp(B::float_sub(x, max));
    let total = B::float_sum_dim(e.clone(), dim);
    B::float_div(e, total)
}

/// `y * (grad - sum(grad * y))` over the last dimension, from Burn's operations.
fn composite_softmax_backward<B: Backend>(
    y: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let dim = y.shape().num_dims() - 1;
    let s = B::float_sum_dim(B::float_mul(grad.clone(), y.clone()), dim);
    B::float_mul(y, B::float_sub(grad, s))
}

/// A contiguous f32 view of a flex tensor, or `None` (other dtypes and strided views take
/// Burn's path).
fn f32_slice(t: &FloatTensor<Flex>) -> Option<&[f32]> {
    if t.dtype() != DType::F32 {
        return None;
    }
    t.as_slice::<f32>()
}

/// Rows of the last dimension, or `None` for a scalar or an empty row.
fn row_len(t: &FloatTensor<Flex>) -> Option<usize> {
    t.layout().shape().last().copied().filter(|&n| n > 0)
}

fn flex_f32(values: Vec<f32>, like: &FloatTensor<Flex>) -> FloatTensor<Flex> {
    let shape = like.layout().shape().clone();
    FloatTensor::<Flex>::from_data(TensorData::new(values, shape))
}

/// Runs `kernel` over the two contiguous f32 operands of equal shape, or `None` when they are not.
fn binary_kernel(
    a: &FloatTensor<Flex>,
    b: &FloatTensor<Flex>,
    kernel: impl FnOnce(&[f32], &[f32], &mut [f32]),
) -> Option<FloatTensor<Flex>> {
    if a.layout().shape() != b.layout().shape() {
        return None;
    }
    let (xs, gs) = (f32_slice(a)?, f32_slice(b)?);
    let mut out = vec![0f32; xs.len()];
    kernel(xs, gs, &mut out);
    Some(flex_f32(out, a))
}

impl FusedOps for Flex {
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let Some(src) = f32_slice(&x) else {
            return Self::gelu(x);
        };
        let mut out = vec![0f32; src.len()];
        cpu_kernels::gelu(src, &mut out);
        flex_f32(out, &x)
    }

    fn exact_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        binary_kernel(&x, &grad, cpu_kernels::gelu_backward)
            .unwrap_or_else(|| Self::gelu_backward(x, grad))
    }

    fn last_dim_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (Some(src), Some(row)) = (f32_slice(&x), row_len(&x)) else {
            return composite_softmax::<Self>(x);
        };
        let mut out = vec![0f32; src.len()];
        cpu_kernels::softmax(src, row, &mut out);
        flex_f32(out, &x)
    }

    fn last_dim_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        row_len(&y)
            .and_then(|row| {
                binary_kernel(&y, &grad, |ys, gs, out| {
                    cpu_kernels::softmax_backward(ys, gs, row, out)
                })
            })
            .unwrap_or_else(|| composite_softmax_backward::<Self>(y, grad))
    }
}

/// GELU's autodiff step: keeps the input.
#[derive(Debug)]
struct GeluStep;

impl<B: FusedOps> Backward<B, 1> for GeluStep {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::exact_gelu_backward(x, grad)
        });
    }
}

/// Softmax's autodiff step: keeps the output.
#[derive(Debug)]
struct SoftmaxStep;

impl<B: FusedOps> Backward<B, 1> for SoftmaxStep {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let y = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::last_dim_softmax_backward(y, grad)
        });
    }
}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluStep.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let input = x.primitive().clone();
                prep.finish(input.clone(), B::exact_gelu(input))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::exact_gelu(x.into_primitive())),
        }
    }

    fn last_dim_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match SoftmaxStep
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::last_dim_softmax(x.primitive().clone());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::last_dim_softmax(x.into_primitive())),
        }
    }
}

fn on_flex(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// `x * Phi(x)` with the exact (erf) normal CDF, as `burn::nn::Gelu` and PyTorch's default.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x.device()) {
        return burn::tensor::activation::gelu(x);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::exact_gelu(x.into_dispatch()))
}

/// Softmax over dimension `dim`, as `burn::tensor::activation::softmax`.
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    if dim + 1 != D || !on_flex(&x.device()) {
        return burn::tensor::activation::softmax(x, dim);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::last_dim_softmax(x.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn assert_close(a: Tensor<2>, b: Tensor<2>, tol: f32) {
        let a = a.into_data().try_to_vec::<f32>().unwrap();
        let b = b.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst <= tol, "differ by {worst}");
    }

    /// Value and gradient equal Burn's GELU (libm erf) on flex, through autodiff.
    #[test]
    fn matches_burns_gelu_forward_and_backward() {
        let device = Device::flex().autodiff();
        let init = Tensor::<2>::random([33, 70], Distribution::Normal(0.0, 2.0), &device);
        let upstream = Tensor::<2>::random([33, 70], Distribution::Uniform(-1.0, 1.0), &device);

        let ours_x = init.clone().require_grad();
        let ours = gelu(ours_x.clone());
        let grads = (ours.clone() * upstream.clone()).sum().backward();
        let ours_dx = ours_x.grad(&grads).unwrap();

        let ref_x = init.require_grad();
        let reference = burn::tensor::activation::gelu(ref_x.clone());
        let grads = (reference.clone() * upstream).sum().backward();
        let ref_dx = ref_x.grad(&grads).unwrap();

        assert_close(ours.inner(), reference.inner(), 2e-6);
        assert_close(ours_dx, ref_dx, 2e-6);
    }

    /// Strided views (a transpose) and inference tensors take the right paths too.
    #[test]
    fn strided_and_untracked_inputs() {
        let device = Device::flex();
        let x = Tensor::<2>::random([8, 5], Distribution::Normal(0.0, 1.0), &device);
        let t = x.clone().transpose();
        assert_close(gelu(t.clone()), burn::tensor::activation::gelu(t), 1e-6);
        assert_close(
            gelu(x.clone()),
            burn::tensor::activation::gelu(x.clone()),
            1e-6,
        );
        // The flex path runs this crate's kernel (bit for bit), not Burn's fallback.
        let values = x.clone().into_data().try_to_vec::<f32>().unwrap();
        let mut want = vec![0f32; values.len()];
        cpu_kernels::gelu(&values, &mut want);
        assert_eq!(gelu(x).into_data().try_to_vec::<f32>().unwrap(), want);
    }

    /// Value and gradient equal Burn's softmax on flex, through autodiff, with the softmax's
    /// output also used downstream (its gradient arrives from two places).
    #[test]
    fn matches_burns_softmax_forward_and_backward() {
        let device = Device::flex().autodiff();
        let init = Tensor::<3>::random([3, 9, 21], Distribution::Normal(0.0, 3.0), &device);
        let upstream = Tensor::<3>::random([3, 9, 21], Distribution::Uniform(-1.0, 1.0), &device);
        let run = |f: &dyn Fn(Tensor<3>) -> Tensor<3>| {
            let x = init.clone().require_grad();
            let y = f(x.clone());
            let loss = (y.clone() * upstream.clone()).sum() + (y.clone() * y.clone()).sum();
            let dx = x.grad(&loss.backward()).unwrap();
            (y.inner(), dx)
        };
        let (ours, ours_dx) = run(&|x| softmax(x, 2));
        let (reference, ref_dx) = run(&|x| burn::tensor::activation::softmax(x, 2));
        let flat = |t: Tensor<3>| t.reshape([27, 21]);
        assert_close(flat(ours.clone()), flat(reference), 1e-6);
        assert_close(flat(ours_dx), flat(ref_dx), 1e-6);
        // Rows sum to one.
        let sums = ours.sum_dim(2).into_data().try_to_vec::<f32>().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6), "{sums:?}");
    }

    /// Another dimension than the last, or a strided input, still gives Burn's softmax.
    #[test]
    fn softmax_other_dims_and_views() {
        let device = Device::flex();
        let x = Tensor::<3>::random([4, 6, 5], Distribution::Normal(0.0, 1.0), &device);
        let flat = |t: Tensor<3>| t.reshape([24, 5]);
        let burns = |x: Tensor<3>, d| burn::tensor::activation::softmax(x, d);
        assert_close(flat(softmax(x.clone(), 2)), flat(burns(x.clone(), 2)), 1e-6);
        let t = x.clone().swap_dims(1, 2);
        assert_close(
            softmax(t.clone(), 2).reshape([20, 6]),
            burns(t, 2).reshape([20, 6]),
            1e-6,
        );
        assert_close(flat(softmax(x.clone(), 1)), flat(burns(x.clone(), 1)), 1e-6);
        // The last dimension of a contiguous tensor runs this crate's kernel, bit for bit.
        let values = x.clone().into_data().try_to_vec::<f32>().unwrap();
        let mut want = vec![0f32; values.len()];
        cpu_kernels::softmax(&values, 5, &mut want);
        assert_eq!(softmax(x, 2).into_data().try_to_vec::<f32>().unwrap(), want);
    }
}
