/*
 * insn_count.c - a QEMU TCG plugin (plugin API version 1, QEMU 7.2) counting the guest
 * instructions executed inside one address range [lo, hi), e.g. a function from `nm -S`.
 * Debian's QEMU ships no qemu-plugin.h: the few API declarations used are written here.
 *
 *   gcc -shared -fPIC -O2 -o libinsn_count.so insn_count.c
 *   qemu-system-arm ... -plugin ./libinsn_count.so,lo=0x1234,hi=0x1300 -d plugin
 *
 * Prints "insns <count>" at exit (on QEMU's log, stderr). With `ranges=FILE` (lines
 * "name lo hi", e.g. every function of `nm -S`), also one "range <name> <count>" line per
 * range: a per-function breakdown from one run.
 *
 * With `cycles=m4` (Thumb-2 guests only) it also models Cortex-M4 cycles and prints
 * "cycles <n>" (for [lo, hi)) and one "rcycles <name> <cycles>" line per range; the instruction
 * counts are unchanged. `verbose=1` lists (once, at translation) the mnemonics the model does not
 * know and charges 1 cycle ("unknown <mnemonic>"); `verbose=2` also every translated instruction
 * ("insn <addr> <kind> <cycles> <disassembly>", the refill not included).
 *
 * The Cortex-M4 model: each executed instruction is classified from its disassembly
 * (qemu_plugin_insn_disas, capstone syntax) and charged the cycle count of the Cortex-M4
 * Technical Reference Manual (ARM DDI 0439, "Cortex-M4 instruction set summary" and the FPU
 * instruction timings). Zero wait-state memory: no flash wait states (real STM32 boards add
 * some, the ART accelerator / caches hide most of them), no bus contention, no write-buffer stall.
 *
 *   data processing, MOV/MOVW/MOVT, shifts, compare, logic, CLZ, RBIT, REV, bit fields,
 *   extend (SXTB, SXTB16, ...), SSAT/USAT, Q-arithmetic, SIMD add/sub .......... 1
 *   MUL, MLA, MLS, SMULL, UMULL, SMLAL, UMLAL, SMLAxy, SMLAD, SMUAD, SMMUL, ... .... 1
 *   SDIV, UDIV ............................................................ DIV = 7
 *       (TRM: 2-12, early termination on the operands' leading bits; the plugin cannot see
 *       the operands, 7 is the middle of the range)
 *   LDR/STR single (B, H, SB, SH, T, EX; VLDR/VSTR) ............................ 2
 *       but 1 when the instruction executed just before it (same translation block) is also a
 *       load/store single and its address registers are not the destination of that load
 *       (TRM: "neighboring load and store single instructions can pipeline their address
 *       and data phases"). Simplified: STR-after-STR pipelines too, register-offset and
 *       writeback forms are treated alike, and no pipelining across a branch.
 *   LDRD/STRD ............................................................. 1+N = 3
 *   LDM/STM/PUSH/POP (N registers), VLDM/VSTM/VPUSH/VPOP (N words) .............. 1+N
 *   B, BL, BX, BLX, CBZ, CBNZ ............................. 1, + P when taken (1+P)
 *   TBB, TBH .................................................................. 2+P
 *   POP/LDM with PC: 1+N+P; LDR PC: 2+P; MOV/ADD PC: 1+P
 *       P = 2 (TRM: pipeline refill 1-3 cycles depending on the target's alignment and width
 *       and on early speculation; 2 taken as typical: a taken branch costs 3 cycles).
 *       "Taken" = the next executed translation block does not start at the instruction's
 *       fall-through address (QEMU ends a translation block at every branch). The refill is
 *       charged to the function of the branch.
 *   IT ........................ 0 after a 16-bit instruction (folded, TRM), else 1
 *   NOP, barriers (B = 0), MRS/MSR, WFI/WFE (W = 0), CPSID/CPSIE ................ 1
 *   FPU: VMLA/VMLS/VNMLA/VNMLS/VFMA/VFMS/VFNMA/VFNMS 3, VDIV/VSQRT 14, VMOV of two
 *       core registers 2, others 1
 *   conditional instructions skipped in an IT block: charged as if executed
 *
 * Overhead: one inline add per instruction (and range) for the cycles, one C callback per
 * executed translation block that ends in a branch.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn,
                                                enum qemu_plugin_op op, void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb,
                                          qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                    void *userdata);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t lo, hi = UINT64_MAX, count, cycles;
static int model_m4, verbose;

#define MAX_RANGES 4096
static struct {
    char name[64];
    uint64_t lo, hi, count, cycles;
} ranges[MAX_RANGES];
static int n_ranges;

/* Cortex-M4 timing parameters (see the table above) */
#define M4_REFILL 2
#define M4_DIV 7

