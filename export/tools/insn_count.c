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
 * below, `cycles=m7` (Thumb-2) with the Cortex-M7 dual-issue model below. `div=N` sets the
 * cycles of a division (every model; defaults M4 7, RV32 19, M7 7). `verbose=1` lists (once, at
 * translation) the mnemonics the model does not know and charges 1 cycle ("unknown
 * <mnemonic>"); `verbose=2` also every translated instruction ("insn <addr> <kind> <cycles>
 * <disassembly>", the refill / taken-branch, target and unaligned penalties not included; for
 * `cycles=m7` kind = the U_* unit bits, cycles = the issue cycles); `verbose=3` (m7) also
 * traces every executed instruction's issue ("m7 <addr> t=<cycle> older|younger +<cycles
 * charged>") and every misprediction.
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
 *   unaligned LDR/STR single: + 1 or + 2 on the cycles above (2, or 1 when pipelined)
 *       (TRM 3.3.1, "Load/store timings": "Unaligned word or halfword loads or stores add
 *       penalty cycles. A byte aligned halfword load or store adds one extra cycle to perform
 *       the operation as two bytes. A halfword aligned word load or store adds one extra cycle
 *       to perform the operation as two halfwords. A byte-aligned word load or store adds two
 *       extra cycles to perform the operation as a byte, a halfword, and a byte."):
 *         LDR/STR (word) at an address = 2 mod 4 ............................. + 1
 *         LDR/STR (word) at an odd address ................................... + 2
 *         LDRH/LDRSH/STRH at an odd address .................................. + 1
 *       (and their T forms), seen when the access executes: a memory callback on these
 *       instructions only, as for the M7's unaligned loads, charged to the instruction.
 *       LDRD/STRD, LDM/STM, LDREX/STREX and VLDR/VSTR must be aligned on the M4 (else a
 *       fault): no penalty.
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
 * With `cycles=m7` (Thumb-2 guests) it models the Cortex-M7's in-order dual-issue pipeline,
 * same output lines. ARM publishes no per-instruction timing for the M7: the rules come from
 * public measurements, [Q] "Cortex-M7 instruction cycle counts, timings, and dual-issue
 * combinations", www.quinapalus.com/cm7cycles.html (STM32H730, caches on), [J] jnk0le,
 * github.com/jnk0le/random, "pipeline cycle test/doc/cortex_m7.md" (STM32H743, DWT cycle
 * counter), [T] a Mastodon note on M7 dual-issue restrictions (mastodawn.com, tag CortexM7),
 * and where they say nothing from Arm's compiler scheduling model [L]
 * llvm/lib/Target/ARM/ARMScheduleM7.td, or an ASSUMPTION (marked). Zero wait-state memory
 * (TCM or cache hits), as for the M4. The instructions are decoded at translation (operands
 * from the disassembly) and issued at run time, block by block (the per-block callback), on a
 * pipeline state carried across blocks: each instruction's issue cycle, the cycle each
 * register's value becomes usable, the branch predictor.
 *
 *   issue: in program order, at most two a cycle [Q][J]. An instruction issues as the
 *     "younger" op beside the one before it (the "older" op) when that one issued alone in
 *     its cycle, neither issues alone (below), the pair's resources allow and its operands
 *     are ready in that cycle; else as an older op in the first later cycle its operands are
 *     ready. If the older op stalls, neither issues [T]. An instruction is charged the cycles
 *     it adds to the schedule, stalls included (0 as a younger op).
 *   pair resources: one store [J]; two loads only from the same base register at immediate
 *     offsets whose bit 2 differs ([J]: two loads pair iff they access different (even / odd
 *     word) banks; the plugin sees no addresses: loads from other bases are ASSUMED to
 *     conflict); a load beside an ALU op, a MAC, a store or a branch [Q][J]; one multiply /
 *     MAC [Q][J], never beside a store [J]; one "shifted" op [T][J]: an inline-shifted
 *     register operand, a 32-bit instruction's constant that is not 8 bits, a byte pattern
 *     (0x00XY00XY, 0xXY00XY00, 0xXYXYXYXY) or ADDW / SUBW's 12 bits, bit field, extend,
 *     REV / RBIT, PKH, SSAT / USAT, QDADD / QDSUB; DSP / SIMD / bit-field ops (those, CLZ, SIMD
 *     and saturating add / sub, SEL, USAD8) only as the older op [T][J]; one branch (ASSUMED);
 *     one VFP arithmetic op [J]. Plain shifts pair with anything (ASSUMED: [J] finds some
 *     shift + shifted-operand pairs unreliable); MACs pair with DSP ops [J].
 *   alone (no pair), issue cycles: LDM / STM / PUSH / POP, VLDM / VSTM / VPUSH / VPOP of N
 *     words: ceil(N / 2) [J]; LDRD / STRD 1 [J][L]; SDIV / UDIV DIV = 7 ([L]; the plugin cannot
 *     see the operands; `div=N`); TBB / TBH 2 [L]; MRS, MSR, barriers, CPS, SVC, BKPT, UDF,
 *     WFI, CLREX, LDREX / STREX [L]; VMOV of two core registers, 64-bit VLDR / VSTR [J];
 *     VDIV 16, VSQRT 14 [J]. Everything else 1 (NOP and IT included: they take a slot [J]).
 *   operand latency, producer's issue to consumer's issue (0: the younger op of the same
 *     cycle may read it) by the operand's use: normal (late ALU, compare, MAC / DIV operands
 *     not listed, the flags), early (an inline-shifted register, the source of an extend /
 *     bit field / REV / RBIT / PKH / SSAT), address (base and index of a load / store),
 *     multiplicand, accumulator; a store's data never waits [J]:
 *                                                  normal early address multipl. accum.
 *     ADD / SUB / MOV / MOVW / MOVT / ADR of registers or plain constants, shifts by an
 *       immediate, REV / RBIT, issued as the older op with their sources ready a cycle
 *       early (the early ALU [J]; [T]'s paired dependent ADDs) .... 0     1      1       0       0
 *     other ALU results, VMOV to a core register ................ 1     2      2       1       0
 *     SSAT / USAT, Q* add / sub, USAD8 [L] ....................... 2     3      3       2       1
 *     LDR (word) [J]; load to address 3 [Q] ...................... 1     2      3       2       0
 *     LDRB / LDRH / LDRSB / LDRSH: one more [J] .................. 2     3      3       2       1
 *     base writeback of a load / store [J][L] .................... 0     1      1       0       0
 *     multiply / MAC (one more than ALU; MACs chain on the
 *       accumulator every cycle) [Q][J] .......................... 2     3      3       2       1
 *     VFP results 3, VFMA-type 5, VMLA-type 6 [J]; LDM / DIV results as LDR / ALU at the
 *     instruction's last cycle. The flags: 1 from any setter (2 from a MAC; no 0-cycle
 *     forwarding [J]), read by ADC / SBC / RRX and the conditional instructions of an IT block.
 *   branches: predicted, so a conditional branch waits for neither the flags nor CBZ / CBNZ's
 *     register; a branch predicted correctly costs its issue slot only and the instruction
 *     after it (at the target when taken) may pair with it ([J]: a predicted taken branch can
 *     dual-issue with the target's first instruction; not-taken with the next); a mispredicted
 *     one delays the next instruction to MISPREDICT = 8 cycles after the branch's (last)
 *     issue cycle ([J]; 6 when the flags are set 3+ cycles before: not modelled), charged to
 *     the branch's function. Predictor (ASSUMED: [J] and [Q] measure penalties, not the
 *     predictor): per branch address a 2-bit counter, cold = weakly not taken, and the last
 *     target; predicted taken when the counter is 2 or 3, and then to the last target. So a
 *     loop's back-edge is predicted after its first taken execution and its exit is
 *     mispredicted once a run; every taken branch's first execution (cold) is mispredicted;
 *     returns are predicted to the last caller (no return stack ASSUMED). "Taken" = the next
 *     executed translation block does not start at the branch's fall-through address.
 *   unaligned loads: an LDR / LDRH / LDRSH whose address is not aligned (seen when it
 *     executes: a memory callback on these loads only) costs 3 more cycles, 4 as the younger op
 *     [J] (halfwords ASSUMED alike); charged to it, and everything issued after it moves by as
 *     much (applied after its block was scheduled, so the stall is not re-paired).
 *   Left out: fetch and alignment effects ([J]'s "slippery" pairs, loop-entry alignment,
 *     16-bit instruction pairing walls), unaligned stores and store-buffer stalls (5+ stores in
 *     a row, byte and halfword stores [J]), bank conflicts the plugin cannot see (loads from two
 *     different bases never pair here; [J]: they pair when their words are in different
 *     banks), STM's 8-byte alignment cycle, the VFP's special cases, division's
 *     operand-dependent time, cache misses, interrupts.
 *
 * Overhead: one inline add per instruction (and range) for the cycles, one C callback per
 * executed translation block (m7: the cycles are added in that callback, a loop over the
 * block's decoded instructions); one C callback per executed LDR / LDRH / LDRSH (m7), and per
 * executed LDR / LDRH / LDRSH / STR / STRH (m4).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
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
typedef uint32_t qemu_plugin_meminfo_t;
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info,
                                          uint64_t vaddr, void *userdata);

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
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn,
                                      qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags,
                                      enum qemu_plugin_mem_rw rw, void *userdata);
