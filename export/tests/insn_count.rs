//! Instruction counts under QEMU (the project's TCG plugin, `export/tools/insn_count.c`) of the
//! three attention stages of pulp-transformer: fused MHSA, fused FWSA, and a baseline composed
//! the way the paper's CMSIS-NN comparison is (per-op Linear, explicit head transposes, a
//! separate MatMul, Softmax and MatMul: our layer-wise schedule). One inference's count is the
//! difference of a 2-run and a 1-run program, so start-up code cancels exactly.
//!
//! The plugin also counts every function of the ELF (`nm -S` ranges), which gives the
//! per-kernel instruction counts the cost model's cycle tables are refit from (printed by the
//! same test: see `refit`).
//!
//! Run the test binary with `--nocapture` (see experiments/export/README.md) to print the
//! tables recorded there; skipped (with a note) when the tools are missing. `NAS_INSN_KEEP=DIR`
//! keeps the generated projects under DIR.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{Rng, pruned};
use export::plan::{Exec, Int8Options, TilePolicy, estimate, node_macs, plan};
use export::{ExportLimits, Target, export_c_with};
use quant::ptq::{PtqOptions, quantize_tinyformer};
use quant::{Graph, GraphBuilder};
use training::tinyformer::{
    DotArch, Downsample, MobileNetArch, Pooling, TinyFormerArch, TransformerArch, fixtures,
};

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
            // as the exported Makefile's rv32 target (export::codegen::MAKE_TARGETS)
            let mut f = vec!["-falign-loops=4", "-march=rv32imc", "-mabi=ilp32"];
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

/// One inference: total instructions and instructions per function (2-run minus 1-run), and
/// on the targets with a cycle model (`models_cycles`: Cortex-M4, Cortex-M7, RV32) the plugin's
/// modelled cycles likewise (empty / 0 elsewhere).
struct Count {
    total: u64,
    funcs: BTreeMap<String, u64>,
    cycles: u64,
    func_cycles: BTreeMap<String, u64>,
}

impl Count {
    /// Modelled cycles of the functions `keep` selects (a kernel and its helpers).
    fn cycles_of(&self, keep: impl Fn(&str) -> bool) -> u64 {
        self.func_cycles
            .iter()
            .filter(|(f, _)| keep(f))
            .map(|(_, &c)| c)
            .sum()
    }
}

/// The plugin's cycle model for `t` (export/tools/insn_count.c): `cycles=m4`, the Cortex-M4
/// TRM's timing table, on the M4; `cycles=m7`, a dual-issue pipeline model from public
/// measurements, on the M7; `cycles=rv32`, the CV32E40P user manual's, on RV32.
fn cycle_model(t: Target) -> Option<&'static str> {
    match t {
        Target::CortexM4 => Some("m4"),
        Target::CortexM7 => Some("m7"),
        Target::Rv32 => Some("rv32"),
        _ => None,
    }
}

/// Whether the plugin models cycles for `t` (`cycle_model`).
fn models_cycles(t: Target) -> bool {
    cycle_model(t).is_some()
}

/// The core whose timing model gives `t`'s cycles (for the printed tables).
fn modelled_core(t: Target) -> &'static str {
    match t {
        Target::Rv32 => "CV32E40P",
        Target::CortexM7 => "Cortex-M7",
        _ => "Cortex-M4",
    }
}

/// MAC classes' entries are per MAC instruction: `simd_width` int8 MACs (2 on Cortex-M, 1 on
/// RV32).
fn simd_of(t: Target) -> f64 {
    if t == Target::Rv32 { 1.0 } else { 2.0 }
}

/// `name lo hi` of every function of `elf` (the plugin's `ranges=` file).
fn function_ranges(t: Target, elf: &Path) -> String {
    let nm = match t {
        Target::Rv32 => "riscv64-unknown-elf-nm",
        _ => "arm-none-eabi-nm",
    };
    let out = sh(Command::new(nm)
        .args(["-S", "-n", "--defined-only"])
        .arg(elf))
    .unwrap();
    // (start, size if nm knows it, name) of every text symbol, by address; Thumb function
    // symbols have bit 0 set: instruction addresses are even
    let mut syms: Vec<(u64, Option<u64>, &str)> = Vec::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (addr, size, ty, name) = match f[..] {
            [addr, size, ty, name] => (addr, Some(size), ty, name),
            [addr, ty, name] => (addr, None, ty, name),
            _ => continue,
        };
        if matches!(ty, "t" | "T" | "W" | "w") {
            let lo = u64::from_str_radix(addr, 16).unwrap() & !1;
            syms.push((lo, size.map(|s| u64::from_str_radix(s, 16).unwrap()), name));
        }
    }
    let mut r = String::new();
    for (i, &(lo, size, name)) in syms.iter().enumerate() {
        // an assembly routine without a size (libgcc's __aeabi_uldivmod) runs to the next
        // symbol; local labels ($t, $d, $x mapping symbols) are not functions
        let hi = match size {
            Some(s) => lo + s,
            None if name.starts_with('$') || name.starts_with(".L") => continue,
            None => match syms[i + 1..].iter().find(|n| n.0 > lo) {
                Some(n) => n.0,
                None => continue,
            },
        };
        if hi > lo {
            r.push_str(&format!("{name} {lo:x} {hi:x}\n"));
        }
    }
    r
}

/// Instructions of one `model_run` of `g` on `t`, in total and per function.
fn count(g: &Graph, opts: &Int8Options, t: Target, plugin: &Path, dir: &Path, tag: &str) -> Count {
    let proj = match std::env::var_os("NAS_INSN_KEEP") {
        Some(d) => Path::new(&d).join(tag),
        None => dir.join("proj"),
    };
    let _ = std::fs::remove_dir_all(&proj);
    export_c_with(g, "model", &proj, &ExportLimits::default(), opts).unwrap();
    let len: usize = g.inputs.iter().map(|i| g.tensor(i).unwrap().numel()).sum();
    let x = Rng(5).i8s(len);
    let vals: Vec<String> = x.iter().map(|v| v.to_string()).collect();
    // the run count is read from a volatile: the 1-run and 2-run programs have the same code,
    // so every function has the same address in both (a constant bound made `main` 14 bytes
    // longer on RV32 for 2 runs, moving every kernel by 2 bytes, which changes the CV32E40P
    // model's cycles: a taken branch to a non-word-aligned 32-bit instruction costs one more)
    let main = format!(
        "#include <stdio.h>\n#include \"model.h\"\n\
         static const int8_t in[MODEL_INPUT_LEN] = {{{}}};\n\
         static int8_t out[MODEL_OUTPUT_LEN];\n\
         static volatile int reps = REPS;\n\
         int main(void) {{ int r, i, s = 0;\n\
         for (r = 0; r < reps; r++) model_run(in, out);\n\
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
            .args(["main.c", "model.c", "nas_kernels.c", "nas_sparse.c", "-o"])
            .arg(&elf))
        .unwrap();
        let ranges = proj.join(format!("r{reps}.ranges"));
        std::fs::write(&ranges, function_ranges(t, &elf)).unwrap();
        let out = sh(Command::new("timeout")
            .arg("120")
            .args(&qemu)
            .args(["-nographic", "-semihosting", "-kernel"])
            .arg(&elf)
            .arg("-plugin")
            .arg(format!(
                "{},lo=0,hi=0xffffffff,ranges={}{}",
                plugin.display(),
                ranges.display(),
                cycle_model(t)
                    .map(|m| format!(",cycles={m}"))
                    .unwrap_or_default()
            ))
            .args(["-d", "plugin"]))
        .unwrap();
        let total: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("insns "))
            .unwrap_or_else(|| panic!("no count in {out}"))
            .trim()
            .parse()
            .unwrap();
        let per_func = |prefix: &str| {
            let mut funcs = BTreeMap::new();
            for l in out.lines().filter_map(|l| l.strip_prefix(prefix)) {
                let (name, n) = l.rsplit_once(' ').unwrap();
                *funcs.entry(name.to_string()).or_insert(0u64) += n.trim().parse::<u64>().unwrap();
            }
            funcs
        };
        let cycles = match out.lines().find_map(|l| l.strip_prefix("cycles ")) {
            Some(c) => c.trim().parse().unwrap(),
            None if models_cycles(t) => panic!("no modelled cycles in {out}"),
            None => 0,
        };
        counts.push(Count {
            total,
            funcs: per_func("range "),
            cycles,
            func_cycles: per_func("rcycles "),
        });
    }
    let diff = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>, sub: fn(u64, u64) -> u64| {
        b.iter()
            .map(|(f, &n)| (f.clone(), sub(n, a.get(f).copied().unwrap_or(0))))
            .filter(|&(_, n)| n > 0)
            .collect()
    };
    let c = Count {
        total: counts[1].total - counts[0].total,
        // a function's instructions never shrink from one run to two (an underflow panics)
        funcs: diff(&counts[0].funcs, &counts[1].funcs, |n, m| n - m),
        // saturating: `main` differs between the two programs (its loop), and a taken branch's
        // refill is charged to the function of the branch, so its modelled cycles need not
        // grow; the kernels' code is the same in both
        cycles: counts[1].cycles.saturating_sub(counts[0].cycles),
        func_cycles: diff(
            &counts[0].func_cycles,
            &counts[1].func_cycles,
            u64::saturating_sub,
        ),
    };
    if t == Target::Rv32 {
        // every RV32 instruction costs at least one CV32E40P cycle; the stalls, multi-cycle
        // instructions and taken branches of these kernels stay well under 3 cycles each on
        // average
        assert!(
            c.cycles >= c.total && c.cycles <= 3 * c.total,
            "{tag}: {} modelled cycles for {} instructions",
            c.cycles,
            c.total
        );
    }
    if t == Target::CortexM7 {
        // the M7 issues at most two instructions a cycle; stalls, multi-cycle instructions and
        // mispredicted branches stay well under 3 cycles an instruction on average
        assert!(
            2 * c.cycles >= c.total && c.cycles <= 3 * c.total,
            "{tag}: {} modelled cycles for {} instructions",
            c.cycles,
            c.total
        );
    }
    c
}

/// Work of one stage as the cost model prices it, from the schedule actually exported.
#[derive(Default, Clone, Copy)]
struct Work {
    linear_macs: f64,
    linear_outs: f64,
    matmul_macs: f64,
    matmul_outs: f64,
    softmax_elems: f64,
    copy_elems: f64,
    att_macs: f64,
    att_softmax: f64,
    att_requant: f64,
}

fn work(g: &Graph, opts: &Int8Options) -> Work {
    let p = plan(g, opts).unwrap();
    let mut w = Work::default();
    for (i, n) in g.nodes.iter().enumerate() {
        let out = g.tensor(&n.output).unwrap().numel() as f64;
        match (p.exec[i], &n.op) {
            (Exec::Kernel, quant::Op::Linear { .. }) => {
                w.linear_macs += node_macs(g, i) as f64;
                w.linear_outs += out;
            }
            (Exec::Kernel, quant::Op::MatMul { .. }) => {
                w.matmul_macs += node_macs(g, i) as f64;
                w.matmul_outs += out;
            }
            (Exec::Kernel, quant::Op::Softmax(_)) => w.softmax_elems += out,
            (Exec::Kernel, quant::Op::Transpose { .. }) => w.copy_elems += out,
            (Exec::Fused(f), _) => {
                let fa = &p.fused[f];
                let scores = (fa.heads * fa.rows * fa.keys) as f64;
                w.att_macs += fa.macs() as f64;
                w.att_softmax += scores;
                w.att_requant += scores + (fa.heads * fa.rows * fa.v_inner) as f64;
            }
            _ => {}
        }
    }
    w
}

/// Instructions (or modelled cycles: `funcs` = `Count::func_cycles`) of one stage by kernel
/// class: Linear (both layouts), MatMul, Softmax, Transpose (copy), the fused attention kernel
/// (with the softmax and dot-product helpers it calls), and the rest (model_run, memcpy).
fn by_class(funcs: &BTreeMap<String, u64>, fused: bool) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    for (f, &n) in funcs {
        let class = if f.contains("linear") {
            "linear"
        } else if f.contains("transpose") || f.contains("memcpy") {
            // (the transpose copies runs of bytes by memcpy; the graph's output copy too)
            "copy"
        } else if fused
            && (f.contains("attention")
                || f.contains("fwsa")
                || f.starts_with("nas_")
                || libgcc_division(f))
        {
            "attention"
        } else if f.contains("softmax")
            || f.contains("iexp")
            || f.contains("recip")
            || libgcc_division(f)
        {
            // (the row's reciprocal, `nas_recip_prepare`, and any 64-bit division are the
            // softmax's: the only callers here)
            "softmax"
        } else if f.contains("matmul") || f.contains("dot") {
            "matmul"
        } else {
            "other"
        };
        *m.entry(class).or_insert(0) += n;
    }
    m
}

/// Assumed cycles per instruction (QEMU counts instructions, not cycles): Cortex-M4 issues
/// one instruction per cycle with extra cycles on loads and taken branches; the M7 dual-issues;
/// a small in-order RV32IMC core is close to the M4. Assumptions, not measurements.
fn assumed_cpi(t: Target) -> f64 {
    match t {
        Target::CortexM4 => 1.25,
        Target::CortexM7 => 0.8,
        _ => 1.2,
    }
}

