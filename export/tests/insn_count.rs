//! Instruction counts under QEMU (the project's TCG plugin, `export/tools/insn_count.c`) of the
//! three attention stages of pulp-transformer: fused MHSA, fused FWSA, and a baseline composed
//! the way the paper's CMSIS-NN comparison is (per-op Linear, explicit head transposes, a
//! separate MatMul, Softmax and MatMul: our layer-wise schedule). One inference's count is the
//! difference of a 2-run and a 1-run program, so start-up code cancels exactly.
//!
//! `cargo test -p export --test insn_count -- --nocapture` prints the table recorded in
//! experiments/export/README.md; skipped (with a note) when the tools are missing.

mod common;

use std::path::Path;
use std::process::Command;

use common::Rng;
use export::plan::{Int8Options, estimate};
use export::{ExportLimits, Target, export_c_with};
use quant::Graph;

use common::attention as graphs;

fn sh(cmd: &mut Command) -> Result<String, String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
    t.push_str(&String::from_utf8_lossy(&o.stderr));
    if o.status.success() {
        Ok(t)
    } else {
        Err(format!("{cmd:?} failed: {t}"))
    }
}

/// `(compiler, flags, qemu command)` of a cross target.
fn toolchain(t: Target) -> (&'static str, Vec<&'static str>, Vec<&'static str>) {
    let pico = [
        "--specs=picolibc.specs",
        "--oslib=semihost",
        "--crt0=semihost",
    ];
    match t {
        Target::CortexM4 | Target::CortexM7 => {
            let mut f = if t == Target::CortexM4 {
                vec!["-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16"]
            } else {
                vec!["-mcpu=cortex-m7", "-mfpu=fpv5-d16"]
            };
            f.extend(["-mthumb", "-mfloat-abi=hard"]);
            f.extend(pico);
            f.extend([
                "-Wl,--defsym=__flash=0x0",
                "-Wl,--defsym=__flash_size=0x400000",
                "-Wl,--defsym=__ram=0x20000000",
                "-Wl,--defsym=__ram_size=0x400000",
            ]);
            let board = if t == Target::CortexM4 {
                "mps2-an386"
            } else {
                "mps2-an500"
            };
            ("arm-none-eabi-gcc", f, vec!["qemu-system-arm", "-M", board])
        }
        _ => {
            let mut f = vec!["-march=rv32imc", "-mabi=ilp32"];
            f.extend(pico);
            f.extend([
                "-Wl,--defsym=__flash=0x80000000",
                "-Wl,--defsym=__flash_size=0x400000",
                "-Wl,--defsym=__ram=0x80400000",
                "-Wl,--defsym=__ram_size=0x400000",
            ]);
            (
                "riscv64-unknown-elf-gcc",
                f,
                vec![
                    "qemu-system-riscv32",
                    "-M",
                    "virt",
                    "-cpu",
                    "rv32,a=false,f=false,d=false",
                    "-bios",
                    "none",
                ],
            )
        }
    }
}

/// Instructions of one `model_run` of `g` on `t`.
fn count(g: &Graph, opts: &Int8Options, t: Target, plugin: &Path, dir: &Path) -> u64 {
    let proj = dir.join("proj");
    let _ = std::fs::remove_dir_all(&proj);
    export_c_with(g, "model", &proj, &ExportLimits::default(), opts).unwrap();
    let len: usize = g.inputs.iter().map(|i| g.tensor(i).unwrap().numel()).sum();
    let x = Rng(5).i8s(len);
    let vals: Vec<String> = x.iter().map(|v| v.to_string()).collect();
    let main = format!(
        "#include <stdio.h>\n#include \"model.h\"\n\
         static const int8_t in[MODEL_INPUT_LEN] = {{{}}};\n\
         static int8_t out[MODEL_OUTPUT_LEN];\n\
         int main(void) {{ int r, i, s = 0;\n\
         for (r = 0; r < REPS; r++) model_run(in, out);\n\
         for (i = 0; i < MODEL_OUTPUT_LEN; i++) s += out[i];\n\
         printf(\"sum %d\\n\", s); return 0; }}\n",
        vals.join(",")
    );
    std::fs::write(proj.join("main.c"), main).unwrap();
    let (cc, flags, qemu) = toolchain(t);
    let mut counts = Vec::new();
    for reps in [1, 2] {
        let elf = proj.join(format!("r{reps}.elf"));
        sh(Command::new(cc)
            .current_dir(&proj)
            .args(["-std=c99", "-O2", &format!("-DREPS={reps}")])
            .args(&flags)
            .args(["main.c", "model.c", "nas_kernels.c", "-o"])
            .arg(&elf))
        .unwrap();
        let out = sh(Command::new("timeout")
            .arg("120")
            .args(&qemu)
            .args(["-nographic", "-semihosting", "-kernel"])
            .arg(&elf)
            .arg("-plugin")
            .arg(format!("{},lo=0,hi=0xffffffff", plugin.display()))
            .args(["-d", "plugin"]))
        .unwrap();
        let n: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("insns "))
            .unwrap_or_else(|| panic!("no count in {out}"))
            .trim()
            .parse()
            .unwrap();
        counts.push(n);
    }
    counts[1] - counts[0]
}

#[test]
fn attention_instruction_counts() {
    let targets = common::available(&[Target::CortexM4, Target::Rv32]);
    if targets.is_empty() || Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("note: skipped (cross tools or gcc missing)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("libinsn_count.so");
    sh(Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&plugin)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/insn_count.c")))
    .unwrap();
    let tgt = cost::target::Target::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/targets/stm32l4.ron"),
    )
    .unwrap();
    let fused = Int8Options::default();
    let layer = Int8Options {
        fuse_attention: false,
        ..Default::default()
    };
    println!("| shape | target | variant | MACs | instructions | instr/MAC | baseline / variant |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &(name, s, e, p, h) in &graphs::SHAPES {
        let m = graphs::mhsa((s, e, p, h), 5);
        let f = graphs::fwsa((s, e, p, h), 6);
        let base_macs = estimate(&m, &tgt, &layer).unwrap().1.macs;
        for &t in &targets {
            let base = count(&m, &layer, t, &plugin, dir.path());
            let rows = [
                ("baseline (layer-wise)", base_macs, base),
                (
                    "MHSA fused",
                    estimate(&m, &tgt, &fused).unwrap().1.macs,
                    count(&m, &fused, t, &plugin, dir.path()),
                ),
                (
                    "FWSA fused",
                    estimate(&f, &tgt, &fused).unwrap().1.macs,
                    count(&f, &fused, t, &plugin, dir.path()),
                ),
            ];
            for (v, macs, n) in rows {
                assert!(n > 0);
                println!(
                    "| {name} S={s} E={e} P={p} H={h} | {t} | {v} | {macs} | {n} | {:.2} | {:.2}x |",
                    n as f64 / macs as f64,
                    base as f64 / n as f64
                );
            }
        }
    }
}