unsigned int qemu_plugin_mem_size_shift(qemu_plugin_meminfo_t info);
bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                    void *userdata);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t lo, hi = UINT64_MAX, count, cycles;
static int verbose;
/* the cycle model: none, `cycles=m4`, `cycles=rv32`, `cycles=m7` */
static enum { MODEL_NONE, MODEL_M4, MODEL_RV32, MODEL_M7 } model;

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

/* adds n modelled cycles (when n > 0) to a range's counter (NULL: outside every range) and,
 * when in_lo_hi, to [lo, hi)'s */
static void charge(uint64_t *range_cycles, int in_lo_hi, int64_t n) {
    if (n > 0 && range_cycles) {
        *range_cycles += (uint64_t)n;
    }
    if (n > 0 && in_lo_hi) {
        cycles += (uint64_t)n;
    }
}

/* ---- unaligned accesses (m4, m7): seen when they execute ---- */

/* calls cb(..., ud) at every execution of insn's memory access */
static void watch_access(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb, void *ud) {
    /* MEM_RW, the callback tells stores by qemu_plugin_mem_is_store: a MEM_R callback got the
     * stores, not the loads, under QEMU 7.2 here (tried) */
    qemu_plugin_register_vcpu_mem_cb(insn, cb, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, ud);
}

/* an access's address modulo its size: 0 when aligned */
static unsigned misalignment(qemu_plugin_meminfo_t info, uint64_t vaddr) {
    return (unsigned)(vaddr & (((uint64_t)1 << qemu_plugin_mem_size_shift(info)) - 1));
}

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
    int may_unalign; /* LDR / LDRH / LDRSH / STR / STRH (and T forms): may be unaligned */
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

/* Skips the disassembly's leading blanks (advancing *disas) and copies its mnemonic, lower
 * case, into m[cap]; returns the mnemonic's length (the operands start there). */
static size_t read_mnemonic(const char **disas, char *m, size_t cap) {
    const char *d = *disas;
    size_t i = 0;
    while (*d == ' ' || *d == '\t') {
        d++;
    }
    while (d[i] && d[i] != ' ' && d[i] != '\t' && i < cap - 1) {
        m[i] = (char)tolower((unsigned char)d[i]);
        i++;
    }
    m[i] = 0;
    *disas = d;
    return i;
}

static struct cls classify(const char *disas, int *known) {
    char m[32];
    const char *ops;
    size_t i = 0;
    struct cls c = {1, K_ALU, -1, 0, 0};
    int has_pc, dst;
    *known = 1;
    i = read_mnemonic(&disas, m, sizeof m);
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
        c.may_unalign = is(m, "ldr", 0) || is(m, "ldrh", 0) || is(m, "ldrsh", 0) ||
                        is(m, "ldrt", 0) || is(m, "ldrht", 0) || is(m, "ldrsht", 0);
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
        c.may_unalign = is(m, "str", 0) || is(m, "strh", 0) || is(m, "strt", 0) ||
                        is(m, "strht", 0);
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

/* ---- Cortex-M7 (in-order dual issue) ---- */

/* what an instruction occupies (m7_insn.unit; the pair rules of the table above) */
#define U_LOAD 1u
#define U_STORE 2u
#define U_MAC 4u     /* multiply / multiply-accumulate: one a cycle, never beside a store */
#define U_SHIFT 8u   /* "shifted" op: one a cycle */
#define U_DSP 16u    /* DSP / SIMD / bit-field op: the older op of a pair only */
#define U_BRANCH 32u /* may write the PC: one a cycle; resolved against the next block */
#define U_FP 64u     /* VFP arithmetic: one a cycle */
#define U_SINGLE 128u /* issues alone */

/* who wrote a register (producer) and how an operand is read (consumer): m7_lat */
enum { PR_ALU_E, PR_ALU, PR_ALU2, PR_LD, PR_LDB, PR_WB, PR_MUL, PR_FP, PR_FP5, PR_FP6, N_PR };
enum { CO_LATE, CO_EARLY, CO_AGU, CO_MUL, CO_ACC, N_CO };

/* cycles from the producer's issue to the earliest issue of a consumer (0: the younger op of
 * the same cycle); the latency table of the header comment */
static const int8_t m7_lat[N_PR][N_CO] = {
    /*           late early address multiplicand accumulator */
    /* ALU_E */ {0, 1, 1, 0, 0},
    /* ALU   */ {1, 2, 2, 1, 0},
    /* ALU2  */ {2, 3, 3, 2, 1},
    /* LD    */ {1, 2, 3, 2, 0},
    /* LDB   */ {2, 3, 3, 2, 1},
    /* WB    */ {0, 1, 1, 0, 0},
    /* MUL   */ {2, 3, 3, 2, 1},
    /* FP    */ {3, 3, 3, 3, 3},
    /* FP5   */ {5, 5, 5, 5, 5},
    /* FP6   */ {6, 6, 6, 6, 6},
};

/* register ids: r0-r15 0-15, the APSR flags 16, the FPSCR flags 17, s0-s31 32-63 (d<n> is
 * s<2n> and s<2n+1>) */
#define M7_FLAGS 16
#define M7_FPFLAGS 17
#define M7_S0 32
#define M7_NREG 64
#define M7_MAXSRC 10

/* Cortex-M7 timing parameters (see the table above) */
#define M7_MISPREDICT 8
#define M7_DIV 7

/* one decoded instruction */
struct m7_insn {
    uint64_t addr;
    uint64_t *range_cycles; /* NULL: outside every range */
    int in_lo_hi;
    uint64_t dst;      /* registers written (bit = id) */
    uint8_t unit;      /* U_* */
    uint8_t occ;       /* issue cycles (>= 1) */
    uint8_t dst_delay; /* the results are produced this many cycles after the issue */
    uint8_t prod;      /* producer class of the results */
    uint8_t early_ok;  /* ADD/SUB/MOV-type: runs in the early ALU as the older op */
    uint8_t sets_flags;
    uint8_t n_src;
    int8_t wb;        /* base register written back (PR_WB), -1: none */
    int8_t bank_base; /* load at an immediate offset from this base, no writeback; else -1 */
    int32_t bank_off;
    uint8_t may_unalign; /* LDR / LDRH / LDRSH: its address is checked when it executes */
    uint8_t younger;     /* run time: issued as the younger op, at cycle t */
    int64_t t;
    uint8_t src[M7_MAXSRC], cons[M7_MAXSRC];
};

/* a register name (the whole of t): its id, *second = the other half of a d register, or -1 */
static int m7_regid(const char *t, int *second) {
    static const char *const names[] = {"sb", "sl", "fp", "ip", "sp", "lr", "pc"};
    size_t i, n = strlen(t);
    *second = -1;
    if (n >= 2 && n <= 3 && strspn(t + 1, "0123456789") == n - 1) {
        int v = atoi(t + 1);
        if (t[0] == 'r' && v < 16) {
            return v;
        }
        if (t[0] == 's' && v < 32) {
            return M7_S0 + v;
        }
        if (t[0] == 'd' && v < 16) {
            *second = M7_S0 + 2 * v + 1;
            return M7_S0 + 2 * v;
        }
        return -1;
    }
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(t, names[i]) == 0) {
            return 9 + (int)i;
        }
    }
    if (strncmp(t, "apsr", 4) == 0) {
        return M7_FLAGS;
    }
    if (strcmp(t, "fpscr") == 0) {
        return M7_FPFLAGS;
    }
    return -1;
}

