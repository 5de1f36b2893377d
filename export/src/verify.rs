//! Verification: export, build a test driver for each target, run it (natively or under QEMU)
//! and compare every output with quant's Rust interpreter, bit for bit.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use quant::{Graph, Interpreter};
use serde::{Deserialize, Serialize};

use crate::codegen::{ExportLimits, generate_with, write_project};
use crate::error::{ExportError, Result, io_err};
use crate::plan::Int8Options;

/// Where the exported C is built and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Target {
    /// Host gcc with `-fsanitize=address,undefined`.
    Host,
    /// Cortex-M4 (arm-none-eabi-gcc, `qemu-system-arm -M mps2-an386`).
    CortexM4,
    /// Cortex-M7 (arm-none-eabi-gcc, `qemu-system-arm -M mps2-an500`).
    CortexM7,
    /// RV32IMC (riscv64-unknown-elf-gcc, `qemu-system-riscv32 -M virt`).
    Rv32,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 4] = [
        Target::Host,
        Target::CortexM4,
        Target::CortexM7,
        Target::Rv32,
    ];

    /// The generated Makefile's target name.
    pub fn make_target(self) -> &'static str {
        match self {
            Target::Host => "host-asan",
            Target::CortexM4 => "m4",
            Target::CortexM7 => "m7",
            Target::Rv32 => "rv32",
        }
    }

    /// `(executable, Debian package)` the target needs.
    pub fn tools(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Target::Host => &[("gcc", "gcc"), ("make", "make"), ("timeout", "coreutils")],
            Target::CortexM4 | Target::CortexM7 => &[
                ("make", "make"),
                ("timeout", "coreutils"),
                ("arm-none-eabi-gcc", "gcc-arm-none-eabi"),
                ("qemu-system-arm", "qemu-system-arm"),
            ],
            Target::Rv32 => &[
                ("make", "make"),
                ("timeout", "coreutils"),
                ("riscv64-unknown-elf-gcc", "gcc-riscv64-unknown-elf"),
                ("qemu-system-riscv32", "qemu-system-misc"),
            ],
        }
    }

    /// Checks that every tool (and the picolibc specs of cross compilers) is installed;
    /// the error names the tool and the apt package.
    pub fn check_tools(self) -> Result<()> {
        for &(tool, package) in self.tools() {
            if find_in_path(tool).is_none() {
                return Err(ExportError::ToolMissing {
                    target: format!("{self:?}"),
                    tool: tool.into(),
                    package: package.into(),
                });
            }
        }
        let picolibc = match self {
            Target::Host => None,
            Target::CortexM4 | Target::CortexM7 => {
                Some(("arm-none-eabi-gcc", "picolibc-arm-none-eabi"))
            }
            Target::Rv32 => Some(("riscv64-unknown-elf-gcc", "picolibc-riscv64-unknown-elf")),
        };
        if let Some((cc, package)) = picolibc {
            // gcc echoes the bare name back when it cannot find the file
            let found = Command::new(cc)
                .arg("-print-file-name=picolibc.specs")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .is_some_and(|p| Path::new(&p).is_absolute());
            if !found {
                return Err(ExportError::ToolMissing {
                    target: format!("{self:?}"),
                    tool: "picolibc.specs".into(),
                    package: package.into(),
                });
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// First differing element of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// Sample index.
    pub sample: usize,
    /// Output element index.
    pub index: usize,
    /// C value.
    pub got: i8,
    /// Interpreter value.
    pub want: i8,
}

/// Result on one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    /// The target.
    pub target: Target,
    /// Samples run.
    pub samples: usize,
    /// `None` when every output of every sample is bit-exact.
    pub first_mismatch: Option<Mismatch>,
    /// Number of differing elements over all samples.
    pub mismatches: usize,
    /// Raw input values the C front end (`model_quantize_input`) quantized, for a graph with
    /// input statistics (0 without).
    #[serde(default)]
    pub front_end_checked: usize,
    /// Of those, values whose int8 code differs from `quant::Graph::quantize_input`'s.
    #[serde(default)]
    pub front_end_mismatches: usize,
    /// Build time, seconds.
    pub build_s: f64,
    /// Run time (including emulator start), seconds.
    pub run_s: f64,
}

/// Result of [`verify`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Arena bytes of the exported model.
    pub arena_bytes: usize,
    /// Constant bytes of the exported model.
    pub weight_bytes: usize,
    /// One entry per requested target, in order.
    pub targets: Vec<TargetReport>,
}

impl VerifyReport {
    /// Whether every target matched the interpreter exactly.
    pub fn all_exact(&self) -> bool {
        self.targets
            .iter()
            .all(|t| t.first_mismatch.is_none() && t.front_end_mismatches == 0)
    }