/// Least squares `y = a x1 + b x2` (two unknowns, normal equations).
fn lsq2(rows: &[(f64, f64, f64)]) -> (f64, f64) {
    let (mut s11, mut s12, mut s22, mut s1y, mut s2y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(x1, x2, y) in rows {
        s11 += x1 * x1;
        s12 += x1 * x2;
        s22 += x2 * x2;
        s1y += x1 * y;
        s2y += x2 * y;
    }
    let det = s11 * s22 - s12 * s12;
    ((s1y * s22 - s2y * s12) / det, (s2y * s11 - s1y * s12) / det)
}

/// Sum of instructions over sum of work units, `f` giving `(work, instructions)` per stage.
fn ratio(runs: &[Run], f: impl Fn(&Work, &BTreeMap<&str, u64>) -> (f64, f64)) -> f64 {
    let (mut a, mut b) = (0.0, 0.0);
    for (w, m) in runs {
        let (x, y) = f(w, m);
        a += x;
        b += y;
    }
    b / a
}

/// One measured stage: its work and its instructions by class.
type Run = (Work, BTreeMap<&'static str, u64>);

/// Per work unit of the attention stages' classes (instructions, or modelled cycles when
/// `runs` holds cycles): linear (per MAC), requant (per output), softmax, copy (per element),
/// layer-wise MatMul and fused attention's products (per MAC).
struct StageFit {
    lin_mac: f64,
    requant: f64,
    softmax: f64,
    copy: f64,
    mm_layer: f64,
    mm_fused: f64,
}

fn stage_fit(runs: &[Run]) -> StageFit {
    let get = |m: &BTreeMap<&str, u64>, k: &str| m.get(k).copied().unwrap_or(0) as f64;
    // Linear: instructions = a MACs + b outputs (the per-output part is the requantization
    // and block set-up: the cost model's `requant` work)
    let lin: Vec<(f64, f64, f64)> = runs
        .iter()
        .filter(|(w, _)| w.linear_macs > 0.0)
        .map(|(w, m)| (w.linear_macs, w.linear_outs, get(m, "linear")))
        .collect();
    let (lin_mac, requant) = lsq2(&lin);
    let softmax = ratio(runs, |w, m| (w.softmax_elems, get(m, "softmax")));
    let copy = ratio(runs, |w, m| (w.copy_elems, get(m, "copy")));
    let mm_layer = ratio(runs, |w, m| {
        (w.matmul_macs, get(m, "matmul") - requant * w.matmul_outs)
    });
    // the fused kernel: its products after the softmax and requantization it also does
    let mm_fused = ratio(runs, |w, m| {
        (
            w.att_macs,
            get(m, "attention") - softmax * w.att_softmax - requant * w.att_requant,
        )
    });
    StageFit {
        lin_mac,
        requant,
        softmax,
        copy,
        mm_layer,
        mm_fused,
    }
}

/// The refit of a target's cycle-table entries from the measured stages (see the README):
/// instructions per work unit, times the assumed CPI, MAC classes per MAC instruction
/// (`simd` int8 MACs).
fn refit(t: Target, simd: f64, runs: &[Run]) {
    let cpi = assumed_cpi(t);
    let StageFit {
        lin_mac,
        requant,
        softmax,
        copy,
        mm_layer,
        mm_fused,
    } = stage_fit(runs);
    println!(
        "| {t} | {:.2} | {:.2} | {:.2} (layer-wise MatMul: {:.2}) | {:.2} | {:.2} | {:.2} | \
         `linear: {:.1}, matmul: {:.1}, softmax: {:.1}, requant: {:.1}, copy: {:.1}` |",
        cpi,
        lin_mac,
        mm_fused,
        mm_layer,
        softmax,
        requant,
        copy,
        cpi * simd * lin_mac,
        cpi * simd * mm_fused,
        cpi * softmax,
        cpi * requant,
        cpi * copy
    );
}

/// One class of the modelled-cycle tables: `(class, work unit, instructions per unit, modelled
/// cycles per unit, simd factor of its entry)`.
type Modelled = (&'static str, &'static str, f64, f64, f64);

/// Prints, for the classes of one fit, instructions and modelled cycles per work unit, the
/// modelled CPI (cycles / instructions of that class) beside the assumed one, and the
/// cycle-table entries both give (per unit x `simd` for the MAC classes).
fn print_modelled(t: Target, what: &str, rows: &[Modelled]) {
    let cpi = assumed_cpi(t);
    println!(
        "\n{t} modelled cycles ({what}; {} timing table of export/tools/insn_count.c)\n\n\
         | class | work unit | instr / unit | modelled cycles / unit | modelled CPI | assumed CPI \
         | entry (assumed CPI) | entry (modelled) |",
        modelled_core(t)
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut entries = Vec::new();
    for &(class, unit, i, c, simd) in rows {
        println!(
            "| {class} | {unit} | {i:.2} | {c:.2} | {:.3} | {cpi} | {:.1} | {:.1} |",
            c / i,
            cpi * simd * i,
            simd * c
        );
        if !class.contains('(') {
            entries.push(format!("{class}: {:.1}", simd * c));
        }
    }
    println!(
        "\nmodelled cycle-table entries ({t}, {what}): `{}`",
        entries.join(", ")
    );
}

/// The refit of `refit` on the modelled cycles (`cruns`) beside the instructions (`runs`).
fn modelled_refit(t: Target, simd: f64, runs: &[Run], cruns: &[Run]) {
    let (i, c) = (stage_fit(runs), stage_fit(cruns));
    print_modelled(
        t,
        "attention stages",
        &[
            ("linear", "MAC", i.lin_mac, c.lin_mac, simd),
            (
                "matmul",
                "MAC (fused attention)",
                i.mm_fused,
                c.mm_fused,
                simd,
            ),
            ("matmul (layer-wise)", "MAC", i.mm_layer, c.mm_layer, simd),
            ("softmax", "element", i.softmax, c.softmax, 1.0),
            ("requant", "output", i.requant, c.requant, 1.0),
            ("copy", "element", i.copy, c.copy, 1.0),
        ],
    );
}

/// The cost model's target `configs/targets/{file}.ron`.
fn cost_target(file: &str) -> cost::target::Target {
    cost::target::Target::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../configs/targets/{file}.ron")),
    )
    .unwrap()
}

/// The cycle-modelled cores among `installed`, each with the cost model's target of that core
/// (M4: stm32l4, M7: stm32f746, RV32: rv32imc).
fn modelled_cost_targets(installed: &[Target]) -> Vec<(Target, cost::target::Target)> {
    [
        (Target::CortexM4, "stm32l4"),
        (Target::CortexM7, "stm32f746"),
        (Target::Rv32, "rv32imc"),
    ]
    .into_iter()
    .filter(|(t, _)| installed.contains(t))
    .map(|(t, file)| (t, cost_target(file)))
    .collect()
}

/// The emulated targets whose tools are installed, a scratch folder and the built plugin; `None`
/// (with a note) when the tools are missing.
fn setup() -> Option<(Vec<Target>, tempfile::TempDir, std::path::PathBuf)> {
    let targets = common::available(&[Target::CortexM4, Target::CortexM7, Target::Rv32]);
    if targets.is_empty() || Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("note: skipped (cross tools or gcc missing)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("libinsn_count.so");
    sh(Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&plugin)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/insn_count.c")))
    .unwrap();
    Some((targets, dir, plugin))
}

/// Hand-written RV32 loops (no compressed instructions where the timing must not depend on
/// the assembler, `norelax` so that calls stay `auipc` + `jalr`) whose CV32E40P cycles follow
/// from the user manual's table: `kern(n)` runs `n` iterations of a load, a use of it (load
/// data hazard, +1), MUL (1), MULHU (5), ADDI and a branch taken `n - 1` times (3, not taken
/// 1), then DIVU (`RV_DIV`), `la` (AUIPC + ADDI) and `jr` of the register just written (2 +
/// 1, jalr data hazard) and `ret` (2): `13 n + 7 + RV_DIV` cycles, `6 n + 7` instructions.
/// `kern_mis(n)` is the loop alone after a 2-byte `c.li`, so its head (a 32-bit LW) is not
/// word-aligned: each taken branch costs 4, `14 n + 1` cycles, `6 n + 3` instructions.
/// `kern_ret` is a lone `ret` reading the `ra` its caller's `jalr` just wrote (2 + 1, the
/// hazard across two translation blocks). `kern_page` loads into `t1` as the last instruction
/// of a 4 KiB page and uses it as the first of the next (QEMU ends a translation block at a
/// page boundary): MV, LW, ADD + 1 and RET, 6 cycles, 4 instructions. `main` calls the four
/// through `auipc ra` + `jalr` (a jalr data hazard each).
const RV32_LOOPS: &str = "
    .text
    .option norelax
    .option norvc
    .balign 4
    .globl main
    .type main, @function
main:
    addi sp, sp, -16
    sw ra, 12(sp)
    sw zero, 0(sp)
    li a0, 10
    call kern
    li a0, 10
    call kern_mis
    call kern_ret
    call kern_page
    lw ra, 12(sp)
    addi sp, sp, 16
    li a0, 0
    ret
    .size main, .-main

    .balign 4
    .globl kern
    .type kern, @function
kern:
    li t0, 0
    mv t2, sp
1:  lw t1, 0(t2)
    add t0, t0, t1
    mul t3, t0, t0
    mulhu t3, t0, t0
    addi a0, a0, -1
    bnez a0, 1b
    divu t3, t0, t2
    la t4, 2f
    jr t4
2:  ret
    .size kern, .-kern

    .balign 4
    .globl kern_ret
    .type kern_ret, @function
kern_ret:
    ret
    .size kern_ret, .-kern_ret

    .balign 4
    .globl kern_mis
    .type kern_mis, @function
kern_mis:
    .option rvc
    c.li t0, 0
    .option norvc
    mv t2, sp
1:  lw t1, 0(t2)
    add t0, t0, t1
    mul t3, t0, t0
    mulhu t3, t0, t0
    addi a0, a0, -1
    bnez a0, 1b
    ret
    .size kern_mis, .-kern_mis

    .balign 4096
    .skip 4088
    .globl kern_page
    .type kern_page, @function
kern_page:
    mv t2, sp
    lw t1, 0(t2)
    add t0, t0, t1
    ret
    .size kern_page, .-kern_page
";

/// (instructions, modelled cycles) per function, and the plugin's "insns" / "range" lines.
type LoopRun<'a> = (BTreeMap<&'a str, (u64, u64)>, Vec<String>);

/// Builds the hand-written assembly `asm` for `t` and returns a runner: given extra plugin
/// options (e.g. `,cycles=m7`), it runs the program under QEMU and returns (instructions,
/// modelled cycles) per function of `names`, and the plugin's "insns" / "range" lines.
fn known_loops<'a>(
    t: Target,
    dir: &Path,
    plugin: &'a Path,
    asm: &str,
    names: &'a [&'a str],
) -> impl Fn(&str) -> LoopRun<'a> + 'a {
    let (cc, flags, qemu) = toolchain(t);
    let src = dir.join("loops.S");
    let elf = dir.join("loops.elf");
    std::fs::write(&src, asm).unwrap();
    sh(Command::new(cc).args(&flags).arg(&src).arg("-o").arg(&elf)).unwrap();
    let ranges = dir.join("loops.ranges");
    std::fs::write(&ranges, function_ranges(t, &elf)).unwrap();
    move |opts: &str| {
        let out = sh(Command::new("timeout")
            .arg("60")
            .args(&qemu)
            .args(["-nographic", "-semihosting", "-kernel"])
            .arg(&elf)
            .arg("-plugin")
            .arg(format!(
                "{},lo=0,hi=0xffffffff,ranges={}{opts}",
                plugin.display(),
                ranges.display()
            ))
            .args(["-d", "plugin"]))
        .unwrap();
        let get = |prefix: &str, f: &str| -> u64 {
            out.lines()
                .find_map(|l| l.strip_prefix(prefix)?.strip_prefix(f)?.strip_prefix(' '))
                .map_or(0, |n| n.trim().parse().unwrap())
        };
        let funcs = names
            .iter()
            .map(|&f| (f, (get("range ", f), get("rcycles ", f))))
            .collect();
        let counts = out
            .lines()
            .filter(|l| l.starts_with("insns ") || l.starts_with("range "))
            .map(String::from)
            .collect();
        (funcs, counts)
    }
}

/// The CV32E40P model's fixed division time (`RV_DIV` in export/tools/insn_count.c).
const RV_DIV: u64 = 19;

/// `cycles=rv32` on `RV32_LOOPS`: the exact cycles of the manual's table, `div=N` overriding
/// the division's, and instruction counts identical with and without the cycle model.
#[test]
fn rv32_cycle_model_on_known_loops() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    if !targets.contains(&Target::Rv32) {
        return;
    }
    let names = ["main", "kern", "kern_mis", "kern_ret", "kern_page"];
    // per function: (instructions, modelled cycles), and the plugin's "range" lines
    let run = known_loops(Target::Rv32, dir.path(), &plugin, RV32_LOOPS, &names);
    let n = 10;
    let (plain, plain_counts) = run("");
    let (m, counts) = run(",cycles=rv32");
    let (m3, counts3) = run(",cycles=rv32,div=3");
    assert_eq!(
        counts, plain_counts,
        "instruction counts change with the cycle model"
    );
    assert_eq!(counts3, plain_counts);
    assert_eq!(plain["kern"].0, 6 * n + 7);
    assert_eq!(plain["kern_mis"].0, 6 * n + 3);
    assert_eq!(m["kern"], (6 * n + 7, 13 * n + 7 + RV_DIV));
    assert_eq!(m3["kern"], (6 * n + 7, 13 * n + 7 + 3));
    assert_eq!(m["kern_mis"], (6 * n + 3, 14 * n + 1));
    assert_eq!(m["kern_ret"], (1, 3));
    assert_eq!(m["kern_page"], (4, 6));
    // 17 instructions, four of them calls through a register written just before (2 + 1);
    // `ret` returns into the C start-up code, which may add 1 (a non-word-aligned 32-bit
    // instruction there)
    assert_eq!(m["main"].0, 17);
    assert!((26..=27).contains(&m["main"].1), "main: {:?}", m["main"]);
    println!("RV32 known loops (n = {n}): {m:?}");
}

/// Hand-written Thumb-2 loops whose Cortex-M4 cycles follow from the rules of `cycles=m4`
/// (export/tools/insn_count.c, "The Cortex-M4 model"; P = 2, the refill of a taken branch).
/// `kern_al(n)` and `kern_un(n)` run the same `n` iterations of three groups of three
/// loads / stores, each group after a NOP (so its first access costs 2, the other two 1,
/// pipelined behind it: 4 a group), SUBS (1) and BNE (1, + P taken `n - 1` times); then BX LR
/// (1 + P): `16 + 3 + 1 + 1 = 21` an iteration, `21 n + 2 (n - 1) + 3 = 23 n + 1` cycles,
/// `17 n + 1` instructions. `kern_al`'s accesses are aligned. `kern_un`'s are at `buf` + 1, 2,
/// 3 (+ 16 for the stores; `buf` is 8-aligned), with the TRM 3.3.1 unaligned penalties on top:
/// LDR at 1, 2, 3: 2 + 1 + 2 (a word at an odd address 2 more, at 2 mod 4 one more); STR
/// likewise 5; LDRH at 1, LDRSH at 2 (aligned), LDRSH at 3: 1 + 0 + 1 (a halfword at an odd
/// address one more); STRH likewise 2: 14 more an iteration, `37 n + 1`. `main`: PUSH of 2 (3), LDR literal (2), MOVS (1), BL (1 + P),
/// the same again (2 + 1 + 3), MOVS (1), POP of 2 with the PC (3 + P): 21 cycles, 9
/// instructions. Each function is 64-byte aligned and under 64 bytes, so no translation block
/// is split by a page boundary (the pipelining stops at one).
const M4_LOOPS: &str = r"
    .syntax unified
    .thumb
    .text
    .balign 64
    .globl main
    .type main, %function
    .thumb_func
main:
    push {r4, lr}
    ldr r0, =buf
    movs r1, #10
    bl kern_al
    ldr r0, =buf
    movs r1, #10
    bl kern_un
    movs r0, #0
    pop {r4, pc}
    .ltorg
    .size main, .-main

    @ one kernel: three word loads, word stores, halfword loads, halfword stores (each group
    @ after a NOP) at the given offsets from r0, r1 iterations
    .macro kern name, l0, l1, l2, s0, s1, s2, h0, h1, h2, t0, t1, t2
    .balign 64
    .globl \name
    .type \name, %function
    .thumb_func