/* one operand of the disassembly */
struct m7_op {
    char kind;          /* 'r' register, 'i' immediate, 'm' memory, 'l' list, 's' shift, '?' */
    int r, r2;          /* 'r': id (r2: a d register's second half, else -1); 's': the shift
                         * register, -1: by an immediate */
    int64_t imm;        /* 'i'; 'm': the immediate offset (0 without one) */
    int base, index;    /* 'm': registers, -1 when none */
    int wb, has_shift;  /* 'm': pre-indexed writeback ("]!"), index shifted */
    uint64_t mask;      /* 'l': the registers listed, the PC left out */
    int words, pc;      /* 'l': words listed (2 per d register), whether the PC is */
};

static void m7_trim(char *t) {
    size_t n = strlen(t);
    while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t')) {
        t[--n] = 0;
    }
}

/* splits the operands at the commas outside [] and {} (at most `max` operands) */
static int m7_split(const char *ops, char tok[][96], int max) {
    int n = 0, depth = 0;
    size_t k = 0;
    const char *p;
    while (*ops == ' ' || *ops == '\t') {
        ops++;
    }
    if (!*ops) {
        return 0;
    }
    for (p = ops; *p; p++) {
        if (*p == ',' && depth == 0) {
            tok[n][k] = 0;
            if (n == max - 1) {
                break;
            }
            n++;
            k = 0;
            continue;
        }
        if (*p == '[' || *p == '{') {
            depth++;
        } else if (*p == ']' || *p == '}') {
            depth--;
        }
        if (k == 0 && (*p == ' ' || *p == '\t')) {
            continue;
        }
        if (k < 95) {
            tok[n][k++] = *p;
        }
    }
    tok[n][k] = 0;
    for (k = 0; k <= (size_t)n; k++) {
        m7_trim(tok[k]);
    }
    return n + 1;
}

static int m7_is_shift(const char *t) {
    static const char *const s[] = {"lsl", "lsr", "asr", "ror", "rrx"};
    size_t i;
    for (i = 0; i < 5; i++) {
        if (strncmp(t, s[i], 3) == 0 && (t[3] == 0 || t[3] == ' ')) {
            return 1;
        }
    }
    return 0;
}

/* Copies what follows the opening bracket t[0] up to `close` (or the end) into in[96];
 * returns the closing bracket (NULL when missing). */
static const char *m7_bracketed(const char *t, char close, char in[96]) {
    const char *e = strchr(t, close);
    size_t n = e ? (size_t)(e - t - 1) : strlen(t + 1);
    if (n > 95) {
        n = 95;
    }
    memcpy(in, t + 1, n);
    in[n] = 0;
    return e;
}

static struct m7_op m7_operand(const char *t) {
    struct m7_op o;
    int second;
    memset(&o, 0, sizeof o);
    o.kind = '?';
    o.r = o.r2 = o.base = o.index = -1;
    if (t[0] == '#') {
        o.kind = 'i';
        o.imm = strtoll(t + 1, NULL, 0);
    } else if (t[0] == '[') {
        char in[96], sub[4][96];
        const char *e = m7_bracketed(t, ']', in);
        int k, i;
        o.kind = 'm';
        o.wb = e && e[1] == '!';
        k = m7_split(in, sub, 4);
        for (i = 0; i < k; i++) {
            if (sub[i][0] == '#') {
                o.imm = strtoll(sub[i] + 1, NULL, 0);
            } else if (m7_is_shift(sub[i])) {
                o.has_shift = 1;
            } else if (i == 0) {
                o.base = m7_regid(sub[i], &second);
            } else {
                o.index = m7_regid(sub[i], &second);
            }
        }
    } else if (t[0] == '{') {
        char in[96], sub[17][96];
        int k, i;
        m7_bracketed(t, '}', in);
        o.kind = 'l';
        k = m7_split(in, sub, 17);
        for (i = 0; i < k; i++) {
            int r = m7_regid(sub[i], &second);
            if (r == 15) {
                o.pc = 1;
                o.words++;
            } else if (r >= 0) {
                o.mask |= (uint64_t)1 << r;
                o.words++;
                if (second >= 0) {
                    o.mask |= (uint64_t)1 << second;
                    o.words++;
                }
            }
        }
    } else if (m7_is_shift(t)) {
        o.kind = 's';
        o.r = t[3] == ' ' && t[4] != '#' ? m7_regid(t + 4, &second) : -1;
    } else {
        char r[16];
        size_t n = strlen(t);
        if (n > 0 && n < sizeof r && t[n - 1] == '!') {
            memcpy(r, t, n - 1);
            r[n - 1] = 0;
            o.wb = 1; /* "rn!" of LDM / STM */
            t = r;
        }
        o.r = m7_regid(t, &o.r2);
        if (o.r >= 0) {
            o.kind = 'r';
        }
    }
    return o;
}

/* a plain data-processing constant [J]: 8 bits, or a byte pattern 0x00XY00XY, 0xXY00XY00,
 * 0xXYXYXYXY; anything else a 32-bit instruction encodes is a shifted 8-bit value */
static int m7_plain_imm(int64_t v) {
    uint32_t u = (uint32_t)v;
    return u <= 0xff || u == (u & 0xff) * 0x10001u || u == (u & 0xff00) * 0x10001u ||
           u == (u & 0xff) * 0x01010101u;
}

static void m7_src(struct m7_insn *x, int r, int cons) {
    if (r >= 0 && r != 15 && x->n_src < M7_MAXSRC) {
        x->src[x->n_src] = (uint8_t)r;
        x->cons[x->n_src++] = (uint8_t)cons;
    }
}

