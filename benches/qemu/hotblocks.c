/* Executed guest instructions per translated block, for profiling an aarch64
 * program under qemu-aarch64 (qemu 7.2, TCG plugin API version 1).
 *
 * Each translated block gets a counter that an inline add bumps on every
 * execution; at exit the blocks' start addresses, instruction counts and
 * execution counts go to $HOT_OUT (or stderr), one line per block:
 *     <vaddr hex> <insns per execution> <executions>
 * benches/qemu/profile.py maps the addresses to symbols. The plugin declares
 * the few API functions it uses itself, as ../shared/tools/qemu-insn/insn.c
 * does (a newer qemu's header has a version 7.2 refuses).
 *
 * Build: gcc -shared -fPIC -O2 -o libhotblocks.so benches/qemu/hotblocks.c
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
__attribute__((visibility("default"))) int qemu_plugin_version = 1;
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                                     void *ptr, uint64_t imm);
extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
                                                  void (*cb)(qemu_plugin_id_t, struct qemu_plugin_tb *));
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, void *),
                                           void *userdata);

struct block {
    uint64_t vaddr;
    uint64_t insns;
    uint64_t executions;
    struct block *next;
};
/* Translation runs under qemu's translation lock, so the list needs none. */
static struct block *blocks;

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    struct block *b = calloc(1, sizeof *b);
    if (!b) return;
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->insns = qemu_plugin_tb_n_insns(tb);
    b->next = blocks;
    blocks = b;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->executions, 1);
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    const char *out = getenv("HOT_OUT");
    FILE *f = out ? fopen(out, "w") : stderr;
    if (!f) return;
    for (struct block *b = blocks; b; b = b->next)
        if (b->executions)
            fprintf(f, "%" PRIx64 " %" PRIu64 " %" PRIu64 "\n", b->vaddr, b->insns, b->executions);
    if (out) fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                              int argc, char **argv) {
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
