#!/usr/bin/env python3
"""The paper's CMSIS-NN baseline of the three attention stages, in modelled Cortex-M4 and
Cortex-M7 cycles, beside this project's layer-wise baseline and fused MHSA / FWSA kernels.

    python3 experiments/cmsis_nn/run.py --cmsis-nn /path/to/CMSIS-NN

CMSIS-NN is not part of this repository: clone github.com/ARM-software/CMSIS-NN (README.md
names the revision measured). The script runs the instruction-count test once with
NAS_INSN_KEEP (which exports the layer-wise and fused projects of every shape), then builds
each layer-wise project a second time with its Linear and MatMul calls routed to CMSIS-NN's
arm_fully_connected_s8 (cmsis_shim.c), and counts one inference of every variant under QEMU
with the project's plugin (export/tools/insn_count.c), as the test does: the 2-run program
minus the 1-run program. It also checks that the CMSIS-NN build computes the same function:
its outputs against the runtime's own layer-wise build on the host (CMSIS-NN rounds its
requantization differently: at most a few units apart), and its M7 outputs against its host
outputs (the DSP path against CMSIS-NN's portable C: identical).
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))
PICO = ["--specs=picolibc.specs", "--oslib=semihost", "--crt0=semihost",
        "-Wl,--defsym=__flash=0x0", "-Wl,--defsym=__flash_size=0x400000",
        "-Wl,--defsym=__ram=0x20000000", "-Wl,--defsym=__ram_size=0x400000"]
TARGETS = {
    # as export/tests/insn_count.rs `toolchain`
    "CortexM4": (["-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mthumb", "-mfloat-abi=hard"],
                 "mps2-an386", "m4"),
    "CortexM7": (["-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mthumb", "-mfloat-abi=hard"],
                 "mps2-an500", "m7"),
}
SHAPES = ["eegformer", "ecgformer", "trformer"]
VARIANTS = ["baseline", "MHSA", "FWSA"]
RUNTIME = ["nas_kernels.c", "nas_sparse.c"]


def sh(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout + r.stderr


def cmsis_sources(cmsis):
    srcs = [os.path.join(cmsis, "Source/FullyConnectedFunctions/arm_fully_connected_s8.c"),
            os.path.join(cmsis, "Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s8.c")]
    for s in srcs:
        if not os.path.isfile(s):
            sys.exit(f"{s}: not found; --cmsis-nn must name a CMSIS-NN checkout")
    return srcs, ["-I", os.path.join(cmsis, "Include")]


def build(cc, flags, proj, main, out, cmsis, defs):
    """Objects compiled one by one so that only model.c sees the shim's renaming."""
    objs = []
    srcs = [(os.path.join(proj, "model.c"), cmsis is not None)]
    srcs += [(os.path.join(proj, f), False) for f in RUNTIME]
    srcs.append((main, False))
    inc = ["-I", proj]
    if cmsis is not None:
        cs, cinc = cmsis_sources(cmsis)
        inc += cinc + ["-I", HERE]
        srcs += [(os.path.join(HERE, "cmsis_shim.c"), False)] + [(s, False) for s in cs]
    for i, (src, shim) in enumerate(srcs):
        obj = f"{out}.{i}.o"
        extra = ["-include", os.path.join(HERE, "cmsis_shim.h")] if shim else []
        sh([cc, "-std=c99", "-O2", *defs, *flags, *inc, *extra, "-c", src, "-o", obj])
        objs.append(obj)
    sh([cc, *flags, *objs, "-o", out])


def ranges(elf, path):
    """`name lo hi` of every sized text symbol (the plugin's ranges= file)."""
    lines = []
    for l in sh(["arm-none-eabi-nm", "-S", "-n", "--defined-only", elf]).splitlines():
        f = l.split()
        if len(f) == 4 and f[2] in "tTwW":
            lo = int(f[0], 16) & ~1
            lines.append(f"{f[3]} {lo:x} {lo + int(f[1], 16):x}")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def count(proj, tgt, plugin, work, tag, cmsis):
    flags, board, model = TARGETS[tgt]
    flags = flags + PICO
    main = os.path.join(work, f"{tag}-main.c")
    with open(os.path.join(proj, "main.c")) as fh:
        src = fh.read()
    with open(main, "w") as fh:
        fh.write(src)
    res = []
    for reps in (1, 2):
        elf = os.path.join(work, f"{tag}-r{reps}.elf")
        build("arm-none-eabi-gcc", flags, proj, main, elf, cmsis, [f"-DREPS={reps}"])
        rf = elf + ".ranges"
        ranges(elf, rf)
        out = sh(["timeout", "300", "qemu-system-arm", "-M", board, "-nographic",
                  "-semihosting", "-kernel", elf, "-plugin",
                  f"{plugin},lo=0,hi=0xffffffff,ranges={rf},cycles={model}", "-d", "plugin"])
        tot = {k: int(l.split()[1]) for l in out.splitlines()
               for k in ("insns", "cycles") if l.startswith(k + " ")}
        funcs = {}
        for l in out.splitlines():
            if l.startswith("rcycles "):
                name, n = l[len("rcycles "):].rsplit(" ", 1)
                funcs[name] = funcs.get(name, 0) + int(n)
        res.append((tot, funcs))
    (t1, f1), (t2, f2) = res
    funcs = {k: v - f1.get(k, 0) for k, v in f2.items() if v - f1.get(k, 0) > 0}
    return t2["insns"] - t1["insns"], t2["cycles"] - t1["cycles"], funcs