    /// `Err(Mismatch)` naming the first target and element that differ.
    pub fn ensure_exact(&self) -> Result<()> {
        for t in &self.targets {
            if let Some(m) = t.first_mismatch {
                return Err(ExportError::Mismatch {
                    target: t.target.to_string(),
                    sample: m.sample,
                    index: m.index,
                    got: m.got,
                    want: m.want,
                });
            }
            if t.front_end_mismatches > 0 {
                return Err(ExportError::FrontEndMismatch {
                    target: t.target.to_string(),
                    mismatches: t.front_end_mismatches,
                    checked: t.front_end_checked,
                });
            }
        }
        Ok(())
    }
}

/// Splits one concatenated sample into the graph's inputs.
fn split_inputs<'a>(graph: &Graph, sample: &'a [i8]) -> Vec<&'a [i8]> {
    let mut off = 0;
    graph
        .inputs
        .iter()
        .map(|i| {
            let n = graph.tensor(i).map_or(0, |t| t.numel());
            let s = &sample[off..off + n];
            off += n;
            s
        })
        .collect()
}

fn c_bytes(out: &mut String, rows: &[Vec<i8>]) {
    for r in rows {
        out.push_str("    {");
        for (i, v) in r.iter().enumerate() {
            if i % 24 == 0 {
                out.push_str("\n        ");
            }
            let _ = write!(out, "{v},");
        }
        out.push_str("\n    },\n");
    }
}

/// Raw inputs for the C front end and the int8 codes the Rust reference gives them.
struct FrontEndCheck {
    raw: Vec<Vec<f32>>,
    want: Vec<Vec<i8>>,
}

impl FrontEndCheck {
    /// `None` for a graph without input statistics (no front end is exported).
    fn of(graph: &Graph) -> Result<Option<Self>> {
        let Some(raw) = crate::front_end::probe_inputs(graph) else {
            return Ok(None);
        };
        let want = raw
            .iter()
            .map(|r| graph.quantize_input(r))
            .collect::<std::result::Result<_, _>>()?;
        Ok(Some(Self { raw, want }))
    }

    fn checked(&self) -> usize {
        self.raw.iter().map(Vec::len).sum()
    }
}

/// Appends the front end's probe tables to the driver `s` and returns the code in `main` that
/// runs `<name>_quantize_input` on them and prints `FRONTEND <mismatches> <checked>`.
fn front_end_driver(s: &mut String, name: &str, check: &FrontEndCheck) -> String {
    let up = name.to_ascii_uppercase();
    let _ = writeln!(
        s,
        "\n#define NRAW {}\nstatic const float raw[NRAW][{up}_INPUT_LEN] = {{",
        check.raw.len()
    );
    for r in &check.raw {
        s.push_str("    {");
        for (i, &v) in r.iter().enumerate() {
            if i % 8 == 0 {
                s.push_str("\n        ");
            }
            let _ = write!(s, "{},", crate::front_end::c_float(v));
        }
        s.push_str("\n    },\n");
    }
    let _ = writeln!(
        s,
        "}};\nstatic const int8_t raw_want[NRAW][{up}_INPUT_LEN] = {{"
    );
    c_bytes(s, &check.want);
    s.push_str("};\n");
    format!(
        "\x20   {{\n\
         \x20       static int8_t q[{up}_INPUT_LEN];\n\
         \x20       int r, k, fe_bad = 0;\n\
         \x20       for (r = 0; r < NRAW; r++) {{\n\
         \x20           {name}_quantize_input(raw[r], q);\n\
         \x20           for (k = 0; k < {up}_INPUT_LEN; k++) {{\n\
         \x20               if (q[k] != raw_want[r][k]) {{\n\
         \x20                   if (!fe_bad) {{\n\
         \x20                       printf(\"FRONTEND MISMATCH raw %d index %d got %d want %d\\n\",\n\
         \x20                              r, k, (int)q[k], (int)raw_want[r][k]);\n\
         \x20                   }}\n\
         \x20                   fe_bad++;\n\
         \x20               }}\n\
         \x20           }}\n\
         \x20       }}\n\
         \x20       printf(\"FRONTEND %d %d\\n\", fe_bad, NRAW * {up}_INPUT_LEN);\n\
         \x20       if (fe_bad) {{\n\
         \x20           bad = 1;\n\
         \x20       }}\n\
         \x20   }}\n"
    )
}