static void load_ranges(const char *path) {
    FILE *f = fopen(path, "r");
    char name[64];
    unsigned long long a, b;
    if (!f) {
        return;
    }
    while (n_ranges < MAX_RANGES && fscanf(f, "%63s %llx %llx", name, &a, &b) == 3) {
        strcpy(ranges[n_ranges].name, name);
        ranges[n_ranges].lo = a;
        ranges[n_ranges].hi = b;
        n_ranges++;
    }
    fclose(f);
}

/* ---- Cortex-M4 classification ---- */

enum kind { K_ALU, K_LS, K_BRANCH, K_IT };

struct cls {
    int base;       /* cycles, refill excluded */
    enum kind kind; /* K_LS: load/store single (pipelining); K_BRANCH: may write the PC */
    int load_dst;   /* K_LS loads: destination register number, else -1 */
    int addr_regs;  /* K_LS: bit mask of the registers the address is formed from */
};

static const char *const conds[] = {"eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs",
                                    "vc", "hi", "ls", "ge", "lt", "gt", "le", "al"};

/* whether `s` (the rest of a mnemonic after its base) is empty, a condition, or (when
 * `s_ok`) "s" optionally followed by a condition */
static int suffix_ok(const char *s, int s_ok) {
    size_t i;
    if (*s == 0) {
        return 1;
    }
    if (s_ok && *s == 's') {
        s++;
        if (*s == 0) {
            return 1;
        }
    }
    for (i = 0; i < sizeof conds / sizeof conds[0]; i++) {
        if (strcmp(s, conds[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* whether mnemonic `m` is `base` with an allowed suffix */
static int is(const char *m, const char *base, int s_ok) {
    size_t n = strlen(base);
    return strncmp(m, base, n) == 0 && suffix_ok(m + n, s_ok);
}

static int reg_num(const char *p) {
    if (p[0] == 'r' && isdigit((unsigned char)p[1])) {
        return atoi(p + 1);
    }
    if (strncmp(p, "sb", 2) == 0) return 9;
    if (strncmp(p, "sl", 2) == 0) return 10;
    if (strncmp(p, "fp", 2) == 0) return 11;
    if (strncmp(p, "ip", 2) == 0) return 12;
    if (strncmp(p, "sp", 2) == 0) return 13;
    if (strncmp(p, "lr", 2) == 0) return 14;
    if (strncmp(p, "pc", 2) == 0) return 15;
    return -1;
}

/* registers named inside the first [...] of the operands */
static int bracket_regs(const char *ops) {
    const char *p = strchr(ops, '['), *e;
    int mask = 0;
    if (!p) {
        return 0;
    }
    e = strchr(p, ']');
    for (p++; *p && (!e || p < e); p++) {
        if (p == ops || !isalnum((unsigned char)p[-1])) {
            int r = reg_num(p);
            if (r >= 0 && !isalnum((unsigned char)p[2 + (r >= 10 && p[0] == 'r')])) {
                mask |= 1 << r;
            }
        }
    }
    return mask;
}

/* number of registers (words for VFP d registers) in a {...} list; 1 when none (capstone
 * lists every register, no ranges) */
static int list_len(const char *ops, int *has_pc) {
    const char *p = strchr(ops, '{'), *e;
    int n = 1, words = 1;
    *has_pc = 0;
    if (!p) {
        return 1;
    }
    e = strchr(p, '}');
    for (p++; *p && (!e || p < e); p++) {
        if (*p == ',') {
            n++;
        } else if ((p[-1] == '{' || p[-1] == ' ') && *p == 'd' && isdigit((unsigned char)p[1])) {
            words = 2;
        } else if ((p[-1] == '{' || p[-1] == ' ') && strncmp(p, "pc", 2) == 0) {
            *has_pc = 1;
        }
    }
    return n * words;
}

static struct cls classify(const char *disas, int *known) {
    char m[32];
    const char *ops;
    size_t i = 0;
    struct cls c = {1, K_ALU, -1, 0};
    int has_pc, dst;
    *known = 1;
    while (*disas == ' ' || *disas == '\t') {
        disas++;
    }
    while (disas[i] && disas[i] != ' ' && disas[i] != '\t' && i < sizeof m - 1) {
        m[i] = (char)tolower((unsigned char)disas[i]);
        i++;
    }
    m[i] = 0;
    ops = disas + i;
    while (*ops == ' ' || *ops == '\t') {
        ops++;
    }
    dst = reg_num(ops);
    /* drop the width qualifier (.w / .n); keep VFP type suffixes (.f32) out of the base */
    {
        char *dot = strchr(m, '.');
        if (dot) {
            *dot = 0;
        }
    }
    if (m[0] == 'v') {
        if (is(m, "vldr", 0) || is(m, "vstr", 0)) {
            c.base = 2;
            c.kind = K_LS;
            c.addr_regs = bracket_regs(ops);
        } else if (is(m, "vldm", 0) || is(m, "vstm", 0) || is(m, "vldmia", 0) ||
                   is(m, "vstmia", 0) || is(m, "vldmdb", 0) || is(m, "vstmdb", 0) ||
                   is(m, "vpush", 0) || is(m, "vpop", 0)) {
            c.base = 1 + list_len(ops, &has_pc);
        } else if (is(m, "vdiv", 0) || is(m, "vsqrt", 0)) {
            c.base = 14;
        } else if (is(m, "vmla", 0) || is(m, "vmls", 0) || is(m, "vnmla", 0) ||
                   is(m, "vnmls", 0) || is(m, "vfma", 0) || is(m, "vfms", 0) ||
                   is(m, "vfnma", 0) || is(m, "vfnms", 0)) {
            c.base = 3;
        } else if (is(m, "vmov", 0)) {
            /* two core registers <-> two VFP registers / a d register: 2 */
            const char *q = ops;
            int core = 0;
            while (*q) {
                if ((q == ops || q[-1] == ' ' || q[-1] == ',') && reg_num(q) >= 0 &&
                    q[0] != 's' && q[0] != 'd') {
                    core++;
                }
                q++;
            }
            c.base = core >= 2 ? 2 : 1;
        } else {
            c.base = 1;
        }
        return c;
    }
    /* branches */
    if (is(m, "b", 0) || is(m, "bl", 0) || is(m, "bx", 0) || is(m, "blx", 0) ||
        is(m, "cbz", 0) || is(m, "cbnz", 0)) {
        c.kind = K_BRANCH;
        return c;
    }
    if (is(m, "tbb", 0) || is(m, "tbh", 0)) {
        c.base = 2;
        c.kind = K_BRANCH;
        return c;
    }
    if (is(m, "it", 0) || (m[0] == 'i' && m[1] == 't' && strspn(m + 2, "te") == strlen(m + 2))) {
        c.kind = K_IT;
        return c;
    }
    /* multiple */
    if (is(m, "push", 0) || is(m, "pop", 0) || is(m, "ldm", 0) || is(m, "stm", 0) ||
        is(m, "ldmia", 0) || is(m, "ldmfd", 0) || is(m, "ldmdb", 0) || is(m, "stmia", 0) ||
        is(m, "stmea", 0) || is(m, "stmdb", 0) || is(m, "stmfd", 0)) {
        c.base = 1 + list_len(ops, &has_pc);
        if (has_pc && (m[0] == 'p' || m[0] == 'l')) {
            c.kind = K_BRANCH;
        }
        return c;
    }
    if (is(m, "ldrd", 0) || is(m, "strd", 0)) {
        c.base = 3;
        return c;
    }
    if (is(m, "ldr", 0) || is(m, "ldrb", 0) || is(m, "ldrh", 0) || is(m, "ldrsb", 0) ||
        is(m, "ldrsh", 0) || is(m, "ldrt", 0) || is(m, "ldrbt", 0) || is(m, "ldrht", 0) ||
        is(m, "ldrsbt", 0) || is(m, "ldrsht", 0) || is(m, "ldrex", 0) || is(m, "ldrexb", 0) ||
        is(m, "ldrexh", 0)) {
        c.base = 2;
        c.kind = K_LS;
        c.load_dst = dst;
        c.addr_regs = bracket_regs(ops);
        if (dst == 15) {
            c.kind = K_BRANCH; /* LDR PC: 2 + P, not pipelined */
        }
        return c;
    }
    if (is(m, "str", 0) || is(m, "strb", 0) || is(m, "strh", 0) || is(m, "strt", 0) ||
        is(m, "strbt", 0) || is(m, "strht", 0) || is(m, "strex", 0) || is(m, "strexb", 0) ||
        is(m, "strexh", 0)) {
        c.base = 2;
        c.kind = K_LS;
        c.addr_regs = bracket_regs(ops);
        return c;
    }
    if (is(m, "sdiv", 0) || is(m, "udiv", 0)) {
        c.base = M4_DIV;
        return c;
    }
    /* the single-cycle rest; instructions writing the PC take the refill too */
    {
        static const char *const one_s[] = {"mov", "mvn", "add", "adc", "sub", "sbc", "rsb",
                                            "and", "orr", "orn", "eor", "bic", "lsl", "lsr",
                                            "asr", "ror", "rrx", "mul", "mla", "smull",
                                            "umull", "smlal", "umlal"};
        static const char *const one[] = {
            "movw", "movt", "adr", "addw", "subw", "cmp", "cmn", "tst", "teq", "clz", "rbit",
            "rev", "rev16", "revsh", "ubfx", "sbfx", "bfi", "bfc", "sxtb", "sxth", "uxtb",
            "uxth", "sxtb16", "uxtb16", "sxtab", "sxtah", "uxtab", "uxtah", "sxtab16",
            "uxtab16", "ssat", "usat", "ssat16", "usat16", "mls", "nop", "dmb", "dsb", "isb",
            "mrs", "msr", "cpsid", "cpsie", "wfi", "wfe", "sev", "bkpt", "svc", "clrex",
            "pld", "pli", "yield", "udf", "sel", "pkhbt", "pkhtb", "umaal", "usad8", "usada8",
            /* DSP multiplies, all single-cycle on the M4 */
            "smulbb", "smulbt", "smultb", "smultt", "smulwb", "smulwt", "smlabb", "smlabt",
            "smlatb", "smlatt", "smlawb", "smlawt", "smlad", "smladx", "smlsd", "smlsdx",
            "smuad", "smuadx", "smusd", "smusdx", "smlalbb", "smlalbt", "smlaltb", "smlaltt",
            "smlald", "smlaldx", "smlsld", "smlsldx", "smmul", "smmulr", "smmla", "smmlar",
            "smmls", "smmlsr",
            /* saturating and SIMD arithmetic */
            "qadd", "qsub", "qdadd", "qdsub", "qadd8", "qadd16", "qsub8", "qsub16", "qasx",
            "qsax", "sadd8", "sadd16", "ssub8", "ssub16", "sasx", "ssax", "uadd8", "uadd16",
            "usub8", "usub16", "uasx", "usax", "shadd8", "shadd16", "shsub8", "shsub16",
            "uhadd8", "uhadd16", "uhsub8", "uhsub16", "uqadd8", "uqadd16", "uqsub8",
            "uqsub16"};
        int hit = 0;
        for (i = 0; !hit && i < sizeof one_s / sizeof one_s[0]; i++) {
            hit = is(m, one_s[i], 1);
        }
        for (i = 0; !hit && i < sizeof one / sizeof one[0]; i++) {
            hit = is(m, one[i], 0);
        }
        *known = hit;
        if (dst == 15 && !is(m, "cmp", 0) && !is(m, "cmn", 0) && !is(m, "tst", 0) &&
            !is(m, "teq", 0)) {
            c.kind = K_BRANCH;
        }
    }
    return c;
}

/* a translation block that ends in a possible branch: where it would fall through, and the
 * counters its refill is charged to */
struct tb_tail {
    uint64_t start, fallthrough;
    uint64_t *range_cycles; /* NULL: outside every range */
    int in_lo_hi;
};

static struct tb_tail *prev_tail;

static void on_tb_exec(unsigned int vcpu, void *ud) {
    struct tb_tail *t = ud;
    (void)vcpu;
    if (prev_tail && prev_tail->fallthrough != t->start) {
        if (prev_tail->range_cycles) {
            *prev_tail->range_cycles += M4_REFILL;
        }
        if (prev_tail->in_lo_hi) {
            cycles += M4_REFILL;
        }
    }
    prev_tail = t->fallthrough ? t : NULL;
}

static void report_unknown(const char *disas) {
    static char seen[256][32];
    static int n_seen;
    char m[32], buf[96];
    int i = 0;
    while (disas[i] && disas[i] != ' ' && i < 31) {
        m[i] = disas[i];
        i++;
    }
    m[i] = 0;
    for (i = 0; i < n_seen; i++) {
        if (strcmp(seen[i], m) == 0) {
            return;
        }
    }
    if (n_seen < 256) {
        strcpy(seen[n_seen++], m);
    }
    snprintf(buf, sizeof buf, "unknown %s\n", m);
    qemu_plugin_outs(buf);
}

static int range_of(uint64_t a) {
    int r;
    for (r = 0; r < n_ranges; r++) {
        if (a >= ranges[r].lo && a < ranges[r].hi) {
            return r;
        }
    }
    return -1;
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t i, n = qemu_plugin_tb_n_insns(tb);
    struct cls prev = {1, K_ALU, -1, 0};
    size_t prev_size = 4;
    struct tb_tail *tail = NULL;
    (void)id;
    for (i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t a = qemu_plugin_insn_vaddr(insn);
        int r = range_of(a), in = a >= lo && a < hi;
        if (in) {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &count, 1);
        }
        if (r >= 0) {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                       &ranges[r].count, 1);
        }
        if (model_m4) {
            char *d = qemu_plugin_insn_disas(insn);
            int known;
            struct cls c = classify(d ? d : "", &known);
            uint64_t cyc = (uint64_t)c.base;
            if (verbose && !known) {
                report_unknown(d ? d : "?");
            }
            if (c.kind == K_LS && i > 0 && prev.kind == K_LS &&
                !(prev.load_dst >= 0 && (c.addr_regs >> prev.load_dst) & 1)) {
                cyc = 1; /* pipelined behind the previous load/store */
            }
            if (c.kind == K_IT && i > 0 && prev_size == 2) {
                cyc = 0; /* folded onto the preceding 16-bit instruction */
            }
            if (verbose > 1) {
                char buf[160];
                snprintf(buf, sizeof buf, "insn %" PRIx64 " %d %" PRIu64 " %s\n", a, (int)c.kind,
                         cyc, d ? d : "?");
                qemu_plugin_outs(buf);
            }
            free(d);
            if (cyc && in) {
                qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                           &cycles, cyc);
            }
            if (cyc && r >= 0) {
                qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                           &ranges[r].cycles, cyc);
            }
            if (c.kind == K_BRANCH && i == n - 1) {
                tail = calloc(1, sizeof *tail);
                tail->fallthrough = a + qemu_plugin_insn_size(insn);
                tail->range_cycles = r >= 0 ? &ranges[r].cycles : NULL;
                tail->in_lo_hi = in;
            }
            prev = c;
            prev_size = qemu_plugin_insn_size(insn);
        }
    }
    if (model_m4) {
        if (!tail) {
            tail = calloc(1, sizeof *tail); /* fallthrough 0: ends in no branch */
        }
        tail->start = qemu_plugin_tb_vaddr(tb);
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec, QEMU_PLUGIN_CB_NO_REGS, tail);
    }
}

