//! glibc malloc settings for training: keep freed tensor buffers in the heap instead of handing
//! them back to the kernel.
//!
//! Burn's CPU backends allocate fresh buffers for most ops' outputs. glibc serves blocks over
//! its (dynamic) mmap threshold with mmap and unmaps them on free, and trims the heap top back
//! to the kernel, so every training step page-faults its activations in again. Raising the
//! mmap threshold to glibc's maximum (32 MiB) and switching trimming off made training with
//! flex 1.4x (KWT-1, batch 32) and 1.65x (KWT-tiny, batch 64) faster on the project's 2-core VM
//! (experiments/kwt_throughput/), at the price of the process keeping its peak heap until it
//! exits. Blocks over 32 MiB (a key-word TinyFormer's attention maps: 960 tokens squared per
//! head and clip) would still be mmapped and page-faulted in on every step, which cost the
//! speech search as much kernel time as compute: mmap is switched off altogether (glibc still
//! falls back to it where the heap cannot grow), halving that search's wall time.

/// Applies the settings unless the user chose their own through glibc's environment variables
/// (`MALLOC_*_` or `glibc.malloc.*` in `GLIBC_TUNABLES`).
pub fn tune_for_training() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = [
            "MALLOC_MMAP_THRESHOLD_",
            "MALLOC_MMAP_MAX_",
            "MALLOC_TRIM_THRESHOLD_",
            "MALLOC_TOP_PAD_",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
        if user_set {
            return;
        }
        // SAFETY: mallopt only changes malloc's tuning parameters; it is called once, first
        // thing in main, before any other thread exists.
        let ok = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_TOP_PAD, 64 << 20) == 1
        };
        if !ok {
            tracing::debug!("glibc rejected a malloc setting; training runs with its defaults");
        }
    }
}