/* A load/store multiple (LDM/STM/PUSH/POP and their VFP forms; o: the operands, the register
 * list first or second): issues alone for ceil(N/2) cycles for N words (1 for N <= 2), the loaded
 * registers ready with the last; a loaded PC makes it a branch. The base register is the
 * address operand, written back with `!`; PUSH/POP (no register operand first) use and write
 * back SP. */
static void m7_multiple(struct m7_insn *x, const struct m7_op *o, int ld) {
    const struct m7_op *l = o[0].kind == 'l' ? &o[0] : &o[1];
    x->unit = U_SINGLE | (ld ? U_LOAD : U_STORE);
    x->occ = (uint8_t)(l->words > 2 ? (l->words + 1) / 2 : 1);
    x->dst_delay = (uint8_t)(x->occ - 1);
    x->prod = PR_LD;
    if (ld) {
        x->dst = l->mask;
        if (l->pc) {
            x->unit |= U_BRANCH;
        }
    }
    if (o[0].kind == 'r') {
        m7_src(x, o[0].r, CO_AGU);
        if (o[0].wb) {
            x->wb = (int8_t)o[0].r;
        }
    } else {
        m7_src(x, 13, CO_AGU);
        x->wb = 13;
    }
}

static void m7_src_op(struct m7_insn *x, const struct m7_op *o, int cons) {
    if (o->kind == 'r') {
        m7_src(x, o->r, cons);
        m7_src(x, o->r2, cons);
    }
}

static void m7_dst(struct m7_insn *x, const struct m7_op *o) {
    if (o->kind == 'r') {
        if (o->r >= 0 && o->r != 15) {
            x->dst |= (uint64_t)1 << o->r;
        }
        if (o->r2 >= 0) {
            x->dst |= (uint64_t)1 << o->r2;
        }
    }
}

/* whether mnemonic m is `base` with an optional "s" (when s_ok) and condition; *s, *cond: which */
static int m7_is(const char *m, const char *base, int s_ok, int *s, int *cond) {
    size_t n = strlen(base);
    int has_s = 0;
    if (strncmp(m, base, n) != 0) {
        return 0;
    }
    m += n;
    if (s_ok && *m == 's' && suffix_ok(m + 1, 0)) {
        has_s = 1;
        m++;
    } else if (!suffix_ok(m, 0)) {
        return 0;
    }
    *s = has_s;
    *cond = *m != 0 && strcmp(m, "al") != 0;
    return 1;
}

/* whether m is one of the NULL-terminated bases (no "s"); *cond as m7_is */
static int m7_in(const char *m, const char *const *bases, int *cond) {
    int s;
    for (; *bases; bases++) {
        if (m7_is(m, *bases, 0, &s, cond)) {
            return 1;
        }
    }
    return 0;
}

/* the memory operand of a load / store: the address registers (AGU), writeback and the bank
 * pairing information; `post` is the operand after it (post-indexed), if any */
static void m7_mem(struct m7_insn *x, const struct m7_op *mem, const struct m7_op *post,
                   int load) {
    m7_src(x, mem->base, CO_AGU);
    m7_src(x, mem->index, CO_AGU);
    if (post) {
        m7_src_op(x, post, CO_AGU);
    }
    if ((mem->wb || post) && mem->base >= 0 && mem->base != 15) {
        x->wb = (int8_t)mem->base;
    }
    if (load && !mem->wb && !post && mem->index < 0 && mem->base >= 0 && mem->base != 15) {
        x->bank_base = (int8_t)mem->base;
        x->bank_off = (int32_t)mem->imm;
    }
}

/* Classifies one instruction from its capstone disassembly (`size` bytes); *it_left counts the
 * instructions still to come in an IT block (conditional: they read the flags) */