static void at_exit_report(qemu_plugin_id_t id, void *p) {
    char buf[128];
    int r;
    (void)id;
    (void)p;
    snprintf(buf, sizeof buf, "insns %" PRIu64 "\n", count);
    qemu_plugin_outs(buf);
    if (model_m4) {
        snprintf(buf, sizeof buf, "cycles %" PRIu64 "\n", cycles);
        qemu_plugin_outs(buf);
    }
    for (r = 0; r < n_ranges; r++) {
        snprintf(buf, sizeof buf, "range %.63s %" PRIu64 "\n", ranges[r].name, ranges[r].count);
        qemu_plugin_outs(buf);
        if (model_m4) {
            snprintf(buf, sizeof buf, "rcycles %.63s %" PRIu64 "\n", ranges[r].name,
                     ranges[r].cycles);
            qemu_plugin_outs(buf);
        }
    }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info,
                                                               int argc, char **argv) {
    int i;
    (void)info;
    for (i = 0; i < argc; i++) {
        if (strncmp(argv[i], "lo=", 3) == 0) {
            lo = strtoull(argv[i] + 3, NULL, 0);
        } else if (strncmp(argv[i], "hi=", 3) == 0) {
            hi = strtoull(argv[i] + 3, NULL, 0);
        } else if (strncmp(argv[i], "ranges=", 7) == 0) {
            load_ranges(argv[i] + 7);
        } else if (strcmp(argv[i], "cycles=m4") == 0) {
            model_m4 = 1;
        } else if (strncmp(argv[i], "verbose=", 8) == 0) {
            verbose = atoi(argv[i] + 8);
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, at_exit_report, NULL);
    return 0;
}