DUMP_MAIN = """#include <stdio.h>
#include "model.h"
static int8_t in[MODEL_INPUT_LEN];
static int8_t out[MODEL_OUTPUT_LEN];
int main(void) {
    unsigned s = 12345u;
    int i;
    for (i = 0; i < MODEL_INPUT_LEN; i++) {
        s = s * 1103515245u + 12345u;
        in[i] = (int8_t)(s >> 16);
    }
    model_run(in, out);
    for (i = 0; i < MODEL_OUTPUT_LEN; i++) printf("%d\\n", out[i]);
    return 0;
}
"""


def outputs(proj, work, tag, cmsis, tgt=None):
    main = os.path.join(work, "dump_main.c")
    with open(main, "w") as fh:
        fh.write(DUMP_MAIN)
    exe = os.path.join(work, f"{tag}-dump")
    if tgt is None:
        build("gcc", [], proj, main, exe, cmsis, [])
        out = sh([exe])
    else:
        flags, board, _ = TARGETS[tgt]
        build("arm-none-eabi-gcc", flags + PICO, proj, main, exe, cmsis, [])
        out = sh(["timeout", "300", "qemu-system-arm", "-M", board, "-nographic",
                  "-semihosting", "-kernel", exe])
    return [int(v) for v in out.split()]


def kernel_class(f):
    if f.startswith("arm_") or f.startswith("cmsis_"):
        return "CMSIS-NN FC + shim"
    classes = (("linear", "linear"), ("matmul", "matmul"), ("softmax", "softmax"),
               ("recip", "softmax"), ("transpose", "transpose + memcpy"),
               ("memcpy", "transpose + memcpy"), ("attention", "fused"), ("fwsa", "fused"),
               ("rows", "fused"))
    for k, c in classes:
        if k in f:
            return c
    return "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cmsis-nn", required=True, help="CMSIS-NN checkout")
    ap.add_argument("--keep", help="reuse (or write) the exported projects here")
    a = ap.parse_args()
    keep = a.keep or tempfile.mkdtemp(prefix="nas-cmsis-")
    if not glob.glob(os.path.join(keep, "*-CortexM7-baseline")):
        sh(["cargo", "test", "-p", "export", "--test", "insn_count", "--locked", "--no-run",
            "-j", "2"], cwd=ROOT)
        b = max((p for p in glob.glob(os.path.join(ROOT, "target/debug/deps/insn_count-*"))
                 if not p.endswith(".d")), key=os.path.getmtime)
        env = dict(os.environ, NAS_INSN_KEEP=keep, CI="1")
        subprocess.run([b, "attention_instruction_counts", "--test-threads=1"], cwd=ROOT,
                       env=env, check=True, capture_output=True)
    work = tempfile.mkdtemp(prefix="nas-cmsis-work-")
    plugin = os.path.join(work, "insn_count.so")
    sh(["gcc", "-shared", "-fPIC", "-O2", "-o", plugin,
        os.path.join(ROOT, "export/tools/insn_count.c")])

    print("## Correctness of the CMSIS-NN build\n")
    print("| shape | max |CMSIS-NN - runtime| (host) | outputs differing | M7 = host (CMSIS-NN) |")
    print("| --- | --- | --- | --- |")
    for s in SHAPES:
        proj = os.path.join(keep, f"{s}-CortexM7-baseline")
        ours = outputs(proj, work, f"{s}-ours-host", None)
        cm = outputs(proj, work, f"{s}-cmsis-host", a.cmsis_nn)
        cm7 = outputs(proj, work, f"{s}-cmsis-m7", a.cmsis_nn, "CortexM7")
        diff = [abs(x - y) for x, y in zip(ours, cm)]
        same = "yes" if cm7 == cm else "NO"
        print(f"| {s} | {max(diff)} | {sum(d > 0 for d in diff)} / {len(diff)} | {same} |")
        if cm7 != cm or len(ours) != len(cm):
            sys.exit("the CMSIS-NN build disagrees with itself")

    print("\n## One attention stage, modelled cycles (instructions)\n")
    print("| shape | core | CMSIS-NN layer-wise | runtime layer-wise | MHSA fused | FWSA fused "
          "| best fused / CMSIS-NN | runtime layer-wise / CMSIS-NN |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    ratios = {t: [] for t in TARGETS}
    breakdown = []
    for s in SHAPES:
        for t in TARGETS:
            base = os.path.join(keep, f"{s}-{t}-baseline")
            ci, cc, cf = count(base, t, plugin, work, f"{s}-{t}-cmsis", a.cmsis_nn)
            row = {}
            for v in VARIANTS:
                row[v] = count(os.path.join(keep, f"{s}-{t}-{v}"), t, plugin, work,
                               f"{s}-{t}-{v}", None)
            best = min(row["MHSA"][1], row["FWSA"][1])
            ratios[t].append(cc / best)
            cells = " | ".join(f"{row[v][1]:,} ({row[v][0]:,})" for v in VARIANTS)
            print(f"| {s} | {t} | {cc:,} ({ci:,}) | {cells} | {cc / best:.2f}x "
                  f"| {cc / row['baseline'][1]:.2f}x |")
            by = {}
            for f, n in cf.items():
                by[kernel_class(f)] = by.get(kernel_class(f), 0) + n
            breakdown.append((s, t, by))
    for t, r in ratios.items():
        print(f"\n{t}: best fused / CMSIS-NN layer-wise, average of the three shapes: "
              f"{sum(r) / len(r):.2f}x")
    print("\n## CMSIS-NN layer-wise build, modelled cycles by kernel class\n")
    for s, t, by in breakdown:
        parts = ", ".join(f"{k} {v:,}" for k, v in sorted(by.items(), key=lambda kv: -kv[1]))
        print(f"- {s} {t}: {parts}")


if __name__ == "__main__":
    main()