/// The `FRONTEND <mismatches> <checked>` line of the driver.
fn parse_front_end(text: &str) -> Option<(usize, usize)> {
    text.lines().find_map(|line| {
        let mut it = line.trim().strip_prefix("FRONTEND ")?.split_whitespace();
        let bad = it.next()?.parse().ok()?;
        let checked = it.next()?.parse().ok()?;
        it.next().is_none().then_some((bad, checked))
    })
}

/// The test driver: embeds inputs and the interpreter's outputs, prints every output
/// (`OUT <sample> v ...`), reports the first mismatch and exits non-zero on any.
fn driver(
    name: &str,
    inputs: &[Vec<i8>],
    expected: &[Vec<i8>],
    in_len: usize,
    out_len: usize,
    front_end: Option<&FrontEndCheck>,
) -> String {
    let up = name.to_ascii_uppercase();
    let mut s = format!(
        "/* main.c - verification driver generated by the `export` crate. */\n\
         #include <stdio.h>\n#include \"{name}.h\"\n\n\
         #define NSAMPLES {}\n\
         static const int8_t inputs[NSAMPLES][{}] = {{\n",
        inputs.len(),
        in_len.max(1)
    );
    c_bytes(&mut s, inputs);
    let _ = writeln!(
        s,
        "}};\nstatic const int8_t expected[NSAMPLES][{}] = {{",
        out_len.max(1)
    );
    c_bytes(&mut s, expected);
    s.push_str("};\n");
    let front_end_code = front_end.map(|f| front_end_driver(&mut s, name, f));
    let _ = write!(
        s,
        "\n\
         int main(void) {{\n\
         \x20   static int8_t out[{up}_OUTPUT_LEN];\n\
         \x20   int s, i, bad = 0;\n\
         {}",
        front_end_code.unwrap_or_default()
    );
    let _ = write!(
        s,
        "\
         \x20   for (s = 0; s < NSAMPLES; s++) {{\n\
         \x20       {name}_run(inputs[s], out);\n\
         \x20       printf(\"OUT %d\", s);\n\
         \x20       for (i = 0; i < {up}_OUTPUT_LEN; i++) {{\n\
         \x20           printf(\" %d\", (int)out[i]);\n\
         \x20       }}\n\
         \x20       printf(\"\\n\");\n\
         \x20       for (i = 0; i < {up}_OUTPUT_LEN; i++) {{\n\
         \x20           if (out[i] != expected[s][i]) {{\n\
         \x20               if (!bad) {{\n\
         \x20                   printf(\"MISMATCH sample %d index %d got %d want %d\\n\", s, i,\n\
         \x20                          (int)out[i], (int)expected[s][i]);\n\
         \x20               }}\n\
         \x20               bad = 1;\n\
         \x20           }}\n\
         \x20       }}\n\
         \x20   }}\n\
         \x20   printf(bad ? \"FAIL\\n\" : \"PASS\\n\");\n\
         \x20   return bad;\n\
         }}\n"
    );
    s
}

fn run_make(dir: &Path, target: Target, goal: &str) -> Result<(bool, String, String)> {
    let cmd = format!("make -s -C {} {goal}", dir.display());
    let out = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(dir)
        .arg(goal)
        .output()
        .map_err(|e| ExportError::Run {
            target: target.to_string(),
            command: cmd.clone(),
            status: "not started".into(),
            output: e.to_string(),
        })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let status = out
        .status
        .code()
        .map_or_else(|| "killed by a signal".to_string(), |c| c.to_string());
    Ok((
        out.status.success(),
        text,
        if out.status.success() {
            cmd
        } else {
            format!("{cmd} -> {status}")
        },
    ))
}

fn tail(s: &str, n: usize) -> String {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

/// Parses the `OUT` lines of the driver.
fn parse_outputs(text: &str, samples: usize, out_len: usize) -> Option<Vec<Vec<i8>>> {
    let mut outs = vec![None; samples];
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("OUT ") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let s: usize = it.next()?.parse().ok()?;
        let v: Vec<i8> = it.map(|t| t.parse().ok()).collect::<Option<_>>()?;
        if s >= samples || v.len() != out_len {
            return None;
        }
        outs[s] = Some(v);
    }
    outs.into_iter().collect()
}

/// Exports `graph`, builds a driver embedding `inputs` (one `Vec` per sample: all graph
/// inputs concatenated) and the interpreter's outputs, runs it on each target and compares
/// every output element with quant's interpreter. The project is built in a temporary
/// directory (kept, and its path printed, when `NAS_EXPORT_KEEP` is set).
pub fn verify(graph: &Graph, inputs: &[Vec<i8>], targets: &[Target]) -> Result<VerifyReport> {
    verify_with(graph, inputs, targets, &Int8Options::default())
}

