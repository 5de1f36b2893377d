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
 * counts are unchanged. `cycles=rv32` (RV32IMC guests) does the same with the CV32E40P model
 * below. `div=N` sets the cycles of a division (either model; defaults 7 and 19). `verbose=1`
 * lists (once, at translation) the mnemonics the model does not know and charges 1 cycle
 * ("unknown <mnemonic>"); `verbose=2` also every translated instruction ("insn <addr> <kind>
 * <cycles> <disassembly>", the refill / taken-branch and target penalties not included).
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
 * With `cycles=rv32` (RV32IMC guests) it models the cycles of the OpenHW CV32E40P core (the
 * RI5CY lineage of GAP9's cores) instead, same output lines. Each executed instruction is
 * classified from QEMU's RISC-V disassembly (compressed instructions are shown, and charged,
 * as their 32-bit forms, which the core's IF stage pre-decodes them into) and charged the
 * CV32E40P User Manual's cycle counts (docs/source/pipeline.rst, "Pipeline Details": table
 * "Cycle counts per instruction type" and section "Hazards"; cv32e40p v1.8). Zero stall on the
 * instruction and data interfaces, as the table assumes.
 *
 *   integer computational (RV32I ALU, LUI, AUIPC, NOP, pseudo-instructions), FENCE, ECALL,
 *   EBREAK, WFI, MRET ...................................................... 1
 *   MUL ..................................................................... 1
 *   MULH, MULHSU, MULHU ..................................................... 5
 *   DIV, DIVU, REM, REMU ........................................... RV_DIV = 19
 *       (manual: 3..35, 3 + the leading zero (sign) bits of the divisor, 35 for a zero
 *       divisor; the plugin cannot see the operands (no register access in plugin API v1):
 *       19 = a 16-bit divisor, the middle of the range; `div=N` overrides it)
 *   load (LB, LH, LW, LBU, LHU) .............................................. 1
 *       + 1 when the next instruction executed reads its destination (manual, Hazards: load
 *       data hazard); misaligned transfers (2) are not modelled
 *   store (SB, SH, SW) ....................................................... 1
 *   jump (JAL, JALR, J, JR, RET, CALL, TAIL) ................................... 2
 *       + 1 when the target is a non-word-aligned 32-bit (non-RVC) instruction
 *       + 1 for a JALR whose base register is written by the instruction executed just
 *         before it (manual, Hazards: jalr data hazard)
 *   branch not taken ......................................................... 1
 *   branch taken ................................................ 3, or 4 when the
 *       target is a non-word-aligned 32-bit instruction. "Taken" = the next executed
 *       translation block does not start at the branch's fall-through address, as for the
 *       Cortex-M4 refill; the extra cycles are charged to the function of the branch/jump.
 *   CSR access: 4 for mstatus, mepc, mtvec, mcause, mcycle(h), minstret(h), mhpmcounter*(h),
 *       mcountinhibit, mhpmevent*, dcsr, dpc, dscratch0/1; 1 for the others
 *   FENCE.I ................................................................. 2
 *   The hazards are found from the registers in the disassembly: statically between two
 *   instructions of a translation block, at run time (the per-block callback) between the last
 *   instruction of a block and the first of the next one executed. A stall is charged to the
 *   function of the instruction that waits.
 *
 * Overhead: one inline add per instruction (and range) for the cycles, one C callback per
 * executed translation block.
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
static int verbose;
/* the cycle model: none, `cycles=m4`, `cycles=rv32` */
static enum { MODEL_NONE, MODEL_M4, MODEL_RV32 } model;

#define MAX_RANGES 4096
static struct {
    char name[64];
    uint64_t lo, hi, count, cycles;
} ranges[MAX_RANGES];
static int n_ranges;

/* Cortex-M4 timing parameters (see the table above) */
#define M4_REFILL 2
#define M4_DIV 7
/* CV32E40P timing parameters (see the table above): a taken branch costs RV_TAKEN more than a
 * not-taken one; RV_DIV for a division or remainder */
#define RV_TAKEN 2
#define RV_DIV 19
/* the division's cycles (M4_DIV or RV_DIV unless `div=N`) */
static int div_cycles = -1;

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
        c.base = div_cycles;
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

/* ---- CV32E40P (RV32IMC) classification ---- */

enum rv_kind { RV_ALU, RV_LOAD, RV_BRANCH, RV_JUMP };

struct rv_cls {
    int base;          /* cycles, stalls and taken-branch / target penalties excluded */
    enum rv_kind kind; /* RV_BRANCH: conditional; RV_JUMP: always transfers control */
    int rd;            /* register written, -1 when none (or x0) */
    uint32_t srcs;     /* bit mask of the registers read */
    int jalr_base;     /* RV_JUMP through a register: that register, else -1 */
};

/* number of a RISC-V register name (ABI or xN) at p, -1 if none; *len = its length */
static int rv_reg(const char *p, size_t *len) {
    static const char *const abi[32] = {"zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2",
                                        "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5",
                                        "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7",
                                        "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6"};
    size_t n = 0;
    int r;
    while (isalnum((unsigned char)p[n])) {
        n++;
    }
    *len = n;
    for (r = 0; r < 32; r++) {
        if (strlen(abi[r]) == n && strncmp(p, abi[r], n) == 0) {
            return r;
        }
    }
    if (n == 2 && strncmp(p, "fp", 2) == 0) {
        return 8;
    }
    if (n >= 2 && n <= 3 && p[0] == 'x' && isdigit((unsigned char)p[1]) &&
        (n == 2 || isdigit((unsigned char)p[2]))) {
        r = atoi(p + 1);
        return r < 32 ? r : -1;
    }
    return -1;
}

/* whether mnemonic m is one of the NULL-terminated list */
static int rv_in(const char *m, const char *const *list) {
    for (; *list; list++) {
        if (strcmp(m, *list) == 0) {
            return 1;
        }
    }
    return 0;
}

/* the CSRs whose access takes 4 cycles (manual table, "CSR Access") */
static int rv_slow_csr(const char *ops) {
    static const char *const slow[] = {"mstatus", "mepc", "mtvec", "mcause", "mcycle",
                                       "minstret", "mhpmcounter", "mcountinhibit",
                                       "mhpmevent", "dcsr", "dpc", "dscratch", NULL};
    const char *const *s;
    for (s = slow; *s; s++) {
        const char *p = strstr(ops, *s);
        if (p && (p == ops || !isalnum((unsigned char)p[-1]))) {
            return 1;
        }
    }
    return 0;
}

/* Classifies one line of QEMU's RISC-V disassembly: "<encoding in hex>  <mnemonic>  <operands>
 * [# <target>]", operands comma-separated, loads and stores as "imm(base)". */
static struct rv_cls rv_classify(const char *disas, int *known) {
    static const char *const alu[] = {
        "lui", "auipc", "addi", "slti", "sltiu", "xori", "ori", "andi", "slli", "srli",
        "srai", "add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and", "nop",
        "mv", "li", "not", "neg", "seqz", "snez", "sltz", "sgtz", "fence", "fence.tso",
        "pause", "ecall", "ebreak", "wfi", "mret", "unimp", "illegal", NULL};
    static const char *const loads[] = {"lb", "lh", "lw", "lbu", "lhu", NULL};
    static const char *const stores[] = {"sb", "sh", "sw", NULL};
    static const char *const branches[] = {"beq", "bne", "blt", "bge", "bltu", "bgeu",
                                           "beqz", "bnez", "blez", "bgez", "bltz", "bgtz",
                                           "ble", "bleu", "bgt", "bgtu", NULL};
    static const char *const mulh[] = {"mulh", "mulhsu", "mulhu", NULL};
    static const char *const divs[] = {"div", "divu", "rem", "remu", NULL};
    struct rv_cls c = {1, RV_ALU, -1, 0, -1};
    char m[32], ops[96];
    int regs[8], n_regs = 0, has_rd = 1, i;
    size_t n = 0, len;
    const char *p = disas;
    *known = 1;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    /* the encoding: 4 or 8 hex digits (no RV32IMC mnemonic is one) */
    while (isxdigit((unsigned char)p[n])) {
        n++;
    }
    if ((n == 4 || n == 8) && (p[n] == ' ' || p[n] == '\t')) {
        p += n;
        while (*p == ' ' || *p == '\t') {
            p++;
        }
    }
    for (n = 0; p[n] && p[n] != ' ' && p[n] != '\t' && n < sizeof m - 1; n++) {
        m[n] = (char)tolower((unsigned char)p[n]);
    }
    m[n] = 0;
    p += n;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    for (n = 0; p[n] && p[n] != '#' && n < sizeof ops - 1; n++) {
        ops[n] = p[n];
    }
    ops[n] = 0;
    /* register operands in order (a register name starts the operand or follows '(') */
    for (p = ops; *p && n_regs < 8;) {
        if ((p == ops || p[-1] == ',' || p[-1] == '(' || p[-1] == ' ') &&
            isalpha((unsigned char)*p)) {
            int r = rv_reg(p, &len);
            if (r >= 0) {
                regs[n_regs++] = r;
            }
            p += len ? len : 1;
        } else {
            p++;
        }
    }
    if (rv_in(m, loads)) {
        c.kind = RV_LOAD;
    } else if (rv_in(m, stores)) {
        has_rd = 0;
    } else if (rv_in(m, branches)) {
        c.kind = RV_BRANCH;
        has_rd = 0;
    } else if (strcmp(m, "mul") == 0) {
        c.base = 1;
    } else if (rv_in(m, mulh)) {
        c.base = 5;
    } else if (rv_in(m, divs)) {
        c.base = div_cycles;
    } else if (strcmp(m, "j") == 0 || strcmp(m, "jal") == 0 || strcmp(m, "call") == 0 ||
               strcmp(m, "tail") == 0) {
        /* "jal offset" writes ra; "jal rd,offset" rd; "j" / "tail" nothing */
        c.kind = RV_JUMP;
        c.base = 2;
        has_rd = 0;
        if ((strcmp(m, "jal") == 0 || strcmp(m, "call") == 0) && n_regs == 0) {
            c.rd = 1;
        } else if (strcmp(m, "jal") == 0 && n_regs > 0) {
            c.rd = regs[0];
        }
        n_regs = 0; /* no register read */
    } else if (strcmp(m, "jr") == 0 || strcmp(m, "ret") == 0 || strcmp(m, "jalr") == 0) {
        c.kind = RV_JUMP;
        c.base = 2;
        has_rd = 0;
        if (strcmp(m, "ret") == 0) {
            regs[0] = 1;
            n_regs = 1;
        }
        if (strcmp(m, "jalr") == 0 && n_regs >= 2) {
            /* "jalr rd,rs1,imm" or "jalr rd,imm(rs1)" */
            c.rd = regs[0];
            regs[0] = regs[1];
            n_regs = 1;
        } else if (strcmp(m, "jalr") == 0) {
            c.rd = 1; /* "jalr rs1": rd = ra */
        }
        c.jalr_base = n_regs > 0 ? regs[0] : -1;
    } else if (strcmp(m, "fence.i") == 0) {
        c.base = 2;
        has_rd = 0;
    } else if (strncmp(m, "csr", 3) == 0 || strncmp(m, "rd", 2) == 0) {
        /* csrr / csrrw / csrrs / csrrc (+i) write rd; csrw / csrs / csrc (+i) do not;
         * rdcycle & co. read the user counters (1 cycle) */
        c.base = rv_slow_csr(ops) ? 4 : 1;
        has_rd = strncmp(m, "rd", 2) == 0 || strcmp(m, "csrr") == 0 ||
                 strncmp(m, "csrr", 4) == 0;
        *known = strncmp(m, "rd", 2) != 0 || strncmp(m, "rdcycle", 7) == 0 ||
                 strncmp(m, "rdtime", 6) == 0 || strncmp(m, "rdinstret", 9) == 0;
    } else {
        *known = rv_in(m, alu);
        if (strcmp(m, "nop") == 0 || strcmp(m, "fence") == 0 || strcmp(m, "ecall") == 0 ||
            strcmp(m, "ebreak") == 0 || strcmp(m, "wfi") == 0 || strcmp(m, "mret") == 0) {
            has_rd = 0;
        }
    }
    for (i = 0; i < n_regs; i++) {
        if (i == 0 && has_rd) {
            c.rd = regs[0];
        } else {
            c.srcs |= (uint32_t)1 << regs[i];
        }
    }
    if (c.rd == 0) {
        c.rd = -1; /* x0 is never written */
    }
    c.srcs &= ~(uint32_t)1;
    return c;
}

/* a translation block: its start, whether its first instruction is a 32-bit one at a
 * non-word-aligned address (CV32E40P: a jump or taken branch to it costs 1 more), and, when it
 * ends in a possible control transfer, where it would fall through and the counters the
 * refill is charged to. CV32E40P: also what the hazards between the last instruction of one
 * executed block and the first of the next need (a block also ends without a branch, at a
 * page boundary or QEMU's block size limit, between two adjacent instructions). */
enum tail_kind { TAIL_NONE, TAIL_BRANCH, TAIL_JUMP };

struct tb_tail {
    uint64_t start, fallthrough;
    uint64_t *range_cycles; /* NULL: outside every range */
    int in_lo_hi;
    enum tail_kind kind; /* TAIL_BRANCH: charged when taken; TAIL_JUMP: always taken (rv32) */
    int misaligned32;
    /* rv32: the last instruction's destination, and that of a load (-1: none / not a load) */
    int last_rd, last_load_rd;
    /* rv32: the first instruction's sources, jalr base register (-1: not a jalr) and the
     * counters a stall before it is charged to */
    uint32_t first_srcs;
    int first_jalr_base;
    uint64_t *first_range_cycles;
    int first_in_lo_hi;
};

static struct tb_tail *prev_tail;

static void charge_tail(const struct tb_tail *t, uint64_t n) {
    if (t->range_cycles) {
        *t->range_cycles += n;
    }
    if (t->in_lo_hi) {
        cycles += n;
    }
}

static void on_tb_exec(unsigned int vcpu, void *ud) {
    struct tb_tail *t = ud;
    (void)vcpu;
    if (prev_tail) {
        int taken = prev_tail->fallthrough != t->start;
        if (model == MODEL_M4) {
            if (taken) {
                charge_tail(prev_tail, M4_REFILL);
            }
        } else {
            uint64_t stall = 0;
            if (prev_tail->kind == TAIL_JUMP) {
                if (t->misaligned32) {
                    charge_tail(prev_tail, 1);
                }
            } else if (prev_tail->kind == TAIL_BRANCH && taken) {
                charge_tail(prev_tail, RV_TAKEN + (uint64_t)t->misaligned32);
            }
            /* the hazards of two instructions executed one after the other in two blocks */
            if (prev_tail->last_load_rd > 0 && ((t->first_srcs >> prev_tail->last_load_rd) & 1)) {
                stall++;
            }
            if (t->first_jalr_base > 0 && prev_tail->last_rd == t->first_jalr_base) {
                stall++;
            }
            if (stall && t->first_range_cycles) {
                *t->first_range_cycles += stall;
            }
            if (stall && t->first_in_lo_hi) {
                cycles += stall;
            }
        }
    }
    prev_tail = model == MODEL_RV32 || t->kind != TAIL_NONE ? t : NULL;
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

/* registers the modelled cycles `cyc` of instruction `insn` (in [lo, hi) when `in`, in range
 * `r` when r >= 0) */
static void add_cycles(struct qemu_plugin_insn *insn, uint64_t cyc, int in, int r) {
    if (cyc && in) {
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &cycles, cyc);
    }
    if (cyc && r >= 0) {
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                   &ranges[r].cycles, cyc);
    }
}