static void m7_classify(const char *disas, size_t size, struct m7_insn *x, int *known,
                        int *it_left) {
    static const char *const dp3[] = {"add", "adc", "sub", "sbc", "rsb", "and", "orr", "orn",
                                      "eor", "bic", NULL};
    static const char *const cmps[] = {"cmp", "cmn", "tst", "teq", NULL};
    static const char *const shifts[] = {"lsl", "lsr", "asr", "ror", NULL};
    static const char *const mul3[] = {"mul", "smulbb", "smulbt", "smultb", "smultt", "smulwb",
                                       "smulwt", "smuad", "smuadx", "smusd", "smusdx", "smmul",
                                       "smmulr", NULL};
    static const char *const mac4[] = {"mla", "mls", "smlabb", "smlabt", "smlatb", "smlatt",
                                       "smlawb", "smlawt", "smlad", "smladx", "smlsd", "smlsdx",
                                       "smmla", "smmlar", "smmls", "smmlsr", NULL};
    static const char *const mull[] = {"smull", "umull", NULL};
    static const char *const mlal[] = {"smlal", "umlal", "umaal", "smlalbb", "smlalbt",
                                       "smlaltb", "smlaltt", "smlald", "smlaldx", "smlsld",
                                       "smlsldx", NULL};
    static const char *const ext[] = {"sxtb", "sxth", "uxtb", "uxth", "sxtb16", "uxtb16",
                                      "rev", "rev16", "revsh", "rbit", NULL};
    static const char *const exta[] = {"sxtab", "sxtah", "uxtab", "uxtah", "sxtab16",
                                       "uxtab16", NULL};
    static const char *const simd[] = {
        "sadd8", "sadd16", "ssub8", "ssub16", "sasx", "ssax", "uadd8", "uadd16", "usub8",
        "usub16", "uasx", "usax", "shadd8", "shadd16", "shsub8", "shsub16", "shasx", "shsax",
        "uhadd8", "uhadd16", "uhsub8", "uhsub16", "uhasx", "uhsax", "sel", NULL};
    static const char *const qsimd[] = {"qadd", "qsub", "qadd8", "qadd16", "qsub8", "qsub16",
                                        "qasx", "qsax", "uqadd8", "uqadd16", "uqsub8",
                                        "uqsub16", "uqasx", "uqsax", "usad8", "usada8", NULL};
    static const char *const loads[] = {"ldr", "ldrt", "ldrex", NULL};
    static const char *const loadsb[] = {"ldrb", "ldrh", "ldrsb", "ldrsh", "ldrbt", "ldrht",
                                         "ldrsbt", "ldrsht", "ldrexb", "ldrexh", NULL};
    static const char *const stores[] = {"str", "strb", "strh", "strt", "strbt", "strht", NULL};
    static const char *const ldms[] = {"ldm", "ldmia", "ldmfd", "ldmdb", "ldmea", "pop", NULL};
    static const char *const stms[] = {"stm", "stmia", "stmea", "stmdb", "stmfd", "push",
                                       NULL};
    static const char *const singles[] = {"mrs", "msr", "dmb", "dsb", "isb", "cpsid",
                                          "cpsie", "svc", "bkpt", "udf", "clrex", "wfi",
                                          "strex", "strexb", "strexh", NULL};
    static const char *const nops[] = {"nop", "yield", "wfe", "sev", NULL};
    char m[32], lops[160], tok[6][96];
    struct m7_op o[6];
    const char *ops;
    size_t i = 0;
    int n, s = 0, cond = 0, in_it = *it_left > 0, k;
    memset(x, 0, sizeof *x);
    x->occ = 1;
    x->prod = PR_ALU;
    x->wb = -1;
    x->bank_base = -1;
    *known = 1;
    if (in_it) {
        (*it_left)--;
    }
    i = read_mnemonic(&disas, m, sizeof m);
    for (k = 0; disas[i + (size_t)k] && k < (int)sizeof lops - 1; k++) {
        lops[k] = (char)tolower((unsigned char)disas[i + (size_t)k]);
    }
    lops[k] = 0;
    ops = lops;
    {
        char *dot = strchr(m, '.'); /* width (.w / .n) or VFP type (.f32): not needed */
        if (dot) {
            *dot = 0;
        }
    }
    n = m7_split(ops, tok, 6);
    for (k = 0; k < n; k++) {
        o[k] = m7_operand(tok[k]);
    }
    for (; k < 6; k++) {
        o[k] = m7_operand("");
    }
    if (m[0] == 'v') {
        int two_core = 0, fp_regs = 0;
        for (k = 0; k < n; k++) {
            if (o[k].kind == 'r' && o[k].r < 16) {
                two_core++;
            } else if (o[k].kind == 'r' && o[k].r >= M7_S0) {
                fp_regs++;
            }
        }
        if (strcmp(m, "vldr") == 0 || strcmp(m, "vstr") == 0) {
            int ld = m[1] == 'l';
            x->unit = ld ? U_LOAD : U_STORE;
            x->prod = PR_LD;
            if (ld) {
                m7_dst(x, &o[0]);
            }
            m7_mem(x, &o[1], NULL, ld);
            if (o[0].r2 >= 0) {
                x->unit |= U_SINGLE; /* 64-bit VLDR / VSTR [J] */
                x->bank_base = -1;
            }
        } else if (strncmp(m, "vldm", 4) == 0 || strncmp(m, "vstm", 4) == 0 ||
                   strcmp(m, "vpush") == 0 || strcmp(m, "vpop") == 0) {
            m7_multiple(x, o, m[1] == 'l' || strcmp(m, "vpop") == 0);
        } else if (strcmp(m, "vdiv") == 0 || strcmp(m, "vsqrt") == 0) {
            x->unit = U_SINGLE | U_FP;
            x->occ = m[1] == 'd' ? 16 : 14;
            x->dst_delay = (uint8_t)(x->occ - 1);
            x->prod = PR_FP;
            m7_dst(x, &o[0]);
            for (k = 1; k < n; k++) {
                m7_src_op(x, &o[k], CO_LATE);
            }
        } else if (strcmp(m, "vmov") == 0 && two_core >= 2) {
            /* two core registers <-> a d register / two s registers: alone [J] */
            int to_core = o[0].kind == 'r' && o[0].r < 16;
            x->unit = U_SINGLE;
            x->prod = PR_FP;
            for (k = 0; k < n; k++) {
                int core = o[k].kind == 'r' && o[k].r < 16;
                if (core == to_core) {
                    m7_dst(x, &o[k]);
                } else {
                    m7_src_op(x, &o[k], CO_LATE);
                }
            }
        } else if (strcmp(m, "vmov") == 0 && n == 2 && o[0].kind == 'r' && o[0].r < 16) {
            /* core <- s register: an ALU-like result [J] */
            m7_dst(x, &o[0]);
            m7_src_op(x, &o[1], CO_LATE);
        } else if (strcmp(m, "vmov") == 0 && n == 2 && o[1].kind == 'r' && o[1].r < 16) {
            x->prod = PR_FP; /* s register <- core: 3 [J] */
            m7_dst(x, &o[0]);
            m7_src_op(x, &o[1], CO_LATE);
        } else if (strcmp(m, "vmrs") == 0 || strcmp(m, "vmsr") == 0) {
            x->unit = U_SINGLE;
            if (m[2] == 'r') {
                if (o[0].kind == 'r' && o[0].r == M7_FLAGS) {
                    x->sets_flags = 1;
                } else {
                    m7_dst(x, &o[0]);
                }
                m7_src(x, M7_FPFLAGS, CO_LATE);
            } else {
                m7_src_op(x, &o[1], CO_LATE);
            }
        } else {
            /* VFP arithmetic, one pipe: latency 3, VFMA-type 5, VMLA-type 6 [J] */
            int acc = strcmp(m, "vmla") == 0 || strcmp(m, "vmls") == 0 ||
                      strcmp(m, "vnmla") == 0 || strcmp(m, "vnmls") == 0;
            int fma = strncmp(m, "vfma", 4) == 0 || strncmp(m, "vfms", 4) == 0 ||
                      strncmp(m, "vfnm", 4) == 0;
            int cmp = strncmp(m, "vcmp", 4) == 0;
            x->unit = U_FP;
            x->prod = acc ? PR_FP6 : fma ? PR_FP5 : PR_FP;
            if (cmp) {
                x->dst = (uint64_t)1 << M7_FPFLAGS;
            } else {
                m7_dst(x, &o[0]);
            }
            for (k = cmp ? 0 : 1; k < n; k++) {
                m7_src_op(x, &o[k], CO_LATE);
            }
            if (acc || fma) {
                m7_src_op(x, &o[0], CO_LATE);
            }
            *known = fp_regs > 0 || cmp;
        }
        if (in_it) {
            m7_src(x, M7_FLAGS, CO_LATE);
        }
        return;
    }
    /* IT: a slot of its own; the next 1-4 instructions are conditional */
    if (m[0] == 'i' && m[1] == 't' && strspn(m + 2, "te") == strlen(m + 2) && strlen(m) <= 5) {
        *it_left = (int)strlen(m) - 1;
        return;
    }
    if (m7_is(m, "bl", 0, &s, &cond) || m7_is(m, "blx", 0, &s, &cond)) {
        x->unit = U_BRANCH;
        x->dst = (uint64_t)1 << 14;
        return;
    }
    if (m7_is(m, "b", 0, &s, &cond) || m7_is(m, "bx", 0, &s, &cond) ||
        m7_is(m, "cbz", 0, &s, &cond) || m7_is(m, "cbnz", 0, &s, &cond)) {
        /* predicted: neither the flags nor a register operand are waited for */
        x->unit = U_BRANCH;
        return;
    }
    if (m7_is(m, "tbb", 0, &s, &cond) || m7_is(m, "tbh", 0, &s, &cond)) {
        x->unit = U_BRANCH | U_LOAD | U_SINGLE;
        x->occ = 2;
        m7_mem(x, &o[0], NULL, 0);
        return;
    }
    if (m7_in(m, ldms, &cond) || m7_in(m, stms, &cond)) {
        m7_multiple(x, o, m7_in(m, ldms, &cond));
        goto done;
    }
    if (m7_is(m, "ldrd", 0, &s, &cond) || m7_is(m, "strd", 0, &s, &cond)) {
        int ld = m[0] == 'l';
        x->unit = U_SINGLE | (ld ? U_LOAD : U_STORE);
        x->prod = PR_LD;
        if (ld) {
            m7_dst(x, &o[0]);
            m7_dst(x, &o[1]);
        }
        m7_mem(x, &o[2], n > 3 ? &o[3] : NULL, 0);
        goto done;
    }
    if (m7_in(m, loads, &cond) || m7_in(m, loadsb, &cond)) {
        x->unit = U_LOAD;
        x->prod = m7_in(m, loads, &cond) ? PR_LD : PR_LDB;
        m7_dst(x, &o[0]);
        if (o[0].r == 15) {
            x->unit |= U_BRANCH;
        }
        m7_mem(x, &o[1], n > 2 ? &o[2] : NULL, 1);
        if (strncmp(m, "ldrex", 5) == 0) {
            x->unit |= U_SINGLE;
        } else {
            x->may_unalign = x->prod == PR_LD || strchr(m + 3, 'h') != NULL; /* LDR*, LDR(S)H* */
        }
        goto done;
    }
    if (m7_in(m, stores, &cond)) {
        x->unit = U_STORE; /* the data is read late: it never waits [J] */
        m7_mem(x, &o[1], n > 2 ? &o[2] : NULL, 0);
        goto done;
    }
    if (m7_is(m, "pld", 0, &s, &cond) || m7_is(m, "pli", 0, &s, &cond)) {
        x->unit = U_LOAD;
        m7_mem(x, &o[0], NULL, 0);
        return;
    }
    if (m7_is(m, "sdiv", 0, &s, &cond) || m7_is(m, "udiv", 0, &s, &cond)) {
        x->unit = U_SINGLE;
        x->occ = (uint8_t)(div_cycles < 1 ? 1 : div_cycles > 255 ? 255 : div_cycles);
        x->dst_delay = (uint8_t)(x->occ - 1);
        m7_dst(x, &o[0]);
        m7_src_op(x, &o[n == 3 ? 1 : 0], CO_LATE);
        m7_src_op(x, &o[n - 1], CO_LATE);
        goto done;
    }
    if (m7_in(m, mul3, &cond) || m7_is(m, "mul", 1, &s, &cond)) {
        x->unit = U_MAC;
        x->prod = PR_MUL;
        m7_dst(x, &o[0]);
        m7_src_op(x, &o[n == 3 ? 1 : 0], CO_MUL);
        m7_src_op(x, &o[n - 1], CO_MUL);
        goto done;
    }
    if (m7_in(m, mac4, &cond)) {
        x->unit = U_MAC;
        x->prod = PR_MUL;
        m7_dst(x, &o[0]);
        m7_src_op(x, &o[1], CO_MUL);
        m7_src_op(x, &o[2], CO_MUL);
        m7_src_op(x, &o[3], CO_ACC);
        goto done;
    }
    if (m7_in(m, mull, &cond) || m7_is(m, "smull", 1, &s, &cond) ||
        m7_is(m, "umull", 1, &s, &cond) || m7_in(m, mlal, &cond) ||
        m7_is(m, "smlal", 1, &s, &cond) || m7_is(m, "umlal", 1, &s, &cond)) {
        int acc = m[2] == 'l' || m[2] == 'a'; /* smlal*, umlal, umaal, smlsld */
        acc = acc || strncmp(m, "smlsld", 6) == 0;
        x->unit = U_MAC;
        x->prod = PR_MUL;
        m7_dst(x, &o[0]);
        m7_dst(x, &o[1]);
        m7_src_op(x, &o[2], CO_MUL);
        m7_src_op(x, &o[3], CO_MUL);
        if (acc) {
            m7_src_op(x, &o[0], CO_ACC);
            m7_src_op(x, &o[1], CO_ACC);
        }
        goto done;
    }
    if (m7_in(m, ext, &cond)) {
        /* extend, REV, RBIT: the source is read early [J]; REV / RBIT forward like the
         * early ALU [J] */
        x->unit = U_DSP | U_SHIFT;
        x->early_ok = m[0] == 'r';
        m7_dst(x, &o[0]);
        m7_src_op(x, &o[n >= 2 ? 1 : 0], CO_EARLY);
        goto done;
    }
    if (m7_in(m, exta, &cond)) {
        x->unit = U_DSP | U_SHIFT;
        m7_dst(x, &o[0]);
        m7_src_op(x, &o[1], CO_LATE);
        m7_src_op(x, &o[2], CO_EARLY);
        goto done;
    }
    if (m7_is(m, "ubfx", 0, &s, &cond) || m7_is(m, "sbfx", 0, &s, &cond) ||
        m7_is(m, "bfi", 0, &s, &cond) || m7_is(m, "bfc", 0, &s, &cond)) {
        x->unit = U_DSP | U_SHIFT;
        m7_dst(x, &o[0]);
        if (m[0] == 'b') {
            m7_src_op(x, &o[0], CO_LATE); /* the bits kept */
        }
        if (m[2] != 'c') {
            m7_src_op(x, &o[1], CO_EARLY);
        }
        goto done;
    }
    if (m7_is(m, "pkhbt", 0, &s, &cond) || m7_is(m, "pkhtb", 0, &s, &cond)) {
        x->unit = U_DSP | U_SHIFT;
        m7_dst(x, &o[0]);
        m7_src_op(x, &o[1], m[3] == 't' ? CO_EARLY : CO_LATE);
        m7_src_op(x, &o[2], CO_EARLY);
        goto done;
    }
    if (m7_is(m, "ssat", 0, &s, &cond) || m7_is(m, "usat", 0, &s, &cond) ||
        m7_is(m, "ssat16", 0, &s, &cond) || m7_is(m, "usat16", 0, &s, &cond)) {
        x->unit = U_DSP | U_SHIFT;
        x->prod = PR_ALU2;
        m7_dst(x, &o[0]);
        m7_src_op(x, &o[2], CO_EARLY);
        goto done;
    }
    if (m7_is(m, "qdadd", 0, &s, &cond) || m7_is(m, "qdsub", 0, &s, &cond)) {
        x->unit = U_DSP | U_SHIFT;
        x->prod = PR_ALU2;
        m7_dst(x, &o[0]);
        m7_src_op(x, &o[1], CO_EARLY);
        m7_src_op(x, &o[2], CO_EARLY);
        goto done;
    }
    if (m7_in(m, simd, &cond) || m7_in(m, qsimd, &cond)) {
        x->unit = U_DSP;
        x->prod = m7_in(m, qsimd, &cond) ? PR_ALU2 : PR_ALU;
        m7_dst(x, &o[0]);
        for (k = 1; k < n; k++) {
            m7_src_op(x, &o[k], CO_LATE);
        }
        if (strcmp(m, "sel") == 0) {
            m7_src(x, M7_FLAGS, CO_LATE); /* the GE flags */
        }
        goto done;
    }
    if (m7_is(m, "clz", 0, &s, &cond)) {
        x->unit = U_DSP;
        m7_dst(x, &o[0]);
        m7_src_op(x, &o[1], CO_LATE);
        goto done;
    }
    if (m7_in(m, singles, &cond)) {
        x->unit = U_SINGLE;
        if (m[0] == 'm' && m[1] == 'r') {
            m7_dst(x, &o[0]);
        } else if (m[0] == 'm') {
            m7_src_op(x, &o[1], CO_LATE);
            x->sets_flags = 1;
        } else if (strncmp(m, "strex", 5) == 0) {
            x->unit |= U_STORE;
            m7_dst(x, &o[0]);
            m7_mem(x, &o[2], NULL, 0);
        }
        return;
    }
    if (m7_in(m, nops, &cond)) {
        return;
    }
    if (m7_is(m, "movw", 0, &s, &cond) || m7_is(m, "movt", 0, &s, &cond) ||
        m7_is(m, "adr", 0, &s, &cond)) {
        x->early_ok = 1;
        m7_dst(x, &o[0]);
        if (m[3] == 't') {
            m7_src_op(x, &o[0], CO_LATE);
        }
        goto done;
    }
    if (m7_in(m, cmps, &cond)) {
        /* compare: no result but the flags */
        m7_src_op(x, &o[0], CO_LATE);
        if (o[1].kind == 'i' && size == 4 && !m7_plain_imm(o[1].imm)) {
            x->unit |= U_SHIFT;
        }
        m7_src_op(x, &o[1], o[2].kind == 's' ? CO_EARLY : CO_LATE);
        if (o[2].kind == 's') {
            x->unit |= U_SHIFT;
            m7_src(x, o[2].r, CO_EARLY);
        }
        x->sets_flags = 1;
        goto done;
    }
    {
        int is_dp = 0, is_mov = 0, is_shift = 0, w = 0, j;
        for (j = 0; dp3[j] && !is_dp; j++) {
            is_dp = m7_is(m, dp3[j], 1, &s, &cond);
        }
        if (!is_dp && (m7_is(m, "addw", 0, &s, &cond) || m7_is(m, "subw", 0, &s, &cond))) {
            is_dp = w = 1;
        }
        if (!is_dp) {
            is_mov = m7_is(m, "mov", 1, &s, &cond) || m7_is(m, "mvn", 1, &s, &cond) ||
                     m7_is(m, "neg", 1, &s, &cond);
        }
        if (!is_dp && !is_mov) {
            for (j = 0; shifts[j] && !is_shift; j++) {
                is_shift = m7_is(m, shifts[j], 1, &s, &cond);
            }
            is_shift = is_shift || m7_is(m, "rrx", 1, &s, &cond);
        }
        if (is_dp || is_mov) {
            /* rd, [rn,] operand2 [, shift] */
            int op2 = is_mov ? 1 : n >= 3 && o[2].kind != 's' ? 2 : 1;
            int shifted = o[op2 + 1].kind == 's';
            m7_dst(x, &o[0]);
            if (is_dp) {
                m7_src_op(x, &o[op2 == 2 ? 1 : 0], CO_LATE);
            }
            m7_src_op(x, &o[op2], shifted ? CO_EARLY : CO_LATE);
            if (shifted) {
                x->unit |= U_SHIFT;
                m7_src(x, o[op2 + 1].r, CO_EARLY);
            }
            if (o[op2].kind == 'i' && size == 4 && !w && !m7_plain_imm(o[op2].imm)) {
                x->unit |= U_SHIFT;
            }
            /* ADD, SUB, MOV of registers or plain constants run in the early ALU [J] */
            x->early_ok = !(x->unit & U_SHIFT) &&
                          (m[0] == 'a' ? m[1] == 'd' && m[2] == 'd'
                                       : m[0] == 's' ? m[1] == 'u'
                                                     : m[0] == 'm' && m[1] == 'o');
            if (m7_is(m, "adc", 1, &s, &cond) || m7_is(m, "sbc", 1, &s, &cond)) {
                m7_src(x, M7_FLAGS, CO_LATE);
            }
            if (o[0].r == 15) {
                x->unit |= U_BRANCH;
            }
            goto done;
        }
        if (is_shift) {
            /* rd, rm, #n | rd, rm, rs | rd, rs (rd shifted by rs) | rd, #n */
            m7_dst(x, &o[0]);
            if (n == 2 && o[1].kind == 'r' && m[1] != 'r') {
                m7_src_op(x, &o[0], CO_LATE);
            }
            for (k = 1; k < n; k++) {
                m7_src_op(x, &o[k], CO_LATE);
            }
            x->early_ok = m[1] != 'r' && o[n - 1].kind == 'i'; /* shift by an immediate [J] */
            if (m[1] == 'r') {
                m7_src(x, M7_FLAGS, CO_LATE); /* RRX reads the carry */
            }
            goto done;
        }
    }
    /* unknown: 1 slot, the first register written, the others read */
    *known = 0;
    m7_dst(x, &o[0]);
    for (k = 1; k < n; k++) {
        m7_src_op(x, &o[k], CO_LATE);
    }
    return;
done:
    if (s && !in_it) {
        x->sets_flags = 1;
    }
    if (in_it || cond) {
        m7_src(x, M7_FLAGS, CO_LATE);
    }
}

