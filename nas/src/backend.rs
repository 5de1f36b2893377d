//! The compute backend, chosen at run time.

use anyhow::Result;
use burn::tensor::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (fastest CPU backend here).
    Flex,
    /// The ndarray CPU backend (deprecated upstream, kept for comparison).
    Ndarray,
    /// GPU through wgpu (Vulkan/Metal/DX12); needs a build with `--features wgpu`.
    Wgpu,
}

impl Backend {
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[allow(deprecated)] // still a useful second CPU backend to compare against
            Backend::Ndarray => Ok(Device::ndarray()),
            Backend::Wgpu => wgpu_device(),
        }
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device> {
    anyhow::bail!(
        "this `nas` was built without the wgpu backend; rebuild with `cargo build --release -p nas --features wgpu`, or use --backend flex"
    )
}
