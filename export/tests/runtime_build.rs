//! The bundled runtime compiles warning-free (`-Wall -Wextra -Werror`, as the exported Makefile
//! builds it) at every optimization level a user may pick, on every target: its inline
//! assembly loops need up to 14 registers, which GCC cannot always find (an unoptimized build
//! keeps r7 as the frame pointer; before the fix, -O0, -Os and -O3 failed on the Cortex-M4 with
//! "impossible constraints").

mod common;

use export::Target;
use export::codegen::{MAKE_TARGETS, RUNTIME_FILES};
use std::process::Command;

#[test]
fn runtime_compiles_at_every_optimization_level() {
    let targets = common::available(&Target::ALL);
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in RUNTIME_FILES {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    for t in targets {
        // the Makefile's flags for `t` (host: the plain -O2 build, not the sanitized one)
        let make = if t == Target::Host {
            "host"
        } else {
            t.make_target()
        };
        let &(_, cc, flags, ..) = MAKE_TARGETS.iter().find(|m| m.0 == make).unwrap();
        for level in ["-O0", "-Og", "-O1", "-Os", "-O3"] {
            let flags = flags
                .replace("-O2", level)
                .replace("$(PICOLIBC)", "--specs=picolibc.specs");
            for src in ["nas_kernels.c", "nas_sparse.c"] {
                let out = Command::new(cc)
                    .current_dir(dir.path())
                    .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-c", src, "-o"])
                    .arg(format!("{src}.o"))
                    .args(flags.split_whitespace())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{t:?} {level} {src}:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
