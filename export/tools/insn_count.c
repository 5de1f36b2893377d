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
 */
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
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn,
                                                enum qemu_plugin_op op, void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                    void *userdata);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t lo, hi = UINT64_MAX, count;

#define MAX_RANGES 4096
static struct {
    char name[64];
    uint64_t lo, hi, count;
} ranges[MAX_RANGES];
static int n_ranges;

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

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t i, n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    for (i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t a = qemu_plugin_insn_vaddr(insn);
        int r;
        if (a >= lo && a < hi) {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &count, 1);
        }
        for (r = 0; r < n_ranges; r++) {
            if (a >= ranges[r].lo && a < ranges[r].hi) {
                qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                           &ranges[r].count, 1);
                break;
            }
        }
    }
}

static void at_exit_report(qemu_plugin_id_t id, void *p) {
    char buf[128];
    int r;
    (void)id;
    (void)p;
    snprintf(buf, sizeof buf, "insns %" PRIu64 "\n", count);
    qemu_plugin_outs(buf);
    for (r = 0; r < n_ranges; r++) {
        snprintf(buf, sizeof buf, "range %.63s %" PRIu64 "\n", ranges[r].name, ranges[r].count);
        qemu_plugin_outs(buf);
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
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, at_exit_report, NULL);
    return 0;
}