/* the run-time pipeline state, carried across translation blocks (one vCPU) */
static int64_t m7_end;                 /* first cycle after the issue of everything so far */
static int64_t m7_last;                /* last issue cycle of the last instruction */
static const struct m7_insn *m7_older; /* the older op of cycle m7_end - 1 while a younger op
                                        * may still join it, else NULL */
static int64_t m7_t[M7_NREG];          /* per register: its producer's issue (+ dst_delay) */
static uint8_t m7_k[M7_NREG];          /* and class */

/* the branch predictor: per branch address a 2-bit counter and the last target */
#define M7_BP_BITS 16
static struct {
    uint64_t addr, target;
    uint8_t ctr, used;
} m7_bp[1 << M7_BP_BITS];

/* whether b may issue beside a as the younger op of a cycle (resources only) */
static int m7_pair_ok(const struct m7_insn *a, const struct m7_insn *b) {
    unsigned fa = a->unit, fb = b->unit;
    if (((fa | fb) & U_SINGLE) || (fb & U_DSP)) {
        return 0;
    }
    if (fa & fb & (U_STORE | U_MAC | U_SHIFT | U_BRANCH | U_FP)) {
        return 0;
    }
    if (((fa & U_MAC) && (fb & U_STORE)) || ((fa & U_STORE) && (fb & U_MAC))) {
        return 0;
    }
    if ((fa & fb & U_LOAD) && !(a->bank_base >= 0 && a->bank_base == b->bank_base &&
                                ((a->bank_off ^ b->bank_off) & 4))) {
        return 0;
    }
    return 1;
}