/// [`verify`] with the cost model's schedule options (e.g. attention fusion off).
pub fn verify_with(
    graph: &Graph,
    inputs: &[Vec<i8>],
    targets: &[Target],
    opts: &Int8Options,
) -> Result<VerifyReport> {
    let dir = tempfile::Builder::new()
        .prefix("nas-export-verify-")
        .tempdir()
        .map_err(io_err(std::env::temp_dir()))?;
    let report = verify_in_with(graph, inputs, targets, dir.path(), opts);
    if std::env::var_os("NAS_EXPORT_KEEP").is_some() {
        let kept = dir.keep();
        eprintln!("export::verify: project kept in {}", kept.display());
    }
    report
}

/// [`verify`] building in `dir` (which is created and left in place).
pub fn verify_in(
    graph: &Graph,
    inputs: &[Vec<i8>],
    targets: &[Target],
    dir: &Path,
) -> Result<VerifyReport> {
    verify_in_with(graph, inputs, targets, dir, &Int8Options::default())
}

/// [`verify_in`] with the cost model's schedule options.
pub fn verify_in_with(
    graph: &Graph,
    inputs: &[Vec<i8>],
    targets: &[Target],
    dir: &Path,
    opts: &Int8Options,
) -> Result<VerifyReport> {
    for &t in targets {
        t.check_tools()?;
    }
    let project = generate_with(graph, "model", &ExportLimits::default(), opts)?;
    let (in_len, out_len) = (project.report.input_len, project.report.output_len);
    for (sample, x) in inputs.iter().enumerate() {
        if x.len() != in_len {
            return Err(ExportError::BadInput {
                sample,
                expected: in_len,
                found: x.len(),
            });
        }
    }
    let mut interp = Interpreter::new(graph.clone())?;
    let expected: Vec<Vec<i8>> = inputs
        .iter()
        .map(|x| interp.run(&split_inputs(graph, x)).map(|o| o.concat()))
        .collect::<std::result::Result<_, _>>()?;
    let front_end = FrontEndCheck::of(graph)?;
    let report = write_project(&project, dir)?;
    let main = dir.join("main.c");
    let text = driver(
        "model",
        inputs,
        &expected,
        in_len,
        out_len,
        front_end.as_ref(),
    );
    std::fs::write(&main, text).map_err(io_err(&main))?;

    let mut out = Vec::new();
    for &t in targets {
        let t0 = Instant::now();
        let (ok, text, cmd) = run_make(dir, t, t.make_target())?;
        if !ok {
            return Err(ExportError::Build {
                target: t.to_string(),
                command: cmd,
                output: tail(&text, 4000),
            });
        }
        let build_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let goal = format!("run-{}", t.make_target());
        let (ok, text, cmd) = run_make(dir, t, &goal)?;
        let run_s = t1.elapsed().as_secs_f64();
        let Some(got) = parse_outputs(&text, inputs.len(), out_len) else {
            return Err(ExportError::Run {
                target: t.to_string(),
                command: cmd,
                status: if ok {
                    "0 but outputs missing".into()
                } else {
                    "non-zero".into()
                },
                output: tail(&text, 4000),
            });
        };
        let mut first = None;
        let mut count = 0;
        for (s, (g, w)) in got.iter().zip(&expected).enumerate() {
            for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
                if a != b {
                    count += 1;
                    first.get_or_insert(Mismatch {
                        sample: s,
                        index: i,
                        got: a,
                        want: b,
                    });
                }
            }
        }
        let (front_end_mismatches, front_end_checked) = match &front_end {
            None => (0, 0),
            Some(check) => match parse_front_end(&text) {
                Some((bad, n)) if n == check.checked() => (bad, n),
                _ => {
                    return Err(ExportError::Run {
                        target: t.to_string(),
                        command: cmd,
                        status: "the front end's FRONTEND line is missing".into(),
                        output: tail(&text, 4000),
                    });
                }
            },
        };
        // the driver's own exit code must agree with our comparison (else it crashed late)
        if ok != (first.is_none() && front_end_mismatches == 0) {
            return Err(ExportError::Run {
                target: t.to_string(),
                command: cmd,
                status: format!("exit ok = {ok}, mismatches = {count}"),
                output: tail(&text, 4000),
            });
        }
        out.push(TargetReport {
            target: t,
            samples: inputs.len(),
            first_mismatch: first,
            mismatches: count,
            front_end_checked,
            front_end_mismatches,
            build_s,
            run_s,
        });
    }
    Ok(VerifyReport {
        arena_bytes: report.arena_bytes,
        weight_bytes: report.weight_bytes,
        targets: out,
    })
}