static void dump_insn(uint64_t a, int kind, uint64_t cyc, const char *d) {
    char buf[160];
    snprintf(buf, sizeof buf, "insn %" PRIx64 " %d %" PRIu64 " %s\n", a, kind, cyc, d ? d : "?");
    qemu_plugin_outs(buf);
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t i, n = qemu_plugin_tb_n_insns(tb);
    struct cls prev = {1, K_ALU, -1, 0};
    struct rv_cls rprev = {1, RV_ALU, -1, 0, -1};
    size_t prev_size = 4;
    struct tb_tail *tail = NULL;
    (void)id;
    if (model != MODEL_NONE) {
        tail = calloc(1, sizeof *tail); /* fallthrough 0, TAIL_NONE: ends in no branch */
        tail->start = qemu_plugin_tb_vaddr(tb);
    }
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
        if (model == MODEL_M4) {
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
                dump_insn(a, (int)c.kind, cyc, d);
            }
            free(d);
            add_cycles(insn, cyc, in, r);
            if (c.kind == K_BRANCH && i == n - 1) {
                tail->kind = TAIL_BRANCH;
                tail->fallthrough = a + qemu_plugin_insn_size(insn);
                tail->range_cycles = r >= 0 ? &ranges[r].cycles : NULL;
                tail->in_lo_hi = in;
            }
            prev = c;
            prev_size = qemu_plugin_insn_size(insn);
        } else if (model == MODEL_RV32) {
            char *d = qemu_plugin_insn_disas(insn);
            const char *ds = d ? d : "";
            int known;
            struct rv_cls c = rv_classify(ds, &known);
            uint64_t cyc = (uint64_t)c.base;
            if (verbose && !known) {
                /* the mnemonic, past the encoding */
                const char *q = ds + strspn(ds, " \t");
                q += strspn(q, "0123456789abcdefABCDEF");
                report_unknown(q + strspn(q, " \t"));
            }
            if (i == 0) {
                tail->misaligned32 = qemu_plugin_insn_size(insn) == 4 && (a & 3) != 0;
                tail->first_srcs = c.srcs;
                tail->first_jalr_base = c.jalr_base;
                tail->first_range_cycles = r >= 0 ? &ranges[r].cycles : NULL;
                tail->first_in_lo_hi = in;
            }
            if (i == n - 1) {
                tail->last_rd = c.rd;
                tail->last_load_rd = c.kind == RV_LOAD ? c.rd : -1;
            }
            if (i > 0 && rprev.kind == RV_LOAD && rprev.rd > 0 && ((c.srcs >> rprev.rd) & 1)) {
                cyc++; /* load data hazard: waits one cycle for the load's data */
            }
            if (i > 0 && c.jalr_base > 0 && rprev.rd == c.jalr_base) {
                cyc++; /* jalr data hazard */
            }
            if (verbose > 1) {
                dump_insn(a, (int)c.kind, cyc, d);
            }
            free(d);
            add_cycles(insn, cyc, in, r);
            if ((c.kind == RV_BRANCH || c.kind == RV_JUMP) && i == n - 1) {
                tail->kind = c.kind == RV_BRANCH ? TAIL_BRANCH : TAIL_JUMP;
                tail->fallthrough = a + qemu_plugin_insn_size(insn);
                tail->range_cycles = r >= 0 ? &ranges[r].cycles : NULL;
                tail->in_lo_hi = in;
            }
            rprev = c;
        }
    }
    if (tail) {
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
    if (model != MODEL_NONE) {
        snprintf(buf, sizeof buf, "cycles %" PRIu64 "\n", cycles);
        qemu_plugin_outs(buf);
    }
    for (r = 0; r < n_ranges; r++) {
        snprintf(buf, sizeof buf, "range %.63s %" PRIu64 "\n", ranges[r].name, ranges[r].count);
        qemu_plugin_outs(buf);
        if (model != MODEL_NONE) {
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
            model = MODEL_M4;
        } else if (strcmp(argv[i], "cycles=rv32") == 0) {
            model = MODEL_RV32;
        } else if (strncmp(argv[i], "div=", 4) == 0) {
            div_cycles = atoi(argv[i] + 4);
        } else if (strncmp(argv[i], "verbose=", 8) == 0) {
            verbose = atoi(argv[i] + 8);
        }
    }
    if (div_cycles < 0) {
        div_cycles = model == MODEL_RV32 ? RV_DIV : M4_DIV;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, at_exit_report, NULL);
    return 0;
}