/* issues x after everything before it, charging it the cycles it adds */
static void m7_issue(struct m7_insn *x) {
    int64_t ready = INT64_MIN, early = INT64_MIN, t, cost = 0;
    int i, younger = 0, pk = x->prod;
    uint64_t d;
    for (i = 0; i < x->n_src; i++) {
        int r = x->src[i];
        int64_t a = m7_t[r] + m7_lat[m7_k[r]][x->cons[i]];
        int64_t e = m7_t[r] + m7_lat[m7_k[r]][CO_EARLY];
        ready = a > ready ? a : ready;
        early = e > early ? e : early;
    }
    if (m7_older && m7_pair_ok(m7_older, x) && ready <= m7_end - 1) {
        t = m7_end - 1;
        younger = 1;
        m7_older = NULL;
    } else {
        t = ready > m7_end ? ready : m7_end;
        cost = t + x->occ - m7_end;
        m7_end = t + x->occ;
        m7_older = (x->unit & U_SINGLE) || x->occ > 1 ? NULL : x;
    }
    if (x->early_ok && !younger && early <= t) {
        pk = PR_ALU_E; /* ran in the early ALU: a younger op of the same cycle may use it */
    }
    if (x->wb >= 0) {
        m7_t[x->wb] = t;
        m7_k[x->wb] = PR_WB;
    }
    for (d = x->dst, i = 0; d; d >>= 1, i++) {
        if (d & 1) {
            m7_t[i] = t + x->dst_delay;
            m7_k[i] = (uint8_t)pk;
        }
    }
    if (x->sets_flags) {
        m7_t[M7_FLAGS] = t + x->dst_delay;
        m7_k[M7_FLAGS] = (uint8_t)(pk == PR_ALU_E ? PR_ALU : pk); /* no 0-cycle flags [J] */
    }
    m7_last = t + x->occ - 1;
    x->t = t;
    x->younger = (uint8_t)younger;
    charge(x->range_cycles, x->in_lo_hi, cost);
    if (verbose > 2) {
        char buf[96];
        snprintf(buf, sizeof buf, "m7 %" PRIx64 " t=%" PRId64 " %s +%" PRId64 "\n", x->addr, t,
                 younger ? "younger" : "older", cost);
        qemu_plugin_outs(buf);
    }
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
    /* m7: the block's decoded instructions, and the address of its last (the branch) */
    struct m7_insn *m7;
    size_t m7_n;
    uint64_t branch_addr;
};

