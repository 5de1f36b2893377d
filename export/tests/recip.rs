//! The runtime's division by a row-invariant divisor (`nas_recip_*` in
//! export/runtime/nas_kernels.c: a multiply by a precomputed reciprocal, used by softmax and
//! LayerNorm) equals C's integer division on every divisor class and on numerators at the edges
//! of its range (0, d - 1, d, multiples of d and their neighbours, 2^31 - 1) and at random. The
//! theorem it rests on makes it exact for every numerator below 2^31; this checks the code.

use std::path::Path;
use std::process::Command;

/// A host C program that includes the runtime's source (the helpers are `static`) and checks
/// `nas_recip_div` against `/` and `nas_recip_div_round` against `nas_div_round`; prints the
/// first mismatch or `ok <checks>`.
const DRIVER: &str = r#"
#include <stdio.h>
#include "nas_kernels.c"

static uint64_t state = 0x9e3779b97f4a7c15ull;
static uint32_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (uint32_t)(state >> 16);
}

static long checks = 0;

static int check(uint32_t n, uint32_t d) {
    nas_recip r = nas_recip_prepare(d);
    uint32_t got = nas_recip_div(n, r), want = n / d;
    int32_t s = (int32_t)n, half = (int32_t)(d / 2);
    checks++;
    if (got != want) {
        printf("mismatch %u / %u: %u, want %u\n", n, d, got, want);
        return 1;
    }
    /* the rounding form on |n| + d / 2 < 2^31 */
    if ((uint64_t)n + d / 2 < 0x80000000ull) {
        int32_t gr = nas_recip_div_round(s, half, r), wr = nas_div_round(s, (int32_t)d);
        int32_t gn = nas_recip_div_round(-s, half, r), wn = nas_div_round(-s, (int32_t)d);
        if (gr != wr || gn != wn) {
            printf("mismatch div_round +-%d / %u: %d %d, want %d %d\n", s, d, gr, gn, wr, wn);
            return 1;
        }
    }
    return 0;
}

static int numerators(uint32_t d) {
    const uint32_t top = 0x7fffffffu;
    uint32_t k, q = top / d;
    uint32_t edge[] = {0, 1, d - 1, d, d + 1, top, top - 1, q * d, q * d - 1, q * d + d - 1};
    for (k = 0; k < sizeof edge / sizeof edge[0]; k++) {
        if (edge[k] <= top && check(edge[k], d)) {
            return 1;
        }
    }
    for (k = 0; k < 64; k++) {
        uint32_t m = next() % (q + 1); /* a multiple of d and its neighbours */
        uint32_t n = next() & top;
        if (check(m * d, d) || (m * d > 0 && check(m * d - 1, d)) ||
            (m * d + 1 <= top && check(m * d + 1, d)) || check(n, d)) {
            return 1;
        }
    }
    return 0;
}

int main(void) {
    uint32_t d;
    int k;
    for (d = 2; d <= 70000; d++) {
        if (numerators(d)) {
            return 1;
        }
    }
    for (k = 2; k <= 31; k++) {
        uint32_t p = (uint32_t)1 << k;
        if (numerators(p - 1) || (k < 31 && (numerators(p) || numerators(p + 1)))) {
            return 1;
        }
    }
    for (k = 0; k < 20000; k++) {
        d = next() & 0x7fffffffu;
        if (d >= 2 && numerators(d)) {
            return 1;
        }
    }
    printf("ok %ld\n", checks);
    return 0;
}
"#;

#[test]
fn reciprocal_division_equals_integer_division() {
    if Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("note: skipped (gcc missing)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("recip.c");
    std::fs::write(&src, DRIVER).unwrap();
    let exe = dir.path().join("recip");
    let runtime = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime");
    let cc = Command::new("gcc")
        .args([
            "-std=c99",
            "-O2",
            "-fsanitize=undefined",
            "-fno-sanitize-recover",
            "-I",
        ])
        .arg(&runtime)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("ok "), "{text}");
    eprintln!("{}", text.trim());
}