\name:
1:  ldr.w r2, [r0, #\l0]
    ldr.w r3, [r0, #\l1]
    ldr.w r12, [r0, #\l2]
    nop
    str.w r2, [r0, #\s0]
    str.w r3, [r0, #\s1]
    str.w r12, [r0, #\s2]
    nop
    ldrh.w r2, [r0, #\h0]
    ldrsh.w r3, [r0, #\h1]
    ldrsh.w r12, [r0, #\h2]
    nop
    strh.w r2, [r0, #\t0]
    strh.w r3, [r0, #\t1]
    strh.w r12, [r0, #\t2]
    subs r1, r1, #1
    bne 1b
    bx lr
    .size \name, .-\name
    .endm

    kern kern_al, 0, 4, 8, 16, 20, 24, 0, 2, 4, 16, 18, 20
    kern kern_un, 1, 2, 3, 17, 18, 19, 1, 2, 3, 17, 18, 19

    .bss
    .balign 8
buf:
    .space 64
";

/// `cycles=m4` on `M4_LOOPS`: the exact cycles of the TRM's rules, unaligned word and halfword
/// loads and stores included, and instruction counts identical with and without the model.
#[test]
fn m4_cycle_model_on_known_loops() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    if !targets.contains(&Target::CortexM4) {
        return;
    }
    let names = ["main", "kern_al", "kern_un"];
    // per function: (instructions, modelled cycles), and the plugin's "insns" / "range" lines
    let run = known_loops(Target::CortexM4, dir.path(), &plugin, M4_LOOPS, &names);
    let n = 10;
    let (plain, plain_counts) = run("");
    let (m, counts) = run(",cycles=m4");
    assert_eq!(
        counts, plain_counts,
        "instruction counts change with the cycle model"
    );
    assert_eq!(plain["kern_al"].0, 17 * n + 1);
    assert_eq!(m["kern_al"], (17 * n + 1, 23 * n + 1));
    // the unaligned penalties: 5 (LDR at +1, +2, +3) + 5 (STR) + 2 (LDRH/LDRSH) + 2 (STRH)
    assert_eq!(m["kern_un"], (17 * n + 1, 23 * n + 1 + (5 + 5 + 2 + 2) * n));
    assert_eq!(m["main"], (9, 21));
    println!("M4 known loops (n = {n}): {m:?}");
}

/// Hand-written Thumb-2 loops whose Cortex-M7 cycles follow from the rules of `cycles=m7`
/// (export/tools/insn_count.c, "The Cortex-M7 model"). Every branch runs cold (each function is
/// called once): a call, a return and the first taken back-edge are mispredicted (8 cycles
/// each), later back-edges are predicted taken, the loop exit is mispredicted.
///
/// * `kern_alu(n)`: EOR, EOR of its result (a late-ALU result: the chain does not dual-issue),
///   beside it an independent ADD; ADD r5 in the early ALU with a dependent ADD of r5 beside it
///   (0-cycle forwarding); SUBS with the BNE beside it: 4 cycles an iteration, plus 8 (first
///   back-edge) + 8 (exit) + BX LR 1 + 8 (its misprediction): `4 n + 25`.
/// * `kern_ld(n)`: LDRB, an ADD of it (byte load to ALU: 2, a stall), beside it an LDR of a word
///   that holds its own address, an LDR through it (load to address: 3), SUBS beside it, BNE:
///   7 cycles from a cold start, 6 when the first LDRB pairs with a predicted BNE:
///   `7 + 8 + 7 + 6 (n - 2) + 8 + 1 + 8 = 6 n + 27`.
/// * `kern_mac(n)`: two post-incremented LDRs (different base registers: no pair), SXTB16 of
///   the second (read early: 2 after the load), SXTB16 ROR #8 (DSP: never the younger op),
///   SMLAD beside it (its multiplicands: 2 after an LDR, 1 after an ALU op), SMLAD
///   accumulating the first (accumulator chain: 1), SUBS beside it, BNE: `6 n + 27` as above.
/// * `kern_misc`: PUSH of 4 (2 cycles), LDR [sp] and LDR [sp, #4] (same base, banks differ:
///   one cycle), LDR [sp, #8] and LDR [sp, #17] (same bank: two; the second is not word-aligned,
///   3 more when it executes), LDRD (alone, 1), SDIV of the LDRD's registers (alone, `DIV`), ADD
///   of its result, POP of 4 (2), BX LR (1 + 8): `DIV + 21`.
/// * `main`: PUSH of 9 (5); MOVS + BL (1, + 8); MOVS + LDR, BL (2 + 8); MOVS + LDR, MOV of the
///   loaded register + BL (2 + 8); BL (1 + 8); MOVS, POP of 9 with the PC (1 + 5 + 8): 57.
const M7_LOOPS: &str = "
    .syntax unified
    .thumb
    .text
    .balign 4
    .globl main
    .type main, %function
    .thumb_func
main:
    push {r4, r5, r6, r7, r8, r9, r10, r11, lr}
    movs r0, #10
    bl kern_alu
    movs r0, #10
    ldr r2, =chase
    bl kern_ld
    movs r0, #10
    ldr r2, =buf
    mov r4, r2
    bl kern_mac
    bl kern_misc
    movs r0, #0
    pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}
    .ltorg
    .size main, .-main

    .balign 4
    .globl kern_alu
    .type kern_alu, %function
    .thumb_func
kern_alu:
1:  eor.w r1, r1, r2
    eor.w r1, r1, r3
    add.w r4, r4, #1
    add.w r5, r5, #1
    add.w r6, r6, r5
    subs r0, r0, #1
    bne 1b
    bx lr
    .size kern_alu, .-kern_alu

    .balign 4
    .globl kern_ld
    .type kern_ld, %function
    .thumb_func
kern_ld:
1:  ldrb.w r1, [r2]
    add.w r3, r3, r1
    ldr.w r12, [r2]
    ldr.w r1, [r12]
    subs r0, r0, #1
    bne 1b
    bx lr
    .size kern_ld, .-kern_ld

    .balign 4
    .globl kern_mac
    .type kern_mac, %function
    .thumb_func
kern_mac:
1:  ldr r1, [r2], #4
    ldr r3, [r4], #4
    sxtb16 r6, r3
    sxtb16 r7, r3, ror #8
    smlad r5, r1, r6, r5
    smlad r5, r1, r7, r5
    subs r0, r0, #1
    bne 1b
    bx lr
    .size kern_mac, .-kern_mac

    .balign 4
    .globl kern_misc
    .type kern_misc, %function
    .thumb_func
kern_misc:
    push {r4, r5, r6, r7}
    ldr r4, [sp]
    ldr r5, [sp, #4]
    ldr r6, [sp, #8]
    ldr.w r7, [sp, #17]
    ldrd r4, r5, [sp]
    sdiv r6, r4, r5
    add.w r7, r6, #1
    pop {r4, r5, r6, r7}
    bx lr
    .size kern_misc, .-kern_misc

    .data
    .balign 8
chase:
    .word chase
    .bss
    .balign 8
buf:
    .space 64
";

/// The Cortex-M7 model's fixed division time (`M7_DIV` in export/tools/insn_count.c).
const M7_DIV: u64 = 7;

/// `cycles=m7` on `M7_LOOPS`: the exact cycles of the model's rules, `div=N` overriding the
/// division's, and instruction counts identical with and without the cycle model.
#[test]
fn m7_cycle_model_on_known_loops() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    if !targets.contains(&Target::CortexM7) {
        return;
    }
    let names = ["main", "kern_alu", "kern_ld", "kern_mac", "kern_misc"];
    // per function: (instructions, modelled cycles), and the plugin's "insns" / "range" lines
    let run = known_loops(Target::CortexM7, dir.path(), &plugin, M7_LOOPS, &names);
    let n = 10;
    let (plain, plain_counts) = run("");
    let (m, counts) = run(",cycles=m7");
    let (m3, counts3) = run(",cycles=m7,div=3");
    assert_eq!(
        counts, plain_counts,
        "instruction counts change with the cycle model"
    );
    assert_eq!(counts3, plain_counts);
    assert_eq!(plain["kern_alu"].0, 7 * n + 1);
    assert_eq!(m["kern_alu"], (7 * n + 1, 4 * n + 25));
    assert_eq!(m["kern_ld"], (6 * n + 1, 6 * n + 27));
    assert_eq!(m["kern_mac"], (8 * n + 1, 6 * n + 27));
    assert_eq!(m["kern_misc"], (10, M7_DIV + 21));
    assert_eq!(m3["kern_misc"], (10, 3 + 21));
    assert_eq!(m["main"], (13, 57));
    // the division's time moves kern_misc only
    for f in ["main", "kern_alu", "kern_ld", "kern_mac"] {
        assert_eq!(m3[f], m[f], "{f}");
    }
    println!("M7 known loops (n = {n}): {m:?}");
}

#[test]
fn attention_instruction_counts() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    let tgt = cost_target("stm32l4");
    let fused = Int8Options::default();
    let layer = Int8Options {
        fuse_attention: false,
        ..Int8Options::default()
    };
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    // the same with modelled cycles (targets with a cycle model: M4, RV32)
    let mut cruns: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    // the same in modelled cycles (targets with a cycle model)
    let mut cratios: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut breakdown = String::new();
    // the same in modelled cycles, with each class's modelled CPI
    let mut cbreakdown = String::new();
    // modelled cycles of whole attention stages per target (M4: beside the paper's STM32L4
    // figures)
    let mut stage_cycles: Vec<String> = vec![String::new(); targets.len()];
    println!("| shape | target | variant | MACs | instructions | instr/MAC | baseline / variant |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &(name, s, e, p, h) in &graphs::SHAPES {
        let m = graphs::mhsa((s, e, p, h), 5, 0);
        let f = graphs::fwsa((s, e, p, h), 6, 0);
        for (ti, &t) in targets.iter().enumerate() {
            let variants = [
                ("baseline (layer-wise)", &m, &layer),
                ("MHSA fused", &m, &fused),
                ("FWSA fused", &f, &fused),
            ];
            let mut base = 0;
            let mut best: f64 = 0.0;
            let (mut cbase, mut cbest) = (0, 0.0f64);
            for (v, g, o) in variants {
                let macs = estimate(g, &tgt, o).unwrap().1.macs;
                let tag = format!("{name}-{t}-{}", v.split(' ').next().unwrap());
                let c = count(g, o, t, &plugin, dir.path(), &tag);
                let n = c.total;
                assert!(n > 0);
                if base == 0 {
                    base = n;
                    cbase = c.cycles;
                } else {
                    best = best.max(base as f64 / n as f64);
                    cbest = cbest.max(cbase as f64 / c.cycles.max(1) as f64);
                }
                println!(
                    "| {name} S={s} E={e} P={p} H={h} | {t} | {v} | {macs} | {n} | {:.2} | {:.2}x |",
                    n as f64 / macs as f64,
                    base as f64 / n as f64
                );
                let classes = by_class(&c.funcs, o.fuse_attention);
                if models_cycles(t) {
                    let cclasses = by_class(&c.func_cycles, o.fuse_attention);
                    // every class costs at least its instructions (RV32: one cycle each)
                    if t == Target::Rv32 {
                        for (k, &n) in &classes {
                            let cyc = cclasses.get(k).copied().unwrap_or(0);
                            assert!(cyc >= n, "{tag} {k}: {cyc} cycles < {n} instructions");
                        }
                    }
                    cbreakdown.push_str(&format!(
                        "| {name} | {t} | {v} | {} |\n",
                        ["linear", "matmul", "softmax", "copy", "attention", "other"]
                            .iter()
                            .map(|k| {
                                let n = classes.get(k).copied().unwrap_or(0);
                                let cyc = cclasses.get(k).copied().unwrap_or(0);
                                if n == 0 {
                                    format!("{cyc}")
                                } else {
                                    format!("{cyc} ({:.3})", cyc as f64 / n as f64)
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(" | ")
                    ));
                    cruns[ti].push((work(g, o), cclasses));
                    stage_cycles[ti].push_str(&format!(
                        "| {name} | {v} | {macs} | {n} | {:.2}M | {:.3} | {:.2} |{}\n",
                        c.cycles as f64 / 1e6,
                        c.cycles as f64 / n as f64,
                        macs as f64 / c.cycles as f64,
                        if t == Target::CortexM4 {
                            format!(" {} |", paper_l4_cycles(name))
                        } else {
                            String::new()
                        }
                    ));
                }
                breakdown.push_str(&format!(
                    "| {name} | {t} | {v} | {} |\n",
                    ["linear", "matmul", "softmax", "copy", "attention", "other"]
                        .iter()
                        .map(|k| classes.get(k).copied().unwrap_or(0).to_string())
                        .collect::<Vec<_>>()
                        .join(" | ")
                ));
                runs[ti].push((work(g, o), classes));
            }
            ratios[ti].push(best);
            if models_cycles(t) {
                cratios[ti].push(cbest);
            }
        }
    }
    println!();
    for (t, r) in targets.iter().zip(&ratios) {
        println!(
            "{t}: best fused / baseline per shape {:?}, average {:.2}x",
            r.iter().map(|x| format!("{x:.2}x")).collect::<Vec<_>>(),
            r.iter().sum::<f64>() / r.len() as f64
        );
    }
    for (t, r) in targets.iter().zip(&cratios) {
        if !r.is_empty() {
            println!(
                "{t}: best fused / baseline per shape in modelled {} cycles {:?}, average {:.2}x",
                modelled_core(*t),
                r.iter().map(|x| format!("{x:.3}x")).collect::<Vec<_>>(),
                r.iter().sum::<f64>() / r.len() as f64
            );
        }
    }
    for (t, rows) in targets.iter().zip(&stage_cycles) {
        if rows.is_empty() {
            continue;
        }
        // the paper measured the STM32L4 (Cortex-M4) only
        let (paper, sep) = if *t == Target::CortexM4 {
            (
                " paper Table 4, STM32L4 cycles: ours / CMSIS-NN |",
                " --- |",
            )
        } else {
            ("", "")
        };
        println!(
            "\n| shape | variant | MACs | instructions | modelled {} cycles ({t}) | modelled CPI \
             | MACs / cycle |{paper}",
            modelled_core(*t)
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |{sep}");
        print!("{rows}");
    }
    println!(
        "\n| shape | target | variant | linear | matmul | softmax | transpose | fused attention | other |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    print!("{breakdown}");
    if !cbreakdown.is_empty() {
        println!(
            "\n| shape | target | variant | modelled cycles (CPI): linear | matmul | softmax | \
             transpose | fused attention | other |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        print!("{cbreakdown}");
    }
    println!(
        "\n| target | assumed CPI | linear instr/MAC | matmul instr/MAC (fused attention) | \
         softmax instr/elem | requant instr/output | copy instr/elem | fitted cycle table |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (t, r) in targets.iter().zip(&runs) {
        refit(*t, simd_of(*t), r);
    }
    for ((t, r), c) in targets.iter().zip(&runs).zip(&cruns) {
        if models_cycles(*t) {
            modelled_refit(*t, simd_of(*t), r, c);
        }
    }
}

/// The cycle-table entries of the kernels without operand tiles (`linear_untiled`,
/// `matmul_untiled`; `nas export --operand-tiles off`, or `auto` where a tile would raise the
/// arena): the attention stages of [`attention_instruction_counts`] (layer-wise, MHSA and FWSA
/// fused) exported without tiles, fitted the same way on the cores that have tiles (M4, M7).
#[test]
fn untiled_kernel_cycles() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    let untiled = Int8Options {
        operand_tiles: TilePolicy::Never,
        ..Int8Options::default()
    };
    let layer = Int8Options {
        fuse_attention: false,
        ..untiled
    };
    for t in targets {
        if !(models_cycles(t) && t != Target::Rv32) {
            continue;
        }
        let (mut runs, mut cruns) = (Vec::new(), Vec::new());
        for &(name, s, e, p, h) in &graphs::SHAPES {
            let m = graphs::mhsa((s, e, p, h), 5, 0);
            let f = graphs::fwsa((s, e, p, h), 6, 0);
            for (v, g, o) in [
                ("layer", &m, &layer),
                ("mhsa", &m, &untiled),
                ("fwsa", &f, &untiled),
            ] {
                let c = count(
                    g,
                    o,
                    t,
                    &plugin,
                    dir.path(),
                    &format!("{name}-{t}-{v}-untiled"),
                );
                runs.push((work(g, o), by_class(&c.funcs, o.fuse_attention)));
                cruns.push((work(g, o), by_class(&c.func_cycles, o.fuse_attention)));
            }
        }
        let (i, c) = (stage_fit(&runs), stage_fit(&cruns));
        let simd = simd_of(t);
        print_modelled(
            t,
            "attention stages without operand tiles",
            &[
                ("linear_untiled", "MAC", i.lin_mac, c.lin_mac, simd),
                (
                    "matmul_untiled",
                    "MAC (fused attention)",
                    i.mm_fused,
                    c.mm_fused,
                    simd,
                ),
                ("requant (untiled)", "output", i.requant, c.requant, 1.0),
            ],
        );
        // the tiles exist to save cycles: without them the products cost more per MAC
        let tiled = cost_target(if t == Target::CortexM4 {
            "stm32l4"
        } else {
            "stm32f746"
        });
        assert!(
            simd * c.lin_mac > tiled.cycles.linear,
            "{t}: {}",
            simd * c.lin_mac
        );
    }
}

/// pulp-transformer Table 4, STM32L4 (Cortex-M4) cycles of the attention block: their best
/// kernel / the CMSIS-NN baseline (measured on the board, so flash wait states included).
fn paper_l4_cycles(shape: &str) -> &'static str {
    match shape {
        "eegformer" => "39.71M / 60.17M",
        "ecgformer" => "3.28M / 5.75M",
        "trformer" => "1.18M / 1.71M",
        _ => "-",
    }
}

/// A 256 -> 64 Linear over 16 tokens with `keep` of every 4 blocks of 4 inputs nonzero.
fn block_sparse_linear(keep: usize) -> Graph {
    let mut r = Rng(9);
    let (t, i, o) = (16, 256, 64);
    let mut b = GraphBuilder::new();
    b.input("x", &[t, i], 2f64.powi(-4)).unwrap();
    let w = pruned(&mut r, o, i, 4, |row, blk| (row + blk) % 4 < keep);
    b.linear("fc", "x", w, r.i32s(o, 2000), &[0.002], 2f64.powi(-3))
        .unwrap();
    b.output("fc");
    b.finish().unwrap()
}

/// A `k x k` convolution (or depthwise, `cin` = channels) over `hw x hw` keeping `keep.0` of
/// every `keep.1` blocks (blocks of 4 input channels at one kernel position, block `blk` of
/// output channel `row` kept when `(row + blk) % keep.1 < keep.0`; a depthwise layer keeps
/// `keep.0` of its `k` kernel rows per channel, `keep.1` = `k`, channel `ch` from row `ch % k` on).
fn block_sparse_conv(
    k: usize,
    hw: usize,
    cin: usize,
    cout: usize,
    depthwise: bool,
    keep: (usize, usize),
) -> Graph {
    if !depthwise {
        return pruned_conv(k, hw, cin, cout, 4, keep);
    }
    assert_eq!(keep.1, k);
    let (mut r, mut b, win) = conv_start(k, hw, cin);
    // [kh, kw, c]: channel ch keeps kernel rows ch % k .. ch % k + keep.0 (mod k)
    let mut w = r.i8s(k * k * cin);
    for (i, v) in w.iter_mut().enumerate() {
        if (i / (k * cin) + k - (i % cin) % k) % k >= keep.0 {
            *v = 0;
        }
    }
    b.depthwise_conv2d(
        "conv",
        "x",
        win,
        w,
        r.i32s(cin, 500),
        &[0.02],
        2f64.powi(-4),
    )
    .unwrap();
    b.output("conv");
    b.finish().unwrap()
}

/// The seeded generator, a builder with the `[hw, hw, cin]` input `x`, and the k x k stride-1
/// same-padding window of the convolution graphs above.
fn conv_start(k: usize, hw: usize, cin: usize) -> (Rng, GraphBuilder, quant::graph::Window) {
    let mut b = GraphBuilder::new();
    b.input("x", &[hw, hw, cin], 2f64.powi(-5)).unwrap();
    let win = quant::graph::Window {
        k: [k, k],
        stride: [1, 1],
        pad: [k / 2, k / 2],
    };
    (Rng(11), b, win)
}

/// A k x k (stride 1, same padding) Conv2d whose `[cout, k k cin]` weights keep `keep.0` of
/// every `keep.1` blocks of `block` weights.
fn pruned_conv(
    k: usize,
    hw: usize,
    cin: usize,
    cout: usize,
    block: usize,
    keep: (usize, usize),
) -> Graph {
    let (mut r, mut b, win) = conv_start(k, hw, cin);
    let w = pruned(&mut r, cout, k * k * cin, block, |row, blk| {
        (row + blk) % keep.1 < keep.0
    });
    b.conv2d(
        "conv",
        "x",
        win,
        w,
        r.i32s(cout, 500),
        &[0.01],
        2f64.powi(-4),
    )
    .unwrap();
    b.output("conv");
    b.finish().unwrap()
}

/// One case of `sparse_kernel_instruction_counts`: the graph, the cost-model op it is (the same
/// shape with the block sparsity of its pruning) and the cycle-table entry it enters.
struct SparseCase {
    label: &'static str,
    graph: Graph,
    op: cost::graph::OpKind,
    sparsity: cost::graph::Sparsity,
    /// `sparse_mac` (the Linear kernels: Linear, pointwise), `sparse_conv_mac`,
    /// `sparse_depthwise_mac`.
    entry: &'static str,
}

fn sparse_cases() -> Vec<SparseCase> {
    use cost::graph::{OpKind, Sparsity};
    let sp = |kept: f64, of: f64, block| Sparsity {
        rho: 1.0 - kept / of,
        block,
    };
    let conv = |hw, cin, cout, k| OpKind::Conv2d {
        h: hw,
        w: hw,
        cin,
        cout,
        k,
        stride: 1,
        pad: k / 2,
    };
    let dw = |hw, c| OpKind::DepthwiseConv2d {
        h: hw,
        w: hw,
        c,
        k: 3,
        stride: 1,
        pad: 1,
    };
    let mut cases = Vec::new();
    for (keep, label) in [
        (3, "Linear 256->64 x16 tokens, 3/4 blocks"),
        (2, "Linear 256->64 x16 tokens, 2/4 blocks"),
        (1, "Linear 256->64 x16 tokens, 1/4 blocks"),
    ] {
        cases.push(SparseCase {
            label,
            graph: block_sparse_linear(keep),
            op: OpKind::Linear {
                tokens: 16,
                in_features: 256,
                out_features: 64,
                bias: true,
            },
            sparsity: sp(keep as f64, 4.0, 4),
            entry: "sparse_mac",
        });
    }
    cases.push(SparseCase {
        label: "pointwise 32->32 8x8, 2/4 blocks",
        graph: block_sparse_conv(1, 8, 32, 32, false, (1, 2)),
        op: conv(8, 32, 32, 1),
        sparsity: sp(1.0, 2.0, 4),
        entry: "sparse_mac",
    });
    cases.push(SparseCase {
        label: "conv3x3 16->16 8x8, 2/4 blocks",
        graph: block_sparse_conv(3, 8, 16, 16, false, (1, 2)),
        op: conv(8, 16, 16, 3),
        sparsity: sp(1.0, 2.0, 4),
        entry: "sparse_conv_mac",
    });
    cases.push(SparseCase {
        label: "conv3x3 8->16 16x16, 2/4 blocks",
        graph: block_sparse_conv(3, 16, 8, 16, false, (1, 2)),
        op: conv(16, 8, 16, 3),
        sparsity: sp(1.0, 2.0, 4),
        entry: "sparse_conv_mac",
    });
    cases.push(SparseCase {
        label: "conv3x3 32->32 8x8, 3/4 blocks",
        graph: block_sparse_conv(3, 8, 32, 32, false, (3, 4)),
        op: conv(8, 32, 32, 3),
        sparsity: sp(3.0, 4.0, 4),
        entry: "sparse_conv_mac",
    });
    // a depthwise layer is coded only with one kernel row of 3 kept (2 rows: 10 bytes coded
    // per channel against 9 dense)
    for (hw, c, label) in [
        (8, 32, "depthwise 3x3 32 ch 8x8, 1/3 rows"),
        (16, 16, "depthwise 3x3 16 ch 16x16, 1/3 rows"),
    ] {
        cases.push(SparseCase {
            label,
            graph: block_sparse_conv(3, hw, c, c, true, (1, 3)),
            op: dw(hw, c),
            sparsity: sp(1.0, 3.0, 3),
            entry: "sparse_depthwise_mac",
        });
    }
    cases
}

/// Class of a function in a one-op graph of `sparse_kernel_instruction_counts`: `other_class`,
/// with the coded kernels' static helpers (`nas_rle_*`, some shared by the three kernels)
/// counted in the class of the one kernel the graph runs.
fn sparse_class(f: &str, kernel: &'static str) -> &'static str {
    if f.starts_with("nas_rle_") {
        kernel
    } else {
        other_class(f)
    }
}

/// The sparse kernels (`nas_sparse.c`) against the dense ones on the same block-pruned
/// weights (one-layer graphs, whole inference counted): instructions per stored
/// (kept-block) MAC and the speed-up, and the cycle-table entries they give, fitted as in
/// `other_kernel_instruction_counts`: per target, the instructions of the layer's kernel class
/// (`sparse_class`) less `requant` per output (fitted in the same run from the dense runs of the
/// Linear-kernel cases: `a MACs + b outputs`), summed over the cases of an entry, over their
/// stored MACs, x the ASSUMED CPI (per MAC, not per SIMD instruction: the cost model charges
/// the sparse entries per stored MAC). Entries: `sparse_mac` (the sparse Linear kernel: Linear
/// and pointwise layers), `sparse_conv_mac` (k x k Conv2d), `sparse_depthwise_mac`. The stored
/// MACs are checked to be exactly the cost model's work units (`cost::ops::op_cost` of the same
/// shape and block sparsity).
#[test]
fn sparse_kernel_instruction_counts() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    let dense = Int8Options {
        sparse_weights: false,
        ..Int8Options::default()
    };
    let sparse = Int8Options::default();
    let cases = sparse_cases();
    // (stored MACs, outputs, kernel class) per case, the stored MACs checked against the cost
    // model's work
    let mut work = Vec::new();
    for c in &cases {
        let g = &c.graph;
        let p = plan(g, &sparse).unwrap();
        let coded = p.coded[0].as_ref().expect("pruned weights are coded");
        let out = g.tensor(&g.nodes[0].output).unwrap();
        let positions = (out.numel() / out.shape.last().unwrap()) as u64;
        let stored = positions * export::sparse::coded_macs_per_position(coded);
        let op = cost::graph::Op {
            name: "l".into(),
            kind: c.op.clone(),
            inputs: vec!["x".into()],
            sparsity: Some(c.sparsity),
        };
        let oc = cost::ops::op_cost(&op, None, cost::ops::Deploy::default()).unwrap();
        let (kernel, unit, per_output) = match c.entry {
            "sparse_mac" => (
                "linear",
                cost::ops::Work::SparseMac,
                Some(cost::ops::Work::SparseOutput),
            ),
            "sparse_conv_mac" => ("conv", cost::ops::Work::SparseConvMac, None),
            _ => (
                "depthwise",
                cost::ops::Work::SparseDepthwiseMac,
                Some(cost::ops::Work::SparseDepthwiseOutput),
            ),
        };
        assert!(
            oc.sparse_coded,
            "{}: the cost model stores it dense",
            c.label
        );
        let outputs = out.numel() as u64;
        let mut want = vec![(unit, stored), (cost::ops::Work::Requant, outputs)];
        want.extend(per_output.map(|w| (w, outputs)));
        assert_eq!(oc.work, want, "{}: cost-model work", c.label);
        work.push((stored as f64, out.numel() as f64, kernel));
    }
    println!(
        "| target | layer | dense MACs | stored MACs | outputs | dense instr | sparse instr | \
         dense instr / MAC | sparse instr / stored MAC | dense / sparse | sparse kernel instr | \
         kernel instr less requant / stored MAC |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut rows = Vec::new();
    let mut entries = Vec::new();
    let mut modelled = Vec::new();
    for &t in &targets {
        // per case: (dense kernel-class instructions, sparse kernel-class instructions, line)
        let mut meas = Vec::new();
        // per case: (MACs, dense and sparse kernel-class instructions, the same in modelled
        // cycles: targets with a cycle model only, else 0)
        let mut cmeas = Vec::new();
        for (ci, (c, &(stored, outs, kernel))) in cases.iter().zip(&work).enumerate() {
            let g = &c.graph;
            let macs = node_macs(g, 0);
            let tag = |v: &str| format!("sparse-{t}-{ci}-{v}");
            let class_instr = |o: &Int8Options, v: &str| {
                let cnt = count(g, o, t, &plugin, dir.path(), &tag(v));
                let mut m: BTreeMap<&str, u64> = BTreeMap::new();
                for (f, &n) in &cnt.funcs {
                    *m.entry(sparse_class(f, kernel)).or_insert(0) += n;
                }
                let n = m.get(kernel).copied().unwrap_or(0);
                let other = m.get("other").copied().unwrap_or(0);
                assert!(
                    n > 0,
                    "{t} {} ({v}): no {kernel} instructions: {m:?}",
                    c.label
                );
                // nothing of another kernel class runs in a one-op graph
                assert_eq!(n + other, cnt.total, "{t} {} ({v}): {m:?}", c.label);
                let cyc = cnt.cycles_of(|f| sparse_class(f, kernel) == kernel);
                (cnt.total, n as f64, cyc as f64)
            };
            let (nd, kd, kd_c) = class_instr(&dense, "d");
            let (ns, ks, ks_c) = class_instr(&sparse, "s");
            cmeas.push((macs as f64, kd, ks, kd_c, ks_c));
            meas.push((
                macs as f64,
                kd,
                ks,
                (label_row(t, c.label, macs, stored, outs, nd, ns)),
            ));
        }
        // requant: the dense Linear kernel's per-output term, from the Linear-kernel cases
        let cpi = assumed_cpi(t);
        let simd = simd_of(t);
        let (lin, rq) = lsq2(
            &meas
                .iter()
                .zip(&work)
                .filter(|(_, w)| w.2 == "linear")
                .map(|((macs, kd, _, _), &(_, outs, _))| (*macs, outs, *kd))
                .collect::<Vec<_>>(),
        );
        for ((_, _, ks, line), &(stored, outs, _)) in meas.iter().zip(&work) {
            println!("{line} {ks} | {:.2} |", (ks - rq * outs) / stored);
        }
        rows.push(format!(
            "| {t} | dense Linear (reference) | {lin:.2} / MAC | requant {rq:.2} / output | {cpi} \
             | (linear {:.1}, requant {:.1}: not written) |",
            cpi * simd * lin,
            cpi * rq
        ));
        let mut fitted = Vec::new();
        for entry in ["sparse_mac", "sparse_conv_mac", "sparse_depthwise_mac"] {
            let of: Vec<_> = meas
                .iter()
                .zip(&cases)
                .zip(&work)
                .filter(|((_, c), _)| c.entry == entry)
                .map(|((m, _), w)| (m.2, w.0, w.1))
                .collect();
            let stored: f64 = of.iter().map(|o| o.1).sum();
            let rest: f64 = of.iter().map(|(ks, _, outs)| ks - rq * outs).sum();
            let a = rest / stored;
            let per_case = of
                .iter()
                .map(|(ks, st, outs)| format!("{:.2}", (ks - rq * outs) / st))
                .collect::<Vec<_>>()
                .join(", ");
            // depthwise: 3 stored MACs per output in every case (one kernel row kept), so the
            // per-MAC and per-output terms are inseparable
            let free = if entry == "sparse_depthwise_mac" {
                "inseparable".to_string()
            } else {
                let (fa, fb) = lsq2(
                    &of.iter()
                        .map(|&(ks, st, outs)| (st, outs, ks))
                        .collect::<Vec<_>>(),
                );
                format!("free fit {fa:.2} / stored MAC + {fb:.1} / output")
            };
            let outs: f64 = of.iter().map(|o| o.2).sum();
            let all: f64 = of.iter().map(|o| o.0).sum();
            let e = cpi * a;
            assert!(e.is_finite() && e > 0.0, "{t} {entry}: {e}");
            rows.push(format!(
                "| {t} | {entry} | {a:.2} / stored MAC (besides requant {rq:.2} / output; per \
                 case {per_case}) | {free}; {:.1} / output in all | {cpi} | {e:.1} |",
                all / outs
            ));
            fitted.push(format!("{entry}: {e:.1}"));
        }
        entries.push(format!("{t}: `{}`", fitted.join(", ")));
        if models_cycles(t) {
            modelled.push((t, sparse_modelled(simd, &cases, &work, &cmeas)));
        }
    }
    println!(
        "\n| target | entry | kernel instructions per stored MAC | other terms | assumed CPI | \
         new entry |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!("{r}");
    }
    println!("\nfitted cycle-table entries (instructions x ASSUMED CPI):");
    for e in &entries {
        println!("{e}");
    }
    for (t, rows) in &modelled {
        print_modelled(*t, "sparse kernels", rows);
    }
}

/// Per case of `sparse_kernel_instruction_counts`: MACs, dense and sparse kernel-class
/// instructions, dense and sparse kernel-class modelled cycles.
type SparseMeas = (f64, f64, f64, f64, f64);

/// The sparse entries' fit of `sparse_kernel_instruction_counts` on instructions and on
/// modelled cycles side by side (`cmeas` per case: MACs, dense and sparse kernel-class
/// instructions, dense and sparse kernel-class modelled cycles): `requant` from the dense
/// Linear-kernel cases (`a MACs + b outputs`), then per entry `sum(kernel - requant x
/// outputs) / sum(stored MACs)`.
fn sparse_modelled(
    simd: f64,
    cases: &[SparseCase],
    work: &[(f64, f64, &str)],
    cmeas: &[SparseMeas],
) -> Vec<Modelled> {
    let fit = |dense: fn(&SparseMeas) -> f64, sparse: fn(&SparseMeas) -> f64| {
        let (lin, rq) = lsq2(
            &cmeas
                .iter()
                .zip(work)
                .filter(|(_, w)| w.2 == "linear")
                .map(|(m, w)| (m.0, w.1, dense(m)))
                .collect::<Vec<_>>(),
        );
        let mut v = vec![lin, rq];
        for entry in ["sparse_mac", "sparse_conv_mac", "sparse_depthwise_mac"] {
            let (mut rest, mut stored) = (0.0, 0.0);
            for ((m, c), w) in cmeas.iter().zip(cases).zip(work) {
                if c.entry == entry {
                    rest += sparse(m) - rq * w.1;
                    stored += w.0;
                }
            }
            v.push(rest / stored);
        }
        v
    };
    let i = fit(|m| m.1, |m| m.2);
    let c = fit(|m| m.3, |m| m.4);
    vec![
        ("linear (reference)", "MAC", i[0], c[0], simd),
        ("requant (reference)", "output", i[1], c[1], 1.0),
        ("sparse_mac", "stored MAC", i[2], c[2], 1.0),
        ("sparse_conv_mac", "stored MAC", i[3], c[3], 1.0),
        ("sparse_depthwise_mac", "stored MAC", i[4], c[4], 1.0),
    ]
}

/// The start of a row of the sparse table (up to the sparse kernel's instructions).
fn label_row(
    t: Target,
    label: &str,
    macs: u64,
    stored: f64,
    outs: f64,
    nd: u64,
    ns: u64,
) -> String {
    format!(
        "| {t} | {label} | {macs} | {stored} | {outs} | {nd} | {ns} | {:.2} | {:.2} | {:.2}x |",
        nd as f64 / macs as f64,
        ns as f64 / stored,
        nd as f64 / ns as f64
    )
}

/// Class of a runtime function for `other_kernel_instruction_counts` (by name, as `by_class`
/// does): the kernel entry points of the classes not in the attention stages and their static
/// helpers (`nas_dot_s8` is the Conv2d's per-tap dot product; `nas_norm_*`, `nas_isqrt_u32`
/// and `nas_sat16` belong to both LayerNorms, I-BERT and Scaled, one cost-model class);
/// `other` is `model_run` (with its copy of the output), `main` and libc.
/// libgcc's 64-bit division routines: the runtime calls them once per row to prepare the
/// reciprocal of a row-invariant divisor (`nas_recip_prepare`: softmax, LayerNorm).
fn libgcc_division(f: &str) -> bool {
    [
        "__aeabi_uldivmod",
        "__aeabi_ldivmod",
        "__udivmoddi4",
        "__divmoddi4",
        "__udivdi3",
        "__divdi3",
        "__umoddi3",
        "__moddi3",
    ]
    .contains(&f)
}

/// The LayerNorm kernels and their helpers.
fn layernorm_function(f: &str) -> bool {
    f.contains("layernorm") || f.contains("nas_norm_") || f.contains("isqrt") || f.contains("sat16")
}

fn other_class(f: &str) -> &'static str {
    if f.contains("linear") {
        "linear"
    } else if f.contains("depthwise") {
        "depthwise"
    } else if f.contains("conv2d") || f.starts_with("nas_dot_s8") {
        "conv"
    } else if layernorm_function(f) {
        "layernorm"
    } else if f.contains("nas_lut") {
        "gelu"
    } else if f.contains("nas_add") {
        "add"
    } else if f.contains("nas_relu") {
        "relu"
    } else if f.contains("pool2d") || f.contains("mean_rows") {
        "pool"
    } else {
        "other"
    }
}

/// A one-op graph (or a chain, for the per-call overhead) measured by
/// `other_kernel_instruction_counts`, with the work the cost model prices it by.
struct Case {
    /// The fit it enters: a class of `other_class`, `maxpool` / `avgpool` (2x2 / stride 2,
    /// both `pool`), `maxpool-3x3` / `avgpool-3x3` (printed only), or `call` (a chain of
    /// `units` one-element ReLUs, whole inference counted).
    fit: &'static str,
    label: String,
    graph: Graph,
    /// Cost-model work units (`cost::ops`): MACs (Conv2d, depthwise, Linear, padding taps
    /// included), elements (LayerNorm, GELU, Add, ReLU), outputs x k^2 (pooling), nodes (call).
    units: f64,
    outputs: f64,
    /// LayerNorm rows (tokens).
    rows: f64,
}

/// Output elements of a graph's last node.
fn g_out(g: &Graph) -> usize {
    g.tensor(&g.nodes.last().unwrap().output).unwrap().numel()
}

/// A graph of one op on input `x` (`shape`, scale 2^-4) built by `f`.
fn one_op(shape: &[usize], f: impl FnOnce(&mut GraphBuilder, &mut Rng) -> String) -> Graph {
    let mut r = Rng(13);
    let mut b = GraphBuilder::new();
    b.input("x", shape, 2f64.powi(-4)).unwrap();
    let y = f(&mut b, &mut r);
    b.output(&y);
    b.finish().unwrap()
}

/// One LayerNorm over `[tokens, d]`: TinyFormer's Scaled-LayerNorm (`scaled`) or I-BERT's.
fn layer_norm_graph(tokens: usize, d: usize, scaled: bool) -> Graph {
    one_op(&[tokens, d], |b, r| {
        let gamma = r.f32s(d, 0.5, 1.5);
        let beta = r.f32s(d, -0.2, 0.2);
        if scaled {
            b.scaled_layer_norm("ln", "x", &gamma, &beta, 1e-5, 2f64.powi(-4))
        } else {
            b.layer_norm("ln", "x", &gamma, &beta, 1e-5, 2f64.powi(-4))
        }
        .unwrap()
    })
}

fn window(k: usize, stride: usize, pad: usize) -> quant::graph::Window {
    quant::graph::Window {
        k: [k, k],
        stride: [stride, stride],
        pad: [pad, pad],
    }
}

/// The measured cases: several shapes per class so that the per-unit term separates from the
/// per-call (and, for LayerNorm, per-row) terms; dense random weights.
fn other_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut push = |fit, label: String, graph: Graph, units: f64, rows: f64| {
        let outputs = g_out(&graph) as f64;
        cases.push(Case {
            fit,
            label,
            graph,
            units,
            outputs,
            rows,
        });
    };
    // Linear: the per-output `requant` term the Conv2d / depthwise fits subtract
    for (t, i, o) in [(16, 16, 32), (16, 64, 32), (16, 256, 32), (8, 128, 64)] {
        let g = one_op(&[t, i], |b, r| {
            b.linear(
                "fc",
                "x",
                r.i8s(o * i),
                r.i32s(o, 2000),
                &[0.002],
                2f64.powi(-3),
            )
            .unwrap()
        });
        let macs = node_macs(&g, 0) as f64;
        push(
            "linear",
            format!("Linear {t} tokens {i}->{o}"),
            g,
            macs,
            0.0,
        );
    }
    for (hw, cin, cout, s) in [
        (8, 8, 16, 1),
        (8, 16, 16, 1),
        (8, 32, 16, 1),
        (16, 8, 8, 1),
        (16, 16, 32, 2),
    ] {
        let g = one_op(&[hw, hw, cin], |b, r| {
            let w = r.i8s(cout * 9 * cin);
            b.conv2d(
                "conv",
                "x",
                window(3, s, 1),
                w,
                r.i32s(cout, 500),
                &[0.01],
                2f64.powi(-4),
            )
            .unwrap()
        });
        let macs = node_macs(&g, 0) as f64;
        push(
            "conv",
            format!("Conv2d 3x3/{s} {hw}x{hw} {cin}->{cout}"),
            g,
            macs,
            0.0,
        );
    }
    for (hw, c, s) in [
        (8, 16, 1),
        (8, 32, 1),
        (8, 64, 1),
        (16, 16, 1),
        (16, 32, 1),
        (16, 32, 2),
    ] {
        let g = one_op(&[hw, hw, c], |b, r| {
            let w = r.i8s(9 * c);
            b.depthwise_conv2d(
                "dw",
                "x",
                window(3, s, 1),
                w,
                r.i32s(c, 500),
                &[0.02],
                2f64.powi(-4),
            )
            .unwrap()
        });
        let macs = node_macs(&g, 0) as f64;
        push(
            "depthwise",
            format!("depthwise 3x3/{s} {hw}x{hw} {c} ch"),
            g,
            macs,
            0.0,
        );
    }
    for scaled in [false, true] {
        for (t, d) in [(8, 32), (32, 32), (8, 64), (32, 64), (16, 128), (8, 192)] {
            let g = layer_norm_graph(t, d, scaled);
            let (fit, name) = if scaled {
                ("scaled-layernorm", "Scaled-LayerNorm")
            } else {
                ("layernorm", "LayerNorm")
            };
            push(
                fit,
                format!("{name} {t} tokens x {d}"),
                g,
                (t * d) as f64,
                t as f64,
            );
        }
    }
    for n in [64, 512, 4096] {
        let g = one_op(&[n], |b, _| b.gelu("gelu", "x", 2f64.powi(-4)).unwrap());
        push("gelu", format!("GELU {n}"), g, n as f64, 0.0);
        let g = one_op(&[n], |b, _| {
            b.same_scale("relu", "x", quant::Op::Relu).unwrap()
        });
        push("relu", format!("ReLU {n}"), g, n as f64, 0.0);
        let mut b = GraphBuilder::new();
        b.input("a", &[n], 2f64.powi(-4)).unwrap();
        b.input("b", &[n], 2f64.powi(-5)).unwrap();
        b.add("add", "a", "b", 2f64.powi(-4)).unwrap();
        b.output("add");
        push(
            "add",
            format!("Add {n}"),
            b.finish().unwrap(),
            n as f64,
            0.0,
        );
    }
    for avg in [false, true] {
        for (hw, c, k, s) in [(8, 16, 2, 2), (16, 16, 2, 2), (16, 32, 2, 2), (8, 16, 3, 1)] {
            let win = window(k, s, if k == 3 { 1 } else { 0 });
            let op = if avg {
                quant::Op::AvgPool2d(win)
            } else {
                quant::Op::MaxPool2d(win)
            };
            let g = one_op(&[hw, hw, c], |b, _| b.same_scale("pool", "x", op).unwrap());
            let units = (g_out(&g) * k * k) as f64;
            let (fit, name) = match (avg, k) {
                (false, 2) => ("maxpool", "MaxPool2d"),
                (true, 2) => ("avgpool", "AvgPool2d"),
                (false, _) => ("maxpool-3x3", "MaxPool2d"),
                (true, _) => ("avgpool-3x3", "AvgPool2d"),
            };
            push(
                fit,
                format!("{name} {k}x{k}/{s} {hw}x{hw} {c} ch"),
                g,
                units,
                0.0,
            );
        }
    }
    // the per-call overhead: chains of one-element ReLUs
    for l in [1, 2, 4, 8] {
        let mut b = GraphBuilder::new();
        b.input("x", &[1], 2f64.powi(-4)).unwrap();
        let mut x = "x".to_string();
        for i in 0..l {
            x = b.same_scale(&format!("r{i}"), &x, quant::Op::Relu).unwrap();
        }
        b.output(&x);
        push(
            "call",
            format!("{l} one-element ReLUs"),
            b.finish().unwrap(),
            l as f64,
            0.0,
        );
    }
    cases
}

/// Instructions of the kernel classes that `refit` has no measurement for (Conv2d,
/// depthwise, LayerNorm, GELU, Add, ReLU, pooling, the per-call overhead), each in the cost model's
/// work unit (`cost::ops`), and the cycle-table entries they give: instructions per unit x the
/// ASSUMED CPI (x `simd_width` for the MAC classes). Per target, over one-op graphs:
///
/// * Linear: `instructions = a MACs + b outputs` as in `refit`; `b` is the `requant` term.
/// * Conv2d, depthwise: the cost model charges `conv` / `depthwise` per MAC plus `requant` per
///   output, so the entry is `sum (instructions - b outputs) / sum MACs` over the shapes. The
///   free fit `a MACs + c outputs` is printed too (for 3x3 depthwise layers MACs = 9 outputs:
///   inseparable, so not fitted).
/// * LayerNorm: `instructions = a elements + r rows`; the cost model has only a per-element
///   entry, so the per-row part (mean, variance, integer square root) is folded in at a
///   reference width of 64 (KWT-1): entry = `a + r / 64`.
/// * GELU, Add, ReLU: `instructions = a elements + c` (`c` per call).
/// * Pooling: `instructions = a (outputs x k^2) + c` over the 2x2 / stride-2 max and average
///   pools (the cost model's pools); a 3x3 / stride-1 pool is printed, not fitted.
/// * call_overhead: whole-inference instructions of chains of 1, 2, 4, 8 one-element ReLUs,
///   per node (slope), less one element of ReLU work.
#[test]
fn other_kernel_instruction_counts() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    let opts = Int8Options {
        sparse_weights: false,
        ..Int8Options::default()
    };
    let cases = other_cases();
    println!(
        "| target | fit | graph | work units | outputs | class instructions | other instructions \
         | instr / unit |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut summaries = Vec::new();
    // per target with modelled cycles: the modelled-cycle rows, the per-case lines
    let mut modelled = Vec::new();
    let mut per_case = String::new();
    for &t in &targets {
        // (case, instructions of its class, whole-inference instructions)
        let mut meas: Vec<(&Case, f64, f64)> = Vec::new();
        // the same in modelled cycles (targets with a cycle model only)
        let mut cmeas: Vec<(&Case, f64, f64)> = Vec::new();
        for (ci, c) in cases.iter().enumerate() {
            let tag = format!("other-{t}-{ci}");
            let cnt = count(&c.graph, &opts, t, &plugin, dir.path(), &tag);
            let class = match c.fit {
                f if f.contains("pool") => "pool",
                "scaled-layernorm" => "layernorm",
                f => f,
            };
            // the one kernel of the graph owns the 64-bit divisions it calls
            let of = |f: &str| {
                if libgcc_division(f) {
                    class
                } else {
                    other_class(f)
                }
            };
            let mut m: BTreeMap<&str, u64> = BTreeMap::new();
            for (f, &n) in &cnt.funcs {
                *m.entry(of(f)).or_insert(0) += n;
            }
            let n = m.get(class).copied().unwrap_or(0) as f64;
            let other = m.get("other").copied().unwrap_or(0);
            if c.fit != "call" {
                assert!(
                    n > 0.0,
                    "{t} {}: no instructions in class {class}: {m:?}",
                    c.label
                );
                // nothing of another kernel class runs in a one-op graph
                assert_eq!(n as u64 + other, cnt.total, "{t} {}: {m:?}", c.label);
            }
            let shown = if c.fit == "call" { cnt.total as f64 } else { n };
            println!(
                "| {t} | {} | {} | {} | {} | {} | {other} | {:.2} |",
                c.fit,
                c.label,
                c.units,
                c.outputs,
                shown,
                shown / c.units
            );
            meas.push((c, n, cnt.total as f64));
            if models_cycles(t) {
                let mut mc: BTreeMap<&str, u64> = BTreeMap::new();
                for (f, &n) in &cnt.func_cycles {
                    *mc.entry(of(f)).or_insert(0) += n;
                }
                let cn = mc.get(class).copied().unwrap_or(0) as f64;
                let (si, sc) = if c.fit == "call" {
                    (cnt.total as f64, cnt.cycles as f64)
                } else {
                    (n, cn)
                };
                per_case.push_str(&format!(
                    "| {t} | {} | {} | {si} | {sc} | {:.2} | {:.3} |\n",
                    c.fit,
                    c.label,
                    sc / c.units,
                    sc / si
                ));
                cmeas.push((c, cn, cnt.cycles as f64));
            }
        }
        let cpi = assumed_cpi(t);
        let simd = simd_of(t);
        let fit = other_fit(t, cpi, simd, &meas);
        if models_cycles(t) {
            let cfit = other_fit(t, 1.0, simd, &cmeas);
            let mut rows = Vec::new();
            for (&(class, i, _), &(_, c, _)) in fit.units.iter().zip(&cfit.units) {
                let (unit, f) = match class {
                    "conv" | "depthwise" | "linear (reference)" => ("MAC", simd),
                    "layernorm" => ("element (+ row / 64)", 1.0),
                    "pool" => ("outputs x k^2", 1.0),
                    "call_overhead" => ("node", 1.0),
                    "requant (reference)" => ("output", 1.0),
                    _ => ("element", 1.0),
                };
                rows.push((class, unit, i, c, f));
            }
            modelled.push((t, rows));
        }
        summaries.push((fit.rows, fit.entries));
    }
    println!(
        "\n| target | class | instructions per work unit | other terms | assumed CPI | new entry |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (rows, _) in &summaries {
        for r in rows {
            println!("{r}");
        }
    }
    println!("\nfitted cycle-table entries (instructions x ASSUMED CPI):");
    for (_, e) in &summaries {
        println!("{e}");
    }
    if !per_case.is_empty() {
        println!(
            "\n| target | fit | graph | class instructions | class modelled cycles | \
             modelled cycles / unit | modelled CPI |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        print!("{per_case}");
    }
    for (t, rows) in &modelled {
        print_modelled(*t, "one-op graphs", rows);
    }
}

/// The fits of `other_kernel_instruction_counts` for target `t` from `meas` (per case: the
/// case, its class's instructions (or modelled cycles), whole-inference instructions (or
/// cycles)), entries = per unit x `cpi` (x `simd` for conv / depthwise).
struct OtherFit {
    /// Rows of the summary table.
    rows: Vec<String>,
    /// "target: `entries`".
    entries: String,
    /// `(class, per work unit, entry)` of every entry, then Linear's per-MAC and per-output
    /// (requant) terms.
    units: Vec<(&'static str, f64, f64)>,
}

fn other_fit(t: Target, cpi: f64, simd: f64, meas: &[(&Case, f64, f64)]) -> OtherFit {
    let mut units = Vec::new();
    let of = |fit: &[&str]| -> Vec<(&Case, f64, f64)> {
        meas.iter()
            .filter(|(c, _, _)| fit.contains(&c.fit))
            .copied()
            .collect()
    };
    let (lin, rq) = lsq2(
        &of(&["linear"])
            .iter()
            .map(|(c, n, _)| (c.units, c.outputs, *n))
            .collect::<Vec<_>>(),
    );
    let mut rows = vec![format!(
        "| {t} | linear (reference) | {lin:.2} / MAC | requant {rq:.2} / output | {cpi} | \
         (linear {:.1}, requant {:.1}: not written) |",
        cpi * simd * lin,
        cpi * rq
    )];
    let mut entries = Vec::new();
    for class in ["conv", "depthwise"] {
        let m = of(&[class]);
        let macs: f64 = m.iter().map(|(c, _, _)| c.units).sum();
        let rest: f64 = m.iter().map(|(c, n, _)| n - rq * c.outputs).sum();
        let a = rest / macs;
        let free = if class == "conv" {
            let (fa, fb) = lsq2(
                &m.iter()
                    .map(|(c, n, _)| (c.units, c.outputs, *n))
                    .collect::<Vec<_>>(),
            );
            format!("free fit {fa:.2} / MAC + {fb:.1} / output")
        } else {
            let outs: f64 = m.iter().map(|(c, _, _)| c.outputs).sum();
            let all: f64 = m.iter().map(|(_, n, _)| n).sum();
            format!("{:.1} / output in all", all / outs)
        };
        let e = cpi * simd * a;
        rows.push(format!(
            "| {t} | {class} | {a:.2} / MAC (besides requant {rq:.2} / output) | {free} | \
             {cpi} | {e:.1} |"
        ));
        entries.push(format!("{class}: {e:.1}"));
        units.push((class, a, e));
    }
    for class in ["layernorm", "scaled-layernorm"] {
        let (a, r) = lsq2(
            &of(&[class])
                .iter()
                .map(|(c, n, _)| (c.units, c.rows, *n))
                .collect::<Vec<_>>(),
        );
        let e = cpi * (a + r / 64.0);
        rows.push(format!(
            "| {t} | {class} | {a:.2} / element | {r:.1} / row (= {:.2} / element at width \
             64) | {cpi} | {e:.1} |",
            r / 64.0
        ));
        if class == "layernorm" {
            entries.push(format!("layernorm: {e:.1}"));
            units.push(("layernorm", a + r / 64.0, e));
        }
    }
    let mut rate = BTreeMap::new();
    for (class, fits) in [
        ("gelu", &["gelu"][..]),
        ("add", &["add"][..]),
        ("relu", &["relu"][..]),
        ("pool", &["maxpool", "avgpool"][..]),
        ("maxpool 2x2/2", &["maxpool"][..]),
        ("avgpool 2x2/2", &["avgpool"][..]),
    ] {
        let (a, c) = lsq2(
            &of(fits)
                .iter()
                .map(|(cs, n, _)| (cs.units, 1.0, *n))
                .collect::<Vec<_>>(),
        );
        let unit = if class.contains("pool") {
            "outputs x k^2"
        } else {
            "element"
        };
        rows.push(format!(
            "| {t} | {class} | {a:.2} / {unit} | {c:.0} / call | {cpi} | {:.1} |",
            cpi * a
        ));
        rate.insert(class, a);
        if matches!(class, "gelu" | "add" | "relu" | "pool") {
            entries.push(format!("{class}: {:.1}", cpi * a));
            units.push((class, a, cpi * a));
        }
    }
    for fit in ["maxpool-3x3", "avgpool-3x3"] {
        for (c, n, _) in of(&[fit]) {
            rows.push(format!(
                "| {t} | {fit} (not fitted) | {:.2} / outputs x k^2 | {:.1} / output | {cpi} \
                 | - |",
                n / c.units,
                n / c.outputs
            ));
        }
    }
    let (slope, base) = lsq2(
        &of(&["call"])
            .iter()
            .map(|(c, _, total)| (c.units, 1.0, *total))
            .collect::<Vec<_>>(),
    );
    let relu = rate["relu"];
    let call = slope - relu;
    rows.push(format!(
        "| {t} | call_overhead | {call:.1} / node ({slope:.1} per one-element ReLU node less \
         {relu:.2} for its element) | {base:.0} fixed per inference | {cpi} | {:.1} |",
        cpi * call
    ));
    entries.push(format!("call_overhead: {:.1}", cpi * call));
    units.push(("call_overhead", call, cpi * call));
    units.push(("linear (reference)", lin, cpi * simd * lin));
    units.push(("requant (reference)", rq, cpi * rq));
    OtherFit {
        rows,
        entries: format!("{t}: `{}`", entries.join(", ")),
        units,
    }
}

/// The kernel group of a runtime function, for comparing a whole model's modelled cycles with
/// the cost model's by [`class_group`]; `shared` for the helpers several groups call, `other`
/// for `model_run`, copies and the C library.
fn function_group(f: &str) -> &'static str {
    if f.contains("depthwise") || f.starts_with("nas_rle_dw") {
        "depthwise"
    } else if f.contains("conv2d")
        || f.starts_with("nas_conv_")
        || f.starts_with("nas_rle_conv")
        || f == "nas_rle_tap"
        || f == "nas_rle_inside"
        || f == "nas_window_span"
    {
        "conv"
    } else if f.contains("linear") || f.starts_with("nas_rle_row_dot") || f.contains("tile") {
        "linear"
    } else if f.contains("attention")
        || f.contains("fwsa")
        || f.contains("softmax")
        || f.contains("recip")
        || f.contains("iexp")
        || f.contains("matmul")
        || f.starts_with("nas_rows")
        || f.starts_with("nas_row_times")
        || f.starts_with("nas_dot2")
        || f.starts_with("nas_dot_strided")
        || f == "nas_div_2p63"
        || libgcc_division(f)
    {
        "attention+softmax"
    } else if layernorm_function(f) {
        "layernorm"
    } else if f.starts_with("nas_rle_")
        || f.starts_with("nas_dot")
        || f == "nas_rq_get"
        || f == "nas_sum_s8"
        || f == "nas_store4"
    {
        "shared"
    } else if f.starts_with("nas_") {
        "elementwise+pool"
    } else {
        "other"
    }
}

/// The group of [`function_group`] a kernel class's cycles fall in.
fn class_group(c: cost::target::KernelClass) -> &'static str {
    use cost::target::KernelClass as K;
    match c {
        K::Linear | K::SparseLinear => "linear",
        K::Conv | K::SparseConv => "conv",
        K::Depthwise | K::SparseDepthwise => "depthwise",
        K::Attention | K::Softmax | K::MatMul => "attention+softmax",
        K::LayerNorm => "layernorm",
        K::Gelu | K::Add | K::Pool | K::Embedding => "elementwise+pool",
    }
}

/// One model's whole inference, modelled and by the cost model's latency of its int8 graph
/// (`export::latency`, what `nas cost --int8` prints), on each cycle-modelled core, in total
/// and by kernel group; then the M7's cycles by function. Modelled = the difference of a 2-run
/// and a 1-run program, so start-up cancels.
fn model_cycles(
    g: &Graph,
    targets: &[Target],
    dir: &Path,
    plugin: &Path,
    tag: &str,
) -> Vec<(Target, u64, f64)> {
    let mut totals = Vec::new();
    for (t, tgt) in modelled_cost_targets(targets) {
        let opts = Int8Options::default().for_target(&tgt);
        let (p, est) = estimate(g, &tgt, &opts).unwrap();
        let lat = export::latency::latency(g, &p, &tgt);
        let c = count(g, &opts, t, plugin, dir, &format!("{tag}-{t}"));
        let ms = |cycles: f64| cycles / tgt.clock_hz as f64 * 1e3;
        println!(
            "{tag} on {t} ({}): {} MACs, {} instructions, {} modelled cycles = {:.2} ms; cost \
             model {:.0} cycles = {:.2} ms ({:.3} x modelled)",
            tgt.name,
            est.macs,
            c.total,
            c.cycles,
            ms(c.cycles as f64),
            lat.cycles,
            ms(lat.cycles),
            lat.cycles / c.cycles as f64
        );
        let mut groups: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
        for k in &lat.kernels {
            groups.entry(class_group(k.class)).or_default().0 += k.cycles;
        }
        for (f, &cy) in &c.func_cycles {
            groups.entry(function_group(f)).or_default().1 += cy;
        }
        println!("| group | cost model | modelled | model / modelled |");
        println!("| --- | --- | --- | --- |");
        for (grp, (model, modelled)) in &groups {
            println!(
                "| {grp} | {model:.0} | {modelled} | {} |",
                if *modelled > 0 {
                    format!("{:.3}", model / *modelled as f64)
                } else {
                    "-".into()
                }
            );
        }
        if t == Target::CortexM7 {
            let mut funcs: Vec<(&String, &u64)> = c.func_cycles.iter().collect();
            funcs.sort_by(|a, b| b.1.cmp(a.1));
            println!("| function | modelled M7 cycles | share | instructions |");
            println!("| --- | --- | --- | --- |");
            for (f, &cy) in funcs {
                println!(
                    "| {f} | {cy} | {:.1} % | {} |",
                    100.0 * cy as f64 / c.cycles as f64,
                    c.funcs.get(f).copied().unwrap_or(0)
                );
            }
        }
        totals.push((t, c.cycles, lat.cycles));
    }
    totals
}

/// A searched model's whole inference against the cost model (`model_cycles`):
/// `NAS_INSN_MODEL=F/best/model.int8 cargo test --release -p export --test insn_count
/// whole_model_cycles -- --ignored --nocapture` (experiments/export/README.md). Ignored: minutes
/// under QEMU for a model of 100 M cycles, and it needs a model file.
#[test]
#[ignore]
fn whole_model_cycles() {
    let Some(path) = std::env::var_os("NAS_INSN_MODEL") else {
        eprintln!("note: set NAS_INSN_MODEL to a model.int8");
        return;
    };
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    let g = quant::load(&path).unwrap();
    model_cycles(&g, &targets, dir.path(), &plugin, "whole");
}

/// The Fashion-MNIST search winner's architecture (`configs/fashion_mnist.ron`, session 31:
/// 28 x 28 x 1, stages of 12 and 24 channels, one MobileNetV2 block and one Transformer each,
/// sequence pooling) and its layer sparsities `(layer, block, sparsity)`.
fn fashion_mnist_winner() -> (TinyFormerArch, Vec<(&'static str, usize, f64)>) {
    let stage = |channels, expansion, mlp_ratio| DotArch {
        downsample: Downsample::ConvMaxPool,
        channels,
        mobilenets: vec![MobileNetArch { expansion }],
        transformers: vec![TransformerArch {
            heads: 1,
            mlp_ratio,
            encoders: 1,
        }],
    };
    let arch = TinyFormerArch {
        input: [1, 28, 28],
        classes: 10,
        stages: vec![stage(12, 2, 2), stage(24, 4, 1)],
        pooling: Pooling::SeqPool,
        last_linear: 64,
    };
    let sparsity = vec![
        ("head.classifier", 4, 0.4),
        ("head.last", 4, 0.6),
        ("s0.mb0.dw", 3, 0.7),
        ("s0.mb0.expand", 2, 0.5),
        ("s0.tr0.enc0.fc1", 4, 0.4),
        ("s0.tr0.enc0.fc2", 2, 0.5),
        ("s0.tr0.fuse1", 4, 0.5),
        ("s0.tr0.fuse3", 4, 0.5),
        ("s1.mb0.dw", 3, 0.8),
        ("s1.mb0.expand", 4, 0.5),
        ("s1.mb0.project", 4, 0.4),
        ("s1.tr0.enc0.fc1", 2, 0.4),
        ("s1.tr0.enc0.fc2", 4, 0.5),
        ("s1.tr0.fuse1", 2, 0.6),
        ("s1.tr0.fuse3", 4, 0.5),
        ("s1.tr0.local1", 4, 0.5),
        ("s1.tr0.local3", 4, 0.8),
    ];
    (arch, sparsity)
}

/// Zeroes `sparsity` of the weight blocks of each named layer, picked by `r`, in the layout the
/// sparse kernels read (`export::sparse`): blocks of `block` weights along a Linear's or
/// Conv2d's reduction (`[out, in]`, `[out, kh, kw, in]`), and for a depthwise layer (`[kh, kw,
/// c]`) one kernel row of a channel per block, whatever `block` says.
fn prune_int8(g: &mut Graph, layers: &[(&str, usize, f64)], r: &mut Rng) {
    for &(name, block, sparsity) in layers {
        let node = g.nodes.iter_mut().find(|n| n.name == name);
        let node = node.unwrap_or_else(|| panic!("no layer {name}"));
        // the weight indices of every block
        let blocks: Vec<Vec<usize>> = match &node.op {
            quant::Op::Linear {
                in_features: cols,
                weight,
                ..
            } => row_blocks(weight.len(), *cols, block),
            quant::Op::Conv2d {
                in_c,
                window,
                weight,
                ..
            } => row_blocks(weight.len(), window.k[0] * window.k[1] * in_c, block),
            quant::Op::DepthwiseConv2d {
                channels, window, ..
            } => {
                let (kh, kw, c) = (window.k[0], window.k[1], *channels);
                (0..c * kh)
                    .map(|b| {
                        (0..kw)
                            .map(|kx| ((b % kh) * kw + kx) * c + b / kh)
                            .collect()
                    })
                    .collect()
            }
            op => panic!("{name} is a {}", op.kind()),
        };
        let weight = match &mut node.op {
            quant::Op::Linear { weight, .. }
            | quant::Op::Conv2d { weight, .. }
            | quant::Op::DepthwiseConv2d { weight, .. } => weight,
            _ => unreachable!(),
        };
        // a random `sparsity` of them (Fisher-Yates prefix), the rest nonzero
        let mut order: Vec<usize> = (0..blocks.len()).collect();
        let pruned = (sparsity * blocks.len() as f64).round() as usize;
        for i in 0..pruned {
            let j = i + (r.next() % (order.len() - i) as u64) as usize;
            order.swap(i, j);
        }
        for (k, &b) in order.iter().enumerate() {
            for &w in &blocks[b] {
                if k < pruned {
                    weight[w] = 0;
                } else if weight[w] == 0 {
                    weight[w] = 1;
                }
            }
        }
    }
}

/// The weight indices of each block of `block` weights along rows of `cols` (the last block of
/// a row may be shorter).
fn row_blocks(len: usize, cols: usize, block: usize) -> Vec<Vec<usize>> {
    (0..len / cols)
        .flat_map(|row| {
            (0..cols)
                .step_by(block)
                .map(move |c0| (row * cols + c0..row * cols + (c0 + block).min(cols)).collect())
        })
        .collect()
}

/// Guard of the cost model's latency of an int8 graph (`export::latency`, `nas cost --int8`)
/// on a model of searched widths: the Fashion-MNIST winner's architecture and layer sparsities
/// ([`fashion_mnist_winner`]; initial weights, PTQ, blocks pruned at random), priced within
/// 10 % of one inference's modelled cycles on each cycle-modelled core (the trained winner:
/// 0.985-0.993, experiments/export/README.md, session 32). About 20 s.
#[test]
fn searched_model_latency_matches_modelled_cycles() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    let (arch, sparsity) = fashion_mnist_winner();
    let model = fixtures::trained(&arch, 0);
    let (calib, _) = fixtures::gratings(8, &arch, 5);
    let opts = PtqOptions {
        scaled_layer_norm: true,
        calibration_samples: calib.len(),
        report_samples: 2,
        ..PtqOptions::default()
    };
    let (mut g, _) = quantize_tinyformer(&model, &arch, &calib, &opts).unwrap();
    prune_int8(&mut g, &sparsity, &mut Rng(21));
    let totals = model_cycles(&g, &targets, dir.path(), &plugin, "fashion-mnist-winner");
    for (t, modelled, priced) in totals {
        let ratio = priced / modelled as f64;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "{t}: cost model {priced:.0} cycles, modelled {modelled} ({ratio:.3} x)"
        );
    }
}

/// How the run-length kernels' cost depends on the block size (the cost model charges a stored
/// MAC the same whatever the block): 3x3 Conv2d and pointwise layers of searched-TinyFormer
/// width (12 and 20 channels) with half of their blocks of 1, 2 and 4 weights kept, in modelled
/// cycles per target: the kernel's functions (`nas_*rle*`) against the cost model's entry x
/// stored MACs + `requant` x outputs, and per block size the kernel's cycles less `requant` per
/// output over the stored MACs (what a per-block-size entry would be). Blocks of 1 at half
/// density code larger than dense, so the exporter (and the cost model) keep them dense.
/// Ignored: the data of the cost model's next refit (experiments/export/README.md, session 29),
/// about 2 minutes under QEMU.
#[test]
#[ignore]
fn sparse_block_sizes() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    let opts = Int8Options::default();
    println!(
        "| target | layer | block | stored MACs | outputs | kernel cycles | cycles / stored MAC | cost model |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (t, tgt) in modelled_cost_targets(&targets) {
        // (class, block) -> (cycles less requant, stored MACs)
        let mut sums: BTreeMap<(&str, usize), (f64, f64)> = BTreeMap::new();
        for (k, hw, c, cout) in [(3, 16, 12, 12), (3, 8, 20, 20), (1, 16, 12, 24)] {
            for block in [1, 2, 4] {
                let g = pruned_conv(k, hw, c, cout, block, (1, 2));
                let macs = estimate(&g, &tgt, &opts).unwrap().1.macs as f64;
                let outputs = (hw * hw * cout) as f64;
                let tag = format!("sb-{t}-{k}-{c}-{block}");
                let n = count(&g, &opts, t, &plugin, dir.path(), &tag);
                let kernel = n.cycles_of(|f| f.starts_with("nas_") && f.contains("rle"));
                let (entry, class) = if k == 1 {
                    (tgt.cycles.sparse_mac, "pointwise")
                } else {
                    (tgt.cycles.sparse_conv_mac, "conv3x3")
                };
                let label = format!("{class} {c}->{cout} {hw}x{hw}");
                if kernel == 0 {
                    println!("| {t} | {label} | {block} | kept dense | | | | |");
                    continue;
                }
                let model = entry * macs + tgt.cycles.requant * outputs;
                println!(
                    "| {t} | {label} | {block} | {macs} | {outputs} | {kernel} | {:.2} | {model:.0} |",
                    kernel as f64 / macs,
                );
                let e = sums.entry((class, block)).or_insert((0.0, 0.0));
                e.0 += kernel as f64 - tgt.cycles.requant * outputs;
                e.1 += macs;
            }
        }
        for ((class, block), (cycles, macs)) in &sums {
            let entry = if *class == "pointwise" {
                tgt.cycles.sparse_mac
            } else {
                tgt.cycles.sparse_conv_mac
            };
            println!(
                "{t} {class} block {block}: {:.2} cycles / stored MAC besides requant (entry now {entry})",
                cycles / macs
            );
        }
    }
}

/// Coded pointwise and depthwise layers at the widths of searched TinyFormers (14 x 14 pixels;
/// pointwise 12-96 -> 24 channels in blocks of 2 and 4, half or three quarters of the blocks
/// kept; depthwise 3 x 3 over 24-96 channels at 14 x 14 or 7 x 7, 50-80 % of the kernel rows
/// pruned at random): the sparse
/// kernel's modelled cycles (`nas_*rle*`) against the cost model's price of the layer
/// (`export::latency`, less one call overhead), and per kernel and block class a free fit
/// `a stored MACs + b outputs` of those cycles: what the entries `sparse_mac`,
/// `sparse_mac_narrow`, `sparse_depthwise_mac` (a) and the per-output terms (b less `requant`)
/// are refit from (experiments/export/README.md, session 32). Ignored: about 3 minutes under
/// QEMU.
#[test]
#[ignore]
fn sparse_row_widths() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    println!(
        "| target | layer | block | kept | stored MACs | outputs | kernel cycles | cost model | measured / model |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let hw = 14;
    let mut cases = Vec::new();
    for cin in [12, 24, 48, 96] {
        for block in [2, 4] {
            for keep in [(1, 2), (3, 4)] {
                let g = pruned_conv(1, hw, cin, 24, block, keep);
                let label = format!("pointwise {cin}->24");
                let class = if block < 4 {
                    "pointwise narrow"
                } else {
                    "pointwise"
                };
                cases.push((class, label, block, keep, g));
            }
        }
    }
    // depthwise: kernel rows pruned at random, as `prune_int8` does (some channels keep none)
    for (c, dhw) in [(24, 14), (96, 7), (48, 14)] {
        for (pruned, of) in [(1, 2), (7, 10), (4, 5)] {
            let (mut r, mut b, win) = conv_start(3, dhw, c);
            let w = r.i8s(9 * c);
            b.depthwise_conv2d("conv", "x", win, w, r.i32s(c, 500), &[0.02], 2f64.powi(-4))
                .unwrap();
            b.output("conv");
            let mut g = b.finish().unwrap();
            prune_int8(&mut g, &[("conv", 3, pruned as f64 / of as f64)], &mut r);
            let label = format!("depthwise 3x3 {c} {dhw}x{dhw}");
            cases.push(("depthwise", label, 3, (of - pruned, of), g));
        }
    }
    for (t, tgt) in modelled_cost_targets(&targets) {
        let opts = Int8Options::default().for_target(&tgt);
        // class -> (stored MACs, outputs, kernel cycles)
        let mut fits: BTreeMap<&str, Vec<(f64, f64, f64)>> = BTreeMap::new();
        for (class, label, block, keep, g) in &cases {
            let (p, est) = estimate(g, &tgt, &opts).unwrap();
            let coded = p.coded.iter().flatten().next();
            let Some(e) = coded else {
                println!(
                    "| {t} | {label} | {block} | {}/{} | kept dense | | | | |",
                    keep.0, keep.1
                );
                continue;
            };
            assert!(
                *class == "depthwise" || e.block == *block,
                "{label}: coded in blocks of {}",
                e.block
            );
            let lat = export::latency::latency(g, &p, &tgt);
            let model = lat.cycles - tgt.cycles.call_overhead;
            let outputs = g_out(g) as f64;
            let tag = format!("sr-{t}-{label}-{block}-{}", keep.0).replace([' ', '>'], "_");
            let n = count(g, &opts, t, &plugin, dir.path(), &tag);
            let kernel = n.cycles_of(|f| f.starts_with("nas_") && f.contains("rle")) as f64;
            println!(
                "| {t} | {label} | {block} | {}/{} | {} | {outputs} | {kernel} | {model:.0} | {:.3} |",
                keep.0,
                keep.1,
                est.macs,
                kernel / model
            );
            fits.entry(class)
                .or_default()
                .push((est.macs as f64, outputs, kernel));
        }
        for (class, rows) in &fits {
            let (a, b) = lsq2(rows);
            println!(
                "{t} {class}: {a:.3} cycles / stored MAC + {b:.2} / output ({:.2} besides requant)",
                b - tgt.cycles.requant
            );
        }
    }
}

/// The fused attention core at the widths a searched TinyFormer has (heads of 4-20 channels,
/// 49-960 keys): its modelled cycles (the kernel and its helpers, the projections left out)
/// against the cost model's `matmul` (tiled) or `matmul_untiled` per MAC, `attention_score`
/// (tiled or untiled) per score and `requant` per output; per score, what the model misses,
/// grouped by how the kernel runs the scores (tiled; untiled, heads a multiple of 4; untiled,
/// other heads: the short-row path), and the cycles per score besides the MACs and the
/// output's requantization (what the `attention_score` entries are fit from). Ignored: the
/// data of those entries (experiments/export/README.md, session 30), about 5 minutes under
/// QEMU.
#[test]
#[ignore]
fn attention_head_widths() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    println!(
        "| target | keys | heads x P | path | MACs | scores | kernel cycles | cost model | measured / model | missed / score |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (t, tgt) in modelled_cost_targets(&targets) {
        let opts = Int8Options::default().for_target(&tgt);
        let simd = tgt.simd_width as f64;
        // path -> (scores, query rows of all heads, missed cycles, cycles besides the MACs and
        // the output's requantization) per case
        let mut missed: BTreeMap<&str, Vec<(f64, f64, f64, f64)>> = BTreeMap::new();
        // (the projections' width H P a multiple of 4, as in a searched model: a narrower
        // Linear's scalar tail would be counted with the kernel's helpers)
        for s in [49, 196, 240, 960] {
            for (h, p) in [(1, 4), (2, 6), (1, 8), (2, 10), (1, 12), (2, 12), (1, 20)] {
                if s == 960 && h * p > 12 {
                    continue;
                }
                let g = graphs::mhsa((s, h * p, p, h), 7, 0);
                let pl = plan(&g, &opts).unwrap();
                let [fa] = &pl.fused[..] else {
                    panic!("{s} keys, {h} x {p}: not one fused attention");
                };
                let path = match (fa.tiled, p % 4 == 0) {
                    (true, _) => "tiled",
                    (false, true) => "untiled, P = 4k",
                    (false, false) => "untiled, short rows",
                };
                let w = work(&g, &opts);
                let n = count(
                    &g,
                    &opts,
                    t,
                    &plugin,
                    dir.path(),
                    &format!("aw-{t}-{s}-{h}-{p}"),
                );
                if std::env::var_os("NAS_INSN_FUNCS").is_some() {
                    println!("{:?}", n.func_cycles);
                }
                let kernel = by_class(&n.func_cycles, true)
                    .get("attention")
                    .copied()
                    .unwrap_or(0) as f64;
                let mac = if fa.tiled {
                    tgt.cycles.matmul
                } else {
                    tgt.cycles.matmul_untiled()
                };
                let outs = w.att_requant - w.att_softmax;
                let model = w.att_macs * mac / simd
                    + w.att_softmax * tgt.cycles.attention_score(fa.tiled)
                    + outs * tgt.cycles.requant;
                println!(
                    "| {t} | {s} | {h} x {p} | {path} | {} | {} | {kernel:.0} | {model:.0} | {:.2} | {:.1} |",
                    w.att_macs,
                    w.att_softmax,
                    kernel / model,
                    (kernel - model) / w.att_softmax
                );
                let rows = (h * s) as f64;
                // the kernel less its MACs and its output's requantization: per score, the
                // cycle table's `attention_score` entries
                let besides = kernel - w.att_macs * mac / simd - outs * tgt.cycles.requant;
                missed.entry(path).or_default().push((
                    w.att_softmax,
                    rows,
                    kernel - model,
                    besides,
                ));
            }
        }
        for (path, cases) in &missed {
            let (scores, cycles, besides) = cases
                .iter()
                .fold((0.0, 0.0, 0.0), |(s, c, b), r| (s + r.0, c + r.2, b + r.3));
            let rows: Vec<(f64, f64, f64)> = cases.iter().map(|r| (r.0, r.1, r.2)).collect();
            let (per_score, per_row) = lsq2(&rows);
            println!(
                "{t} {path}: {:.2} cycles / score missed by the model; as a fit, {per_score:.2} \
                 / score + {per_row:.1} / query row of a head; besides MACs and output \
                 requantization {:.1} cycles / score (the `attention_score` entries)",
                cycles / scores,
                besides / scores
            );
        }
    }
}

/// Dense Linear (and so pointwise Conv2d, which the runtime runs as a Linear over the pixels)
/// at a searched TinyFormer's widths (8-24 inputs, many tokens) and wider, in modelled cycles
/// per target: the kernel's functions against the cost model (`linear` per MAC with an operand
/// tile, `linear_untiled` without, `requant` per output) and what it misses per output.
/// Ignored: the data of the cost model's short-row term (experiments/export/README.md,
/// session 30), about a minute under QEMU.
#[test]
#[ignore]
fn linear_row_widths() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    println!(
        "| target | tokens | in -> out | requant per | tile | MACs | outputs | kernel cycles | cost model | measured / model | missed / output |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (t, tgt) in modelled_cost_targets(&targets) {
        let opts = Int8Options::default().for_target(&tgt);
        let simd = tgt.simd_width as f64;
        // (input width, per channel) -> (missed cycles, outputs)
        let mut missed: BTreeMap<(usize, bool), (f64, f64)> = BTreeMap::new();
        for (tokens, i, o) in [
            (240, 8, 16),
            (240, 12, 12),
            (240, 12, 24),
            (240, 20, 20),
            (240, 24, 12),
            (240, 10, 20),
            (240, 6, 12),
            (60, 32, 32),
            (60, 64, 32),
            (16, 256, 32),
        ] {
            for per_channel in [false, true] {
                // per channel: scales 0.0016-0.0024 (a searched model's PTQ default)
                let scales: Vec<f64> = if per_channel {
                    (0..o)
                        .map(|c| 0.0016 + 0.0008 * (c % 5) as f64 / 4.0)
                        .collect()
                } else {
                    vec![0.002]
                };
                let g = one_op(&[tokens, i], |b, r| {
                    b.linear(
                        "fc",
                        "x",
                        r.i8s(o * i),
                        r.i32s(o, 2000),
                        &scales,
                        2f64.powi(-3),
                    )
                    .unwrap()
                });
                let tile = opts.operand_tiles != TilePolicy::Never
                    && cost::ops::linear_tile_bytes(tokens, i) > 0;
                let macs = node_macs(&g, 0) as f64;
                let outputs = (tokens * o) as f64;
                let n = count(
                    &g,
                    &opts,
                    t,
                    &plugin,
                    dir.path(),
                    &format!("lw-{t}-{i}-{o}-{per_channel}"),
                );
                let kernel = n.cycles_of(|f| f.contains("linear"));
                let mac = if tile {
                    tgt.cycles.linear
                } else {
                    tgt.cycles.linear_untiled()
                };
                let model = macs * mac / simd + outputs * tgt.cycles.requant;
                println!(
                    "| {t} | {tokens} | {i} -> {o} | {} | {tile} | {macs} | {outputs} | {kernel} | {model:.0} | {:.2} | {:.1} |",
                    if per_channel { "channel" } else { "tensor" },
                    kernel as f64 / model,
                    (kernel as f64 - model) / outputs
                );
                let e = missed.entry((i, per_channel)).or_insert((0.0, 0.0));
                e.0 += kernel as f64 - model;
                e.1 += outputs;
            }
        }
        for ((i, per_channel), (cycles, outputs)) in &missed {
            println!(
                "{t} {i} inputs, requantization per {}: {:.1} cycles / output missed by the model",
                if *per_channel { "channel" } else { "tensor" },
                cycles / outputs
            );
        }
    }
}

/// Dense Conv2d at the input widths of searched models' first layers (a key-word MFCC image's
/// one channel, an image's one or three) and wider, per channel as PTQ quantizes them, against
/// the cost model's `conv` per MAC + `requant` per output + `conv_gather` per output where the
/// kernel gathers its windows (kernel rows of `kw ic` bytes that are not whole words, a window
/// of at most 64 bytes; `conv_gather_9` for a 9-byte window); prints both fits per target.
#[test]
#[ignore]
fn conv_input_widths() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    println!(
        "| target | input | kernel | in -> out | gathered | MACs | outputs | kernel cycles | cost model | measured / model | missed / output |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (t, tgt) in modelled_cost_targets(&targets) {
        let opts = Int8Options::default().for_target(&tgt);
        let simd = tgt.simd_width as f64;
        // (cycles beyond conv + requant, outputs) of windows other than 9 bytes, and of 9
        let mut gathered = [(0.0, 0.0); 2];
        for (h, w, cin, cout, s) in [
            (96, 40, 1, 12, 1),
            (28, 28, 1, 12, 1),
            (28, 28, 1, 16, 2),
            (32, 32, 3, 16, 1),
            (16, 16, 2, 8, 1),
            (16, 16, 5, 12, 1),
            (16, 16, 6, 12, 1),
            (16, 16, 7, 16, 1),
            (16, 16, 8, 16, 1),
            (16, 16, 10, 16, 1),
            (48, 20, 12, 20, 2),
        ] {
            let scales: Vec<f64> = (0..cout)
                .map(|c| 0.0016 + 0.0008 * (c % 5) as f64 / 4.0)
                .collect();
            let g = one_op(&[h, w, cin], |b, r| {
                b.conv2d(
                    "conv",
                    "x",
                    window(3, s, 1),
                    r.i8s(cout * 9 * cin),
                    r.i32s(cout, 500),
                    &scales,
                    2f64.powi(-4),
                )
                .unwrap()
            });
            let macs = node_macs(&g, 0) as f64;
            let outputs = g.tensor(&g.nodes[0].output).unwrap().numel() as f64;
            let n = count(
                &g,
                &opts,
                t,
                &plugin,
                dir.path(),
                &format!("cw-{t}-{h}-{cin}-{cout}-{s}"),
            );
            let kernel = n.cycles_of(|f| f.contains("conv2d"));
            let work = cost::ops::conv_gather_work(3, 3, cin);
            let gathers = work.is_some();
            let nine = work == Some(cost::ops::Work::ConvGather9);
            let plain = macs * tgt.cycles.conv / simd + outputs * tgt.cycles.requant;
            let gather = match work {
                None => 0.0,
                Some(cost::ops::Work::ConvGather9) => tgt.cycles.conv_gather_9(),
                Some(_) => tgt.cycles.conv_gather(),
            };
            let model = plain + outputs * gather;
            println!(
                "| {t} | {h}x{w}x{cin} | 3x3/{s} | {cin} -> {cout} | {gathers} | {macs} | {outputs} | {kernel} | {model:.0} | {:.2} | {:.1} |",
                kernel as f64 / model,
                (kernel as f64 - model) / outputs
            );
            if gathers {
                // what conv + requant alone miss: the conv_gather(_9) fit
                let g = &mut gathered[usize::from(nine)];
                g.0 += kernel as f64 - plain;
                g.1 += outputs;
            }
        }
        for (entry, (cycles, outputs)) in ["conv_gather", "conv_gather_9"].iter().zip(gathered) {
            println!(
                "{t}: {entry} = {:.1} cycles / output besides conv and requant",
                cycles / outputs
            );
        }
    }
}

/// LayerNorm (I-BERT's and TinyFormer's Scaled-LayerNorm) at the widths of searched
/// TinyFormers (12-24 channels over 240-960 tokens) and of KWTs (64, 192), against the cost
/// model's `layernorm` (I-BERT) or `scaled_layernorm` per element + `layernorm_row` per row;
/// prints the least-squares per-element and per-row cycles of each variant per target (the
/// entries' fit).
#[test]
#[ignore]
fn layernorm_row_widths() {
    let Some((targets, dir, plugin)) = setup() else {
        return;
    };
    println!(
        "| target | variant | tokens x width | kernel cycles | cost model | measured / model | cycles / element |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (t, tgt) in modelled_cost_targets(&targets) {
        let opts = Int8Options::default().for_target(&tgt);
        for scaled in [false, true] {
            let name = if scaled { "Scaled-LayerNorm" } else { "I-BERT" };
            let mut rows = Vec::new(); // (elements, rows, cycles)
            for (tokens, d) in [
                (960, 12),
                (240, 12),
                (240, 20),
                (240, 24),
                (60, 24),
                (65, 64),
                (99, 192),
            ] {
                let g = layer_norm_graph(tokens, d, scaled);
                let n = count(
                    &g,
                    &opts,
                    t,
                    &plugin,
                    dir.path(),
                    &format!("ln-{t}-{scaled}-{tokens}-{d}"),
                );
                // (RV32 divides by the row's std through its reciprocal)
                let kernel = n.cycles_of(|f| other_class(f) == "layernorm" || f.contains("recip"));
                let elems = (tokens * d) as f64;
                let per_element = if scaled {
                    tgt.cycles.scaled_layernorm()
                } else {
                    tgt.cycles.layernorm
                };
                let model = elems * per_element + tokens as f64 * tgt.cycles.layernorm_row();
                println!(
                    "| {t} | {name} | {tokens} x {d} | {kernel} | {model:.0} | {:.2} | {:.1} |",
                    kernel as f64 / model,
                    kernel as f64 / elems
                );
                rows.push((elems, tokens as f64, kernel as f64));
            }
            let (a, r) = lsq2(&rows);
            println!("{t} {name}: {a:.1} cycles / element + {r:.1} / row");
        }
    }
}