static struct tb_tail *prev_tail;

static void charge_tail(const struct tb_tail *t, uint64_t n) {
    charge(t->range_cycles, t->in_lo_hi, (int64_t)n);
}

/* m7: a load checked for alignment has executed (after its block was scheduled): when its
 * address is not aligned, it and everything after it move by the penalty (+3, +4 as the
 * younger op [J]), charged to it */
static void m7_on_load(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr,
                       void *ud) {
    struct m7_insn *x = ud;
    int64_t pen = x->younger ? 4 : 3;
    int r;
    (void)vcpu;
    if (qemu_plugin_mem_is_store(info) || !misalignment(info, vaddr)) {
        return;
    }
    for (r = 0; r < M7_NREG; r++) {
        if (m7_t[r] >= x->t) {
            m7_t[r] += pen;
        }
    }
    m7_end += pen;
    m7_last += pen;
    m7_older = NULL;
    charge(x->range_cycles, x->in_lo_hi, pen);
    if (verbose > 2) {
        char buf[64];
        snprintf(buf, sizeof buf, "m7 unaligned %" PRIx64 " +%" PRId64 "\n", x->addr, pen);
        qemu_plugin_outs(buf);
    }
}

/* m4: a load / store that may be unaligned has executed (TRM 3.3.1): a word at an address
 * = 2 mod 4 costs 1 more (two halfwords), at an odd address 2 more (a byte, a halfword and a
 * byte), a halfword at an odd address 1 more (two bytes); charged to it. ud = m4_where(...) */
static void m4_on_access(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr,
                         void *ud) {
    unsigned off = misalignment(info, vaddr);
    uintptr_t w = (uintptr_t)ud;
    int r = (int)(w >> 1) - 1;
    (void)vcpu;
    if (off) {
        charge(r >= 0 ? &ranges[r].cycles : NULL, (int)(w & 1),
               (off & 1) && qemu_plugin_mem_size_shift(info) == 2 ? 2 : 1);
    }
}

/* m4_on_access's userdata: where an instruction's cycles go (range r, -1: none; in [lo, hi)) */
static void *m4_where(int r, int in) {
    return (void *)(((uintptr_t)(r + 1) << 1) | (uintptr_t)(in != 0));
}

/* m7: the branch ending block p against the block executed next (starting at `next`): a
 * mispredicted one delays everything after it to M7_MISPREDICT cycles after its issue cycle,
 * charged to the branch's function; a predicted one lets the next instruction pair with it */
static void m7_resolve(const struct tb_tail *p, uint64_t next) {
    size_t i = (size_t)(p->branch_addr >> 1) & (((size_t)1 << M7_BP_BITS) - 1);
    int taken = next != p->fallthrough, predicted, miss;
    if (!m7_bp[i].used || m7_bp[i].addr != p->branch_addr) {
        m7_bp[i].used = 1;
        m7_bp[i].addr = p->branch_addr;
        m7_bp[i].target = 0;
        m7_bp[i].ctr = 1; /* cold: weakly not taken */
    }
    predicted = m7_bp[i].ctr >= 2;
    miss = predicted != taken || (taken && m7_bp[i].target != next);
    if (taken) {
        m7_bp[i].ctr += m7_bp[i].ctr < 3;
        m7_bp[i].target = next;
    } else {
        m7_bp[i].ctr -= m7_bp[i].ctr > 0;
    }
    if (miss) {
        int64_t e = m7_last + 1 + M7_MISPREDICT;
        if (e > m7_end) {
            charge_tail(p, (uint64_t)(e - m7_end));
            m7_end = e;
        }
        m7_older = NULL;
        if (verbose > 2) {
            char buf[64];
            snprintf(buf, sizeof buf, "m7 mispredict %" PRIx64 "\n", p->branch_addr);
            qemu_plugin_outs(buf);
        }
    }
}

static void on_tb_exec(unsigned int vcpu, void *ud) {
    struct tb_tail *t = ud;
    (void)vcpu;
    if (model == MODEL_M7) {
        size_t i;
        if (prev_tail) {
            m7_resolve(prev_tail, t->start);
        }
        for (i = 0; i < t->m7_n; i++) {
            m7_issue(&t->m7[i]);
        }
        prev_tail = t->kind != TAIL_NONE ? t : NULL;
        return;
    }
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
    struct cls prev = {1, K_ALU, -1, 0, 0};
    struct rv_cls rprev = {1, RV_ALU, -1, 0, -1};
    size_t prev_size = 4;
    struct tb_tail *tail = NULL;
    int it_left = 0;
    (void)id;
    if (model != MODEL_NONE) {
        tail = calloc(1, sizeof *tail); /* fallthrough 0, TAIL_NONE: ends in no branch */
        tail->start = qemu_plugin_tb_vaddr(tb);
    }
    if (model == MODEL_M7) {
        tail->m7 = calloc(n ? n : 1, sizeof *tail->m7);
        tail->m7_n = n;
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
            if (c.may_unalign && (in || r >= 0)) {
                watch_access(insn, m4_on_access, m4_where(r, in));
            }
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
        } else if (model == MODEL_M7) {
            char *d = qemu_plugin_insn_disas(insn);
            struct m7_insn *x = &tail->m7[i];
            int known;
            m7_classify(d ? d : "", qemu_plugin_insn_size(insn), x, &known, &it_left);
            x->addr = a;
            x->range_cycles = r >= 0 ? &ranges[r].cycles : NULL;
            x->in_lo_hi = in;
            if (verbose && !known) {
                report_unknown(d ? d : "?");
            }
            if (verbose > 1) {
                /* kind: the unit bits (U_*); cycles: the issue cycles (occupancy) */
                dump_insn(a, (int)x->unit, x->occ, d);
            }
            if (x->may_unalign) {
                watch_access(insn, m7_on_load, x); /* the stores skipped there */
            }
            free(d);
            if ((x->unit & U_BRANCH) && i == n - 1) {
                tail->kind = TAIL_BRANCH;
                tail->fallthrough = a + qemu_plugin_insn_size(insn);
                tail->range_cycles = x->range_cycles;
                tail->in_lo_hi = in;
                tail->branch_addr = a;
            }
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
        } else if (strcmp(argv[i], "cycles=m7") == 0) {
            model = MODEL_M7;
        } else if (strncmp(argv[i], "div=", 4) == 0) {
            div_cycles = atoi(argv[i] + 4);
        } else if (strncmp(argv[i], "verbose=", 8) == 0) {
            verbose = atoi(argv[i] + 8);
        }
    }
    if (div_cycles < 0) {
        div_cycles = model == MODEL_RV32 ? RV_DIV : model == MODEL_M7 ? M7_DIV : M4_DIV;
    }
    for (i = 0; i < M7_NREG; i++) {
        m7_t[i] = -16; /* every register ready at the start */
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, at_exit_report, NULL);
    return 0;
}
