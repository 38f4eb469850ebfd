/* transport/shm.c: collectives between the ranks of one node over one shared segment.
 *
 * Segment (one per node and generation, a named POSIX shm object that local rank 0 creates
 * and publishes in the store under "<prefix>shm/<node>", named "/baton-<launcher pid>-..."
 * (the launcher's pid from BATON_LAUNCHER_PID, else rank 0's own); the last rank to map it
 * unlinks it (a counter in the header), so nothing is left in /dev/shm once the job runs; if
 * the job dies before every rank attached, the launcher, or its watchdog, removes the name.
 * A one-node child communicator's segment is named after its parent's and its id instead
 * (bt__shm_child_name), so its members find it without the store):
 *
 *   header page   magic, local size, slot size, abort flag + message, futex sleepers
 *   ctrl[r]       one 128-byte line per local rank: sync counter, its futex word, the number
 *                 of the collective it is in, its global rank and pid, and what alltoall
 *                 publishes (block size, send buffer address, CMA failure)
 *   slots         slot[r][b]: two buffers (b = 0, 1) of slot_bytes per local rank
 *   rings         ring[f][t]: a 32 KiB byte stream from local rank f to t (point-to-point,
 *                 exchange.c), head and tail counters on their own cache lines
 *
 * Every page is faulted in at creation (MAP_POPULATE; this VM first-touches a page at ~12 us)
 * and then reused by every collective: nothing is allocated or mapped on the collective path.
 *
 * Synchronisation is one primitive, sync(): a rank raises its counter to the next value t
 * (release) and waits until every local rank's counter is >= t (acquire). All ranks pass the
 * same sequence of sync points, so counters differ by at most one. The waiter spins briefly,
 * then yields, then sleeps on the futex word of a lagging peer (woken by writers that see a
 * sleeper). While it sleeps (100 ms slices) it checks that lagging peers are alive (pidfd),
 * the node's abort flag, the timeout and stall warning, and the launcher's failure notice.
 *
 * Allreduce, one round per segment of m <= slot_bytes / esize elements, buffer b alternating:
 *   1. each rank copies its m elements into slot[me][b]                       (copy in)
 *   2. sync
 *   3. rank r reduces chunk r (bt__chunk(m, n, r)) reading chunk r of every slot[p][b], in
 *      slot order 0..n-1 (so the bits do not depend on timing), into slot[r][b]'s chunk r
 *   4. sync
 *   5. every rank copies chunk p of slot[p][b], for every p, to its output       (copy out)
 * The next round uses the other buffer, and round k+2 writes buffer b only after the first
 * sync of round k+1, which every rank passes after its copy-out of round k: two syncs per
 * round, and the copy-out of one round overlaps the copy-in of the next. Each rank's data is
 * written once (copy in) and read directly by its peers (one copy), as in Open MPI's
 * "vader" single-segment collectives and the shared-memory allreduce of Li et al., "Design and
 * evaluation of shared memory collectives" (2013). Reduce is the same with only the root
 * copying out; reduce-scatter copies in every block's slice and each rank reduces its own
 * block straight into its output (one sync per round); allgather and broadcast copy in, sync,
 * and copy out.
 */
#include <errno.h>
#include <fcntl.h>
#include <immintrin.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "collectives/reduce.h"
#include "collectives/transport/transport.h"
#include "common/log.h"
#include "common/param.h"
#include "common/hash.h"
#include "common/sock.h"

BT_PARAM_INT(slot_bytes, "BATON_SHM_SLOT_BYTES", 512 * 1024)
BT_PARAM_INT(test_seg_bytes, "BATON_TEST_SEGMENT_BYTES", 0)
BT_PARAM_INT(cma_bytes, "BATON_SHM_CMA_BYTES", 0) /* opt-in: see alltoall below */

#define SHM_MAGIC 0x314d485354414242ULL /* "BBATSHM1" */
#define SHM_HDR_BYTES 4096
#define SHM_CTRL_BYTES 128
#define SHM_MIN_SLOT 256
#define P2P_RING (32 * 1024)        /* bytes of data per point-to-point ring */
#define P2P_STRIDE (P2P_RING + 128) /* with its two counters */

struct shm_ctrl {
    _Atomic uint64_t sync;  /* sync points passed */
    _Atomic uint32_t fword; /* low 32 bits of sync, for futex waits */
    int32_t pid;            /* 0 until the rank attached */
    _Atomic uint64_t coll;  /* number of the collective the rank is in */
    int32_t rank;           /* global rank */
    _Atomic uint32_t xfail; /* alltoall: 1 once a CMA read of this rank failed */
    struct {
        _Atomic uint64_t addr;  /* this rank's send buffer, in its address space */
        _Atomic uint64_t bytes; /* its block size */
    } x[2];                     /* alltoall: [parity of the call's first sync point] */
    struct {
        _Atomic uint64_t count;
        _Atomic uint32_t what; /* kind | dtype << 8 | op << 16 */
        _Atomic int32_t root;
    } shape[2]; /* the other collectives' shape: [parity of the call's first sync point] */
};

_Static_assert(sizeof(struct shm_ctrl) <= SHM_CTRL_BYTES, "a control line is 128 bytes");

struct shm_hdr {
    uint64_t magic;
    uint32_t local_size;
    uint32_t pad;
    uint64_t slot_bytes;
    _Atomic uint32_t sleepers; /* ranks sleeping on a futex word */
    _Atomic uint32_t attached; /* ranks that mapped the segment (the last removes the name) */
    _Atomic uint32_t abort;    /* set once by the first rank whose collective failed */
    char abort_msg[BT__ERR_MSG_MAX];
};

struct bt__shm {
    char *base; /* the mapping */
    size_t bytes;
    size_t slot_bytes; /* per buffer */
    int n, me;
    uint64_t syncs;    /* sync points passed by this rank */
    uint64_t round;    /* rounds run: buffer = round & 1 */
    int *pidfd;        /* [n], -1 until opened */
    const void **srcs; /* [n], reduction sources */
    size_t cma_min;    /* alltoall blocks of at least this many bytes go by CMA; 0: never */
    int cma_fail_test; /* BATON_TEST_CMA_FAIL: this rank's CMA reads fail as EPERM would */
    uint64_t key;      /* a one-node split's child: its members and this rank (bt__shm_key) */
    int p2p_used;      /* a ring of this rank was written or read: not kept for reuse */
    char name[96];
};

static struct shm_hdr *hdr(struct bt__shm *s)
{
    return (struct shm_hdr *)(void *)s->base;
}

static struct shm_ctrl *ctrl(struct bt__shm *s, int r)
{
    return (struct shm_ctrl *)(void *)(s->base + SHM_HDR_BYTES + (size_t)r * SHM_CTRL_BYTES);
}

/* Byte offset of slot[r][b] in the segment; slot_off(s, n, 0) is the segment's size. */
static size_t slot_off(const struct bt__shm *s, int r, int b)
{
    size_t data = SHM_HDR_BYTES + (((size_t)s->n * SHM_CTRL_BYTES + 4095) & ~(size_t)4095);
    return data + ((size_t)r * 2 + (size_t)b) * s->slot_bytes;
}

static char *slot(struct bt__shm *s, int r, int b)
{
    return s->base + slot_off(s, r, b);
}

/* ---- waiting ---- */

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

/* 1 when local rank p's process has exited (pidfd readable, or gone). */
static int peer_dead(struct bt__shm *s, int p)
{
    int pid = ctrl(s, p)->pid;
    if (pid <= 0 || pid == getpid())
        return 0;
    if (s->pidfd[p] < 0) {
        s->pidfd[p] = (int)syscall(SYS_pidfd_open, pid, 0);
        if (s->pidfd[p] < 0)
            return errno == ESRCH || (kill(pid, 0) != 0 && errno == ESRCH);
    }
    struct pollfd pfd = {.fd = s->pidfd[p], .events = POLLIN};
    return poll(&pfd, 1, 0) == 1;
}

struct lag {
    struct bt__shm *s;
    uint64_t target;
    int first_rank; /* global rank of local rank 0: the node's ranks are contiguous */
};

/* "2 (pid 9, at collective #4)" per lagging local rank. A rank that never attached has a
 * zeroed control line: it is named by its place in the node, not by that line. */
static void lagging_names(void *arg, char *out, size_t cap)
{
    struct lag *l = arg;
    size_t n = 0;
    out[0] = '\0';
    for (int p = 0; p < l->s->n && n + 48 < cap; p++) {
        struct shm_ctrl *pc = ctrl(l->s, p);
        if (atomic_load_explicit(&pc->sync, memory_order_acquire) >= l->target)
            continue;
        if (pc->pid == 0)
            n += (size_t)snprintf(out + n, cap - n, "%s%d (never reached bt_init)", n ? ", " : "",
                                  l->first_rank + p);
        else
            n += (size_t)snprintf(out + n, cap - n, "%s%d (pid %d, at collective #%llu)",
                                  n ? ", " : "", pc->rank, pc->pid,
                                  (unsigned long long)atomic_load(&pc->coll));
    }
}

/* Index of the first local rank below target, or -1 when all have arrived. */
static int first_lagging(struct bt__shm *s, uint64_t target)
{
    for (int p = 0; p < s->n; p++)
        if (atomic_load_explicit(&ctrl(s, p)->sync, memory_order_acquire) < target)
            return p;
    return -1;
}

/* The checks made while sleeping: abort flag, dead peers, timeout, stall, launcher notice. */
static int slow_checks(struct bt_comm *c, struct bt__wait *w, struct lag *l)
{
    struct bt__shm *s = c->shm;
    if (atomic_load(&hdr(s)->abort))
        return bt__comm_fail(c, BT_ERR_REMOTE, "%s #%llu: a rank of this node failed: %s",
                             c->coll_name, (unsigned long long)c->coll_seq, hdr(s)->abort_msg);
    for (int p = 0; p < s->n; p++)
        if (atomic_load(&ctrl(s, p)->sync) < l->target && peer_dead(s, p))
            return bt__comm_fail(c, BT_ERR_REMOTE,
                                 "%s #%llu: rank %d (pid %d, this node) died; hint: see its "
                                 "exit status in the launcher's report",
                                 c->coll_name, (unsigned long long)c->coll_seq, ctrl(s, p)->rank,
                                 ctrl(s, p)->pid);
    return bt__wait_tick(c, w, lagging_names, l);
}

static void sleep_on(struct bt__shm *s, int p, uint64_t target)
{
    struct shm_ctrl *pc = ctrl(s, p);
    struct timespec ts = {0, 100000000L};
    atomic_fetch_add(&hdr(s)->sleepers, 1);
    uint32_t v = atomic_load(&pc->fword);
    if (atomic_load(&pc->sync) < target && v != (uint32_t)target)
        futex(&pc->fword, FUTEX_WAIT, v, &ts);
    atomic_fetch_sub(&hdr(s)->sleepers, 1);
}

/* Waits until every local rank passed sync point target: spin, yield, then futex sleep. */
static int wait_all(struct bt_comm *c, uint64_t target)
{
    struct bt__shm *s = c->shm;
    for (int i = 0; i < 512; i++) {
        if (first_lagging(s, target) < 0)
            return BT_OK;
        _mm_pause();
    }
    int64_t t0 = bt__now_ns();
    struct bt__wait w;
    struct lag l = {s, target, c->rank - c->local_rank};
    int started = 0;
    for (;;) {
        int p = first_lagging(s, target);
        if (p < 0)
            return BT_OK;
        int64_t waited = bt__now_ns() - t0;
        if (waited < 50000) {
            sched_yield();
            continue;
        }
        if (!started) {
            bt__wait_start(c, &w);
            w.start_ns = t0;
            started = 1;
        }
        BT_CHECK(slow_checks(c, &w, &l));
        sleep_on(s, p, target);
    }
}

/* The first half of a sync: this rank passes the next sync point; returns it, for wait_all. */
static uint64_t shm_arrive(struct bt_comm *c)
{
    struct bt__shm *s = c->shm;
    struct shm_ctrl *me = ctrl(s, s->me);
    uint64_t t = ++s->syncs;
    atomic_store(&me->sync, t);
    atomic_store(&me->fword, (uint32_t)t);
    if (atomic_load(&hdr(s)->sleepers))
        futex(&me->fword, FUTEX_WAKE, INT32_MAX, NULL);
    return t;
}

static int shm_sync(struct bt_comm *c)
{
    return wait_all(c, shm_arrive(c));
}

static void enter(struct bt_comm *c)
{
    atomic_store_explicit(&ctrl(c->shm, c->shm->me)->coll, c->coll_seq, memory_order_relaxed);
}

enum { SHAPE_REDUCE = 1, SHAPE_REDUCE_SCATTER, SHAPE_ALLGATHER, SHAPE_BROADCAST, SHAPE_BARRIER };

/* enter, and publish the call's shape for the first sync point's check (check_shape): what
 * the first sync point publishes is read by every peer before any rank can pass the sync
 * point after the next, which is the next one of that parity. */
static void enter_shape(struct bt_comm *c, const struct bt__coll_args *a, int kind)
{
    struct bt__shm *s = c->shm;
    struct shm_ctrl *me = ctrl(s, s->me);
    int par = (int)((s->syncs + 1) & 1);
    enter(c);
    atomic_store_explicit(&me->shape[par].count, a ? a->count : 0, memory_order_relaxed);
    atomic_store_explicit(&me->shape[par].what,
                          (uint32_t)kind |
                              (a ? (uint32_t)a->dtype << 8 | (uint32_t)a->op << 16 : 0),
                          memory_order_relaxed);
    atomic_store_explicit(&me->shape[par].root, a ? a->root : 0, memory_order_relaxed);
}

/* After the call's first sync point: every local rank called the same collective with the
 * same count, dtype, op and root, or the call fails on every rank (each sees the others'
 * shapes) with BT_ERR_INVALID_USAGE instead of a wrong result or a hang. */
static int check_shape(struct bt_comm *c)
{
    struct bt__shm *s = c->shm;
    int par = (int)(s->syncs & 1);
    struct shm_ctrl *me = ctrl(s, s->me);
    uint64_t n0 = atomic_load_explicit(&me->shape[par].count, memory_order_relaxed);
    uint32_t w0 = atomic_load_explicit(&me->shape[par].what, memory_order_relaxed);
    int32_t r0 = atomic_load_explicit(&me->shape[par].root, memory_order_relaxed);
    for (int p = 0; p < s->n; p++) {
        struct shm_ctrl *x = ctrl(s, p);
        uint64_t n = atomic_load_explicit(&x->shape[par].count, memory_order_relaxed);
        uint32_t w = atomic_load_explicit(&x->shape[par].what, memory_order_relaxed);
        int32_t r = atomic_load_explicit(&x->shape[par].root, memory_order_relaxed);
        if (n != n0 || w != w0 || r != r0)
            return bt__comm_fail(
                c, BT_ERR_INVALID_USAGE,
                "%s #%llu on communicator %s: rank %d called it with count %llu, dtype %u, op "
                "%u, root %d, this rank with count %llu, dtype %u, op %u, root %d (dtype and op: "
                "the bt_dtype and bt_op values of baton.h; root: a local rank, -1 for all)%s; "
                "hint: every rank passes the same count, dtype, op and root",
                c->coll_name, (unsigned long long)c->coll_seq, c->name, x->rank,
                (unsigned long long)n, w >> 8 & 0xff, w >> 16 & 0xff, r, (unsigned long long)n0,
                w0 >> 8 & 0xff, w0 >> 16 & 0xff, r0,
                (w & 0xff) != (w0 & 0xff) ? ", and another collective" : "");
    }
    return BT_OK;
}

/* A sync point; the call's first also checks the shapes. */
static int shm_sync_call(struct bt_comm *c, int first)
{
    BT_CHECK(shm_sync(c));
    return first ? check_shape(c) : BT_OK;
}

/* ---- the collectives ---- */

/* A reduction whose slots hold at most this many bytes in all takes one sync, not two: every
 * rank (or the root) reduces the whole vector from all slots itself. It reads n times what the
 * chunked path reads, which pays only while a sync costs more than that. */
#define ONE_SYNC_BYTES 16384

static int shm_reduce(struct bt_comm *c, const struct bt__coll_args *a)
{
    struct bt__shm *s = c->shm;
    size_t es = bt_dtype_size(a->dtype), seg = s->slot_bytes / es;
    enter_shape(c, a, SHAPE_REDUCE);
    for (size_t off = 0; off < a->count; off += seg) {
        size_t m = a->count - off < seg ? a->count - off : seg, co, cl;
        int b = (int)(s->round++ & 1);
        memcpy(slot(s, s->me, b), (const char *)a->send + off * es, m * es);
        BT_CHECK(shm_sync_call(c, off == 0));
        if (m * es * (size_t)s->n <= ONE_SYNC_BYTES) {
            /* The same sources in the same order as the chunked path below: the same bits. No
             * rank writes slot b again before every rank has passed the next call's sync, so
             * the reads need no second one. */
            if (a->root >= 0 && a->root != s->me)
                continue;
            for (int p = 0; p < s->n; p++)
                s->srcs[p] = slot(s, p, b);
            bt__reduce_n(a->dtype, a->op, (char *)a->recv + off * es, s->srcs, s->n, m, a->div);
            continue;
        }
        bt__chunk(m, s->n, s->me, &co, &cl);
        for (int p = 0; p < s->n; p++)
            s->srcs[p] = slot(s, p, b) + co * es;
        bt__reduce_n(a->dtype, a->op, slot(s, s->me, b) + co * es, s->srcs, s->n, cl, a->div);
        BT_CHECK(shm_sync(c));
        if (a->root >= 0 && a->root != s->me)
            continue;
        for (int p = 0; p < s->n; p++) {
            bt__chunk(m, s->n, p, &co, &cl);
            memcpy((char *)a->recv + (off + co) * es, slot(s, p, b) + co * es, cl * es);
        }
    }
    return BT_OK;
}

static int shm_reduce_scatter(struct bt_comm *c, const struct bt__coll_args *a)
{
    struct bt__shm *s = c->shm;
    size_t es = bt_dtype_size(a->dtype), seg = s->slot_bytes / es / (size_t)s->n;
    enter_shape(c, a, SHAPE_REDUCE_SCATTER);
    for (size_t off = 0; off < a->count; off += seg) {
        size_t m = a->count - off < seg ? a->count - off : seg;
        int b = (int)(s->round++ & 1);
        for (int p = 0; p < s->n; p++)
            memcpy(slot(s, s->me, b) + (size_t)p * m * es,
                   (const char *)a->send + ((size_t)p * a->count + off) * es, m * es);
        BT_CHECK(shm_sync_call(c, off == 0));
        for (int p = 0; p < s->n; p++)
            s->srcs[p] = slot(s, p, b) + (size_t)s->me * m * es;
        bt__reduce_n(a->dtype, a->op, (char *)a->recv + off * es, s->srcs, s->n, m, a->div);
    }
    return BT_OK;
}

static int shm_allgather(struct bt_comm *c, const struct bt__coll_args *a)
{
    struct bt__shm *s = c->shm;
    size_t es = bt_dtype_size(a->dtype), seg = s->slot_bytes / es;
    enter_shape(c, a, SHAPE_ALLGATHER);
    for (size_t off = 0; off < a->count; off += seg) {
        size_t m = a->count - off < seg ? a->count - off : seg;
        int b = (int)(s->round++ & 1);
        memcpy(slot(s, s->me, b), (const char *)a->send + off * es, m * es);
        BT_CHECK(shm_sync_call(c, off == 0));
        for (int p = 0; p < s->n; p++)
            memcpy((char *)a->recv + ((size_t)p * a->count + off) * es, slot(s, p, b), m * es);
    }
    return BT_OK;
}

static int shm_broadcast(struct bt_comm *c, const struct bt__coll_args *a)
{
    struct bt__shm *s = c->shm;
    size_t es = bt_dtype_size(a->dtype), seg = s->slot_bytes / es;
    enter_shape(c, a, SHAPE_BROADCAST);
    for (size_t off = 0; off < a->count; off += seg) {
        size_t m = a->count - off < seg ? a->count - off : seg;
        int b = (int)(s->round++ & 1);
        char *buf = (char *)a->recv + off * es;
        if (s->me == a->root)
            memcpy(slot(s, a->root, b), buf, m * es);
        BT_CHECK(shm_sync_call(c, off == 0));
        if (s->me != a->root)
            memcpy(buf, slot(s, a->root, b), m * es);
    }
    return BT_OK;
}

static int shm_barrier(struct bt_comm *c)
{
    enter_shape(c, NULL, SHAPE_BARRIER);
    return shm_sync_call(c, 1);
}

void bt__shm_abort(struct bt_comm *c, const char *msg)
{
    struct bt__shm *s = c->shm;
    if (!s)
        return;
    uint32_t expected = 0;
    struct shm_hdr *h = hdr(s);
    if (atomic_compare_exchange_strong(&h->abort, &expected, 2)) {
        snprintf(h->abort_msg, sizeof(h->abort_msg), "rank %d: %s", c->rank, msg);
        atomic_store(&h->abort, 1);
    }
    for (int p = 0; p < s->n; p++)
        futex(&ctrl(s, p)->fword, FUTEX_WAKE, INT32_MAX, NULL);
}

/* ---- alltoall (exchange.c runs bt_alltoall here when every rank is on this node) ----
 * Every call starts the same way: each rank writes its block size and its send buffer's
 * address into x[t & 1] of its control line, t being the sync point it is about to pass, and
 * syncs; then every rank checks the block sizes (all read the same values, so on a mismatch
 * all fail, naming the counts). A rank is never two sync points ahead of another, so x[t & 1]
 * is not overwritten before every rank has read it. Then, by block size (now the same on
 * every rank), one of two paths:
 *
 * - slots (blocks below cma_min, BATON_SHM_CMA_BYTES, which is 0 (never CMA) by default, or
 *   CMA unavailable): rounds of m bytes of every block, (n - 1) * m <= slot_bytes, buffer b
 *   alternating as in allreduce: each rank copies bytes [off, off + m) of its block for peer
 *   p into slot[me][b] (the pieces for its n - 1 peers in rank order, its own skipped), then
 *   passes the sync point, copies the same bytes of its own block straight from send to recv
 *   (while a later peer is still copying in), waits for the others, and copies the piece each
 *   peer p left for it in slot[p][b] into its receive block p. The copy-in of round k + 2
 *   into buffer b comes after the sync of round k + 1, which every rank passes only after its
 *   copy-out of round k: one sync per round. The first round's copy-in is made before the
 *   checking sync, so a call with (n - 1) * blk <= slot_bytes has one sync in all (the
 *   small-message path). Two copies per byte that crosses to a peer, one per byte of the
 *   rank's own block (through the slots too, until 2026-12-02: at 2 ranks that was 4/3 of
 *   the copying, and blk <= slot_bytes / n rather than / (n - 1) per round).
 * - CMA (cross-memory attach): each rank reads its block of every peer's send buffer straight
 *   into its receive buffer with process_vm_readv(2), one copy per byte made by the kernel
 *   (as Open MPI's vader does for large messages), peers in the order me + 1, me + 2, ... so
 *   that ranks read from different peers; then it syncs again, so that no rank returns (and
 *   reuses its send buffer) while a peer still reads it: two syncs per call. The kernel
 *   allows the read when this rank may ptrace the peer (same user and dumpable; under Yama
 *   ptrace_scope 1 only a designated or ancestor process, which sibling ranks are not; never
 *   under ptrace_scope 2 without CAP_SYS_PTRACE; a seccomp filter may forbid the call). A
 *   rank whose read fails raises xfail in its line before the second sync; after that sync
 *   every rank sees it, turns CMA off on this communicator for good (the failing rank logs a
 *   WARN) and runs the call again over the slots: the send buffers are intact and every rank
 *   is still in the call.
 *
 * Why CMA is not the default: on this 2-core VM it is slower than the slots. Under load
 * (2026-12-02, load average 9-14, `exchange_bench --op alltoall`, 2 ranks bound, interleaved)
 * the slots were as fast as CMA at 256-512 KiB and faster from 1 MiB up (4 MiB: 224-365 us
 * against 905-8,392 us; single process_vm_readv calls of 2 MiB took 0.34 to 43 ms); quiet
 * (17:58 UTC, 5 interleaved rounds, 2 ranks unbound, totals per rank), the slots with the
 * own block copied directly took 43.5 us at 1 MiB, 189 us at 4 MiB and 1.24 ms at 16 MiB,
 * CMA from 64 KiB blocks 65.5 us, 307 us and 2.74 ms.
 */

struct a2a {
    const char *send;
    char *recv;
    size_t blk; /* bytes per block */
};

/* Bytes of every block per slot round: a round carries one piece for each of the n - 1 peers
 * (a rank's own block never goes through the slots). */
static size_t a2a_seg(const struct bt__shm *s, size_t blk)
{
    size_t m = s->slot_bytes / (size_t)(s->n > 1 ? s->n - 1 : 1);
    if (m >= 64)
        m &= ~(size_t)63;
    m = m ? m : 1;
    return m < blk ? m : blk;
}

/* Where writer w puts the piece for reader p in its slot: peers in rank order, w skipped. */
static size_t a2a_at(int w, int p, size_t m)
{
    return (size_t)(p < w ? p : p - 1) * m;
}

static void a2a_in(struct bt__shm *s, const struct a2a *x, size_t off, size_t m, int b)
{
    for (int p = 0; p < s->n && m; p++)
        if (p != s->me)
            memcpy(slot(s, s->me, b) + a2a_at(s->me, p, m), x->send + (size_t)p * x->blk + off, m);
}

static void a2a_out(struct bt__shm *s, const struct a2a *x, size_t off, size_t m, int b)
{
    for (int k = 1; k < s->n; k++) {
        int p = (s->me + k) % s->n;
        memcpy(x->recv + (size_t)p * x->blk + off, slot(s, p, b) + a2a_at(p, s->me, m), m);
    }
}

/* This rank's own block, bytes [off, off + m): straight from send to recv. It runs between a
 * rank's arrival at a sync point and its wait there, so it fills the time the rank would
 * otherwise spend waiting for a later peer. */
static void a2a_self(struct bt__shm *s, const struct a2a *x, size_t off, size_t m)
{
    size_t at = (size_t)s->me * x->blk + off;
    memcpy(x->recv + at, x->send + at, m);
}

/* The slot rounds; the first one's copy-in and sync are done when b0 >= 0 (its buffer, and
 * the own block's first piece copied). */
static int a2a_slots(struct bt_comm *c, const struct a2a *x, int b0)
{
    struct bt__shm *s = c->shm;
    size_t seg = a2a_seg(s, x->blk);
    for (size_t off = 0; off < x->blk; off += seg) {
        size_t m = x->blk - off < seg ? x->blk - off : seg;
        int b = b0;
        if (off > 0 || b0 < 0) {
            b = (int)(s->round++ & 1);
            a2a_in(s, x, off, m, b);
            uint64_t t = shm_arrive(c);
            a2a_self(s, x, off, m);
            BT_CHECK(wait_all(c, t));
        }
        a2a_out(s, x, off, m, b);
    }
    return BT_OK;
}

static int a2a_check(struct bt_comm *c, int par, size_t blk)
{
    struct bt__shm *s = c->shm;
    for (int p = 0; p < s->n; p++) {
        uint64_t b = atomic_load_explicit(&ctrl(s, p)->x[par].bytes, memory_order_relaxed);
        if (b != blk)
            return bt__comm_fail(c, BT_ERR_INVALID_USAGE,
                                 "%s #%llu on communicator %s: rank %d's blocks have %llu bytes, "
                                 "this rank's %zu; hint: every rank passes the same count",
                                 c->coll_name, (unsigned long long)c->coll_seq, c->name,
                                 ctrl(s, p)->rank, (unsigned long long)b, blk);
    }
    return BT_OK;
}

/* Reads len bytes at src in process pid into dst; 0 or the errno. */
static int cma_read(struct bt__shm *s, pid_t pid, char *dst, uint64_t src, size_t len)
{
    if (s->cma_fail_test)
        return EPERM;
    for (size_t done = 0; done < len;) {
        struct iovec l = {dst + done, len - done};
        struct iovec r = {(void *)(uintptr_t)(src + done), len - done};
        ssize_t k = process_vm_readv(pid, &l, 1, &r, 1, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? errno : EFAULT;
        done += (size_t)k;
    }
    return 0;
}

static int a2a_cma(struct bt_comm *c, const struct a2a *x, int par)
{
    struct bt__shm *s = c->shm;
    int e = 0, p = s->me;
    memcpy(x->recv + (size_t)s->me * x->blk, x->send + (size_t)s->me * x->blk, x->blk);
    for (int k = 1; k < s->n && !e; k++) {
        p = (s->me + k) % s->n;
        uint64_t a = atomic_load_explicit(&ctrl(s, p)->x[par].addr, memory_order_relaxed);
        e = cma_read(s, ctrl(s, p)->pid, x->recv + (size_t)p * x->blk, a + (uint64_t)s->me * x->blk,
                     x->blk);
    }
    if (e) {
        atomic_store(&ctrl(s, s->me)->xfail, 1);
        BT_WARN(SHM,
                "%s on communicator %s: process_vm_readv from rank %d (pid %d): %s; alltoall "
                "copies through the shared segment from now on; hint: cross-memory attach needs "
                "ptrace access to the peer (Yama ptrace_scope 0, or CAP_SYS_PTRACE)",
                c->coll_name, c->name, ctrl(s, p)->rank, ctrl(s, p)->pid, strerror(e));
    }
    BT_CHECK(shm_sync(c));
    int failed = 0;
    for (int q = 0; q < s->n; q++)
        failed |= (int)atomic_load(&ctrl(s, q)->xfail);
    if (!failed)
        return BT_OK;
    s->cma_min = 0;
    return a2a_slots(c, x, -1);
}

int bt__shm_alltoall(struct bt_comm *c, const void *send, void *recv, size_t blk)
{
    struct bt__shm *s = c->shm;
    struct shm_ctrl *me = ctrl(s, s->me);
    struct a2a x = {send, recv, blk};
    int cma = s->cma_min && blk >= s->cma_min, par = (int)((s->syncs + 1) & 1), b = -1;
    enter(c);
    atomic_store_explicit(&me->x[par].addr, (uint64_t)(uintptr_t)send, memory_order_relaxed);
    atomic_store_explicit(&me->x[par].bytes, blk, memory_order_relaxed);
    if (!cma) {
        b = (int)(s->round++ & 1);
        a2a_in(s, &x, 0, a2a_seg(s, blk), b);
    }
    uint64_t t = shm_arrive(c);
    if (!cma)
        a2a_self(s, &x, 0, a2a_seg(s, blk));
    BT_CHECK(wait_all(c, t));
    BT_CHECK(a2a_check(c, par, blk));
    return cma ? a2a_cma(c, &x, par) : a2a_slots(c, &x, b);
}

/* ---- point-to-point rings (exchange.c) ----
 * After the slots, one ring per ordered pair of local ranks: ring(f, t) carries the byte
 * stream from f to t. head (bytes ever written, by f) and tail (bytes ever read, by t) sit on
 * their own cache lines; f may write while head - tail < P2P_RING. Single producer, single
 * consumer: release on the counter a side publishes, acquire on the one it reads. */

struct p2p_ring {
    _Atomic uint64_t head;
    char pad1[56];
    _Atomic uint64_t tail;
    char pad2[56];
    char data[];
};

static struct p2p_ring *ring(struct bt__shm *s, int from, int to)
{
    size_t off = slot_off(s, s->n, 0) + ((size_t)from * (size_t)s->n + (size_t)to) * P2P_STRIDE;
    return (struct p2p_ring *)(void *)(s->base + off);
}

int bt__shm_p2p_move(struct bt_comm *c, int lpeer, int send, char *buf, size_t len, size_t *off)
{
    struct bt__shm *s = c->shm;
    struct p2p_ring *r = send ? ring(s, s->me, lpeer) : ring(s, lpeer, s->me);
    s->p2p_used = 1;
    uint64_t head = atomic_load_explicit(&r->head,
                                         send ? memory_order_relaxed : memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&r->tail,
                                         send ? memory_order_acquire : memory_order_relaxed);
    size_t room = send ? P2P_RING - (size_t)(head - tail) : (size_t)(head - tail);
    size_t n = len - *off < room ? len - *off : room;
    uint64_t pos = send ? head : tail;
    for (size_t done = 0; done < n;) {
        size_t at = (size_t)((pos + done) % P2P_RING), k = n - done;
        k = k < P2P_RING - at ? k : P2P_RING - at;
        if (send)
            memcpy(r->data + at, buf + *off + done, k);
        else
            memcpy(buf + *off + done, r->data + at, k);
        done += k;
    }
    if (n && send)
        atomic_store_explicit(&r->head, head + n, memory_order_release);
    else if (n)
        atomic_store_explicit(&r->tail, tail + n, memory_order_release);
    *off += n;
    return BT_OK;
}

int bt__shm_p2p_check(struct bt_comm *c, int lpeer)
{
    struct bt__shm *s = c->shm;
    if (atomic_load(&hdr(s)->abort))
        return bt__comm_fail(c, BT_ERR_REMOTE, "%s #%llu: a rank of this node failed: %s",
                             c->coll_name, (unsigned long long)c->coll_seq, hdr(s)->abort_msg);
    if (peer_dead(s, lpeer))
        return bt__comm_fail(c, BT_ERR_REMOTE,
                             "%s #%llu on communicator %s: rank %d (pid %d, this node) died; "
                             "hint: see its exit status in the launcher's report",
                             c->coll_name, (unsigned long long)c->coll_seq, c->name,
                             ctrl(s, lpeer)->rank, ctrl(s, lpeer)->pid);
    return BT_OK;
}

/* ---- setup ---- */

static int map_segment(struct bt_comm *c, struct bt__shm *s, int create)
{
    int fd = shm_open(s->name, O_RDWR | (create ? O_CREAT | O_EXCL : 0), 0600);
    if (fd < 0)
        return bt__err_set(&c->err, BT_ERR_SYSTEM, "shm_open %s: %s", s->name, strerror(errno));
    if (create && ftruncate(fd, (off_t)s->bytes) != 0) {
        int e = errno;
        close(fd);
        shm_unlink(s->name);
        return bt__err_set(&c->err, BT_ERR_SYSTEM,
                           "ftruncate %s to %zu bytes: %s; hint: is /dev/shm large enough?",
                           s->name, s->bytes, strerror(e));
    }
    void *p = mmap(NULL, s->bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return bt__err_set(&c->err, BT_ERR_SYSTEM, "mmap %s (%zu bytes): %s", s->name, s->bytes,
                           strerror(errno));
    s->base = p;
    return BT_OK;
}

/* The pid a segment's name starts with: the launcher's (BATON_LAUNCHER_PID, which `baton run`
 * gives every worker), so that it can remove the name of a job that died before every rank
 * attached whatever process created it; else this process's own. */
static pid_t owner_pid(void)
{
    const char *v = getenv("BATON_LAUNCHER_PID");
    char *end;
    long pid = v ? strtol(v, &end, 10) : 0;
    return v && *v && !*end && pid > 0 && pid <= INT32_MAX ? (pid_t)pid : getpid();
}

static int check_header(struct bt_comm *c, struct bt__shm *s)
{
    if (__atomic_load_n(&hdr(s)->magic, __ATOMIC_ACQUIRE) != SHM_MAGIC ||
        hdr(s)->local_size != (uint32_t)s->n || hdr(s)->slot_bytes != s->slot_bytes)
        return bt__err_set(&c->err, BT_ERR_INVALID_USAGE,
                           "shm segment %s: local size %u or slot size %llu differs from ours "
                           "(%d, %zu); hint: every rank needs the same BATON_SHM_SLOT_BYTES",
                           s->name, hdr(s)->local_size, (unsigned long long)hdr(s)->slot_bytes,
                           s->n, s->slot_bytes);
    return BT_OK;
}

/* A one-node child's segment, whose name its members derived alike (bt__shm_child_name),
 * so no store round trip: local rank 0 creates it and writes the header, magic last; the
 * others open it as soon as it exists at its full size and wait for the magic (spin, then
 * sleeps growing to 1 ms, bounded by BATON_TIMEOUT). */
static int attach_named(struct bt_comm *c, struct bt__shm *s, const char *name)
{
    snprintf(s->name, sizeof(s->name), "%s", name);
    if (s->me == 0) {
        BT_CHECK(map_segment(c, s, 1));
        hdr(s)->local_size = (uint32_t)s->n;
        hdr(s)->slot_bytes = s->slot_bytes;
        __atomic_store_n(&hdr(s)->magic, SHM_MAGIC, __ATOMIC_RELEASE);
        return BT_OK;
    }
    int64_t deadline = bt__now_ns() + (int64_t)(bt__comm_timeout_s() * 1e9);
    for (long pause_us = 1;; pause_us = pause_us < 1000 ? pause_us * 2 : 1000) {
        struct stat st;
        int fd = s->base ? -1 : shm_open(s->name, O_RDWR, 0600);
        int sized = fd >= 0 && fstat(fd, &st) == 0 && (size_t)st.st_size >= s->bytes;
        if (fd >= 0)
            close(fd);
        if (sized && !s->base)
            BT_CHECK(map_segment(c, s, 0));
        if (s->base && __atomic_load_n(&hdr(s)->magic, __ATOMIC_ACQUIRE) == SHM_MAGIC)
            return check_header(c, s);
        if (fd < 0 && !s->base && errno != ENOENT)
            return bt__err_set(&c->err, BT_ERR_SYSTEM, "shm_open %s: %s", s->name, strerror(errno));
        if (bt__now_ns() > deadline)
            return bt__err_set(&c->err, BT_ERR_TIMEOUT,
                               "waiting %.0f s for local rank 0 to create shm segment %s; hint: "
                               "did it die? see its log",
                               bt__comm_timeout_s(), s->name);
        struct timespec ts = {0, pause_us * 1000};
        nanosleep(&ts, NULL);
    }
}

void bt__shm_child_name(const struct bt_comm *p, uint64_t id, char *out, size_t cap)
{
    uint64_t h = bt__fnv1a_str(BT_FNV1A_INIT, p->shm ? p->shm->name : "");
    h = bt__fnv1a(h, &id, sizeof(id));
    snprintf(out, cap, "/baton-%d-c%016llx-g%d-n%d", (int)owner_pid(), (unsigned long long)h,
             p->generation, p->node_rank);
}

/* Local rank 0 creates and publishes the segment; the others look its name up. */
static int attach(struct bt_comm *c, struct bt__shm *s, const char *name)
{
    char key[96];
    if (name)
        return attach_named(c, s, name);
    snprintf(key, sizeof(key), "%sshm/%d", c->prefix, c->node_rank);
    if (s->me == 0) {
        snprintf(s->name, sizeof(s->name), "/baton-%d-%llx-g%d-n%d", (int)owner_pid(),
                 (unsigned long long)bt__now_ns(), c->generation, c->node_rank);
        BT_CHECK(map_segment(c, s, 1));
        hdr(s)->magic = SHM_MAGIC;
        hdr(s)->local_size = (uint32_t)s->n;
        hdr(s)->slot_bytes = s->slot_bytes;
        if (bt__store_set(c->store, key, s->name, strlen(s->name)) != BT_OK)
            return bt__err_set(&c->err, BT_ERR_REMOTE, "publishing the shm segment: %s",
                               bt__store_error(c->store));
        return BT_OK;
    }
    void *v = NULL;
    size_t len;
    if (bt__store_get(c->store, key, &v, &len, bt__comm_timeout_s()) != BT_OK)
        return bt__err_set(&c->err, BT_ERR_REMOTE, "waiting for local rank 0's shm segment: %s",
                           bt__store_error(c->store));
    snprintf(s->name, sizeof(s->name), "%s", (char *)v);
    free(v);
    BT_CHECK(map_segment(c, s, 0));
    return check_header(c, s);
}

/* Marks this rank attached (a counter in the header, no store round trip); the last one to
 * attach removes the name. */
static int announce(struct bt_comm *c, struct bt__shm *s)
{
    struct shm_ctrl *me = ctrl(s, s->me);
    me->rank = c->rank;
    me->pid = (int32_t)getpid();
    if (atomic_fetch_add(&hdr(s)->attached, 1) + 1 == (uint32_t)s->n)
        shm_unlink(s->name);
    return BT_OK;
}

static size_t pick_slot_bytes(size_t want)
{
    if (!want)
        want = (size_t)(bt__param_test_seg_bytes() > 0 ? bt__param_test_seg_bytes()
                                                       : bt__param_slot_bytes());
    if (want < SHM_MIN_SLOT)
        want = SHM_MIN_SLOT;
    return (want + 63) & ~(size_t)63;
}

/* ---- reuse of a destroyed child's segment ----
 * Creating a segment costs milliseconds on this VM (every page is faulted in, ~12 us each, and
 * unmapped at the end), which is most of what a one-node bt_comm_split or bt_comm_dup takes. So
 * when a one-node split's child is destroyed cleanly, each member keeps its mapping in a small
 * per-process pool (POOL_MAX entries, the least recently kept one unmapped when full) under the
 * child's key: its generation, slot size, the world ranks of its members in order and this
 * rank's. A later split whose child has the same key on this rank takes the entry out of the
 * pool (bt__shm_pool_take) and offers its token (a hash of the segment's name) to the others in
 * the split's second allgather (split.c); when every member offered the same token, every
 * member has destroyed the old child, so nobody uses the segment, and the child runs on it
 * (bt__shm_create with reuse). Otherwise each member gives its entry back to the pool.
 *
 * What makes the old segment's state right for the new child: every member ran the same calls
 * on the old child without an error (a rank keeps its mapping only when its communicator has
 * no sticky error and the node no abort), so all sync counters are equal and every rank's
 * struct still holds its count and buffer parity; the point-to-point rings are empty because a
 * rank that ever used one does not keep the segment, so an offer from every member means no
 * member wrote one; a CMA failure flag of the old child (xfail) is cleared by its own rank
 * before its first sync on the new child, which every peer passes before reading it. */
#define POOL_MAX 8

static struct pool_ent {
    uint64_t key, token, when;
    struct bt__shm *s;
} pool[POOL_MAX];
static uint64_t pool_clock;
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t seg_token(const struct bt__shm *s)
{
    return bt__fnv1a_str(BT_FNV1A_INIT, s->name) | 1;
}

static void shm_free(struct bt__shm *s)
{
    if (s->base)
        munmap(s->base, s->bytes);
    for (int p = 0; s->pidfd && p < s->n; p++)
        if (s->pidfd[p] >= 0)
            close(s->pidfd[p]);
    free(s->pidfd);
    free(s->srcs);
    free(s);
}

uint64_t bt__shm_key(const struct bt_comm *p, int n, const int *world_of, int me)
{
    uint64_t k = bt__fnv1a(BT_FNV1A_INIT, &p->generation, sizeof(p->generation));
    size_t slot = pick_slot_bytes(p->shm_slot_req);
    k = bt__fnv1a(k, &slot, sizeof(slot));
    k = bt__fnv1a(k, &n, sizeof(n));
    k = bt__fnv1a(k, world_of, sizeof(int) * (size_t)n);
    return bt__fnv1a(k, &me, sizeof(me)) | 1;
}

struct bt__shm *bt__shm_pool_take(uint64_t key, uint64_t *token)
{
    struct bt__shm *s = NULL;
    int best = -1;
    pthread_mutex_lock(&pool_mu);
    for (int i = 0; i < POOL_MAX; i++)
        if (pool[i].s && pool[i].key == key && (best < 0 || pool[i].token < pool[best].token))
            best = i;
    if (best >= 0) {
        s = pool[best].s;
        *token = pool[best].token;
        pool[best].s = NULL;
    }
    pthread_mutex_unlock(&pool_mu);
    if (!s)
        *token = 0;
    return s;
}

/* Keeps s in the pool (unmapping the least recently kept entry when it is full). */
void bt__shm_pool_give(struct bt__shm *s)
{
    struct bt__shm *evict = NULL;
    pthread_mutex_lock(&pool_mu);
    int at = 0;
    for (int i = 0; i < POOL_MAX; i++) {
        if (!pool[i].s) {
            at = i;
            break;
        }
        if (pool[i].when < pool[at].when)
            at = i;
    }
    evict = pool[at].s;
    pool[at] = (struct pool_ent){s->key, seg_token(s), ++pool_clock, s};
    pthread_mutex_unlock(&pool_mu);
    if (evict)
        shm_free(evict);
}

const char *bt__shm_name(const struct bt_comm *c)
{
    return c && c->shm ? c->shm->name : "";
}

void bt__shm_pool_clear(void)
{
    for (int i = 0; i < POOL_MAX; i++) {
        pthread_mutex_lock(&pool_mu);
        struct bt__shm *s = pool[i].s;
        pool[i].s = NULL;
        pthread_mutex_unlock(&pool_mu);
        if (s)
            shm_free(s);
    }
}

static int reuse_segment(struct bt_comm *c, struct bt__shm *s)
{
    if (s->n != c->local_size || s->me != c->local_rank) /* the key says they are equal */
        return bt__err_set(&c->err, BT_ERR_INTERNAL,
                           "shm segment %s kept for reuse has %d ranks, this is %d of %d", s->name,
                           s->n, c->local_rank, c->local_size);
    c->shm = s;
    atomic_store(&ctrl(s, s->me)->xfail, 0);
    s->cma_min = bt__param_cma_bytes() > 0 ? (size_t)bt__param_cma_bytes() : 0;
    BT_INFO(SHM, "rank %d: shm segment %s reused (a destroyed child's), %d local ranks", c->rank,
            s->name, s->n);
    return BT_OK;
}

int bt__shm_create(struct bt_comm *c, size_t slot_bytes, const char *name, uint64_t key,
                   struct bt__shm *reuse)
{
    if (reuse)
        return reuse_segment(c, reuse);
    struct bt__shm *s = calloc(1, sizeof(*s));
    if (!s)
        return bt__err_set(&c->err, BT_ERR_SYSTEM, "shm: out of memory");
    c->shm = s;
    s->n = c->local_size;
    s->me = c->local_rank;
    s->slot_bytes = pick_slot_bytes(slot_bytes);
    s->pidfd = malloc(sizeof(int) * (size_t)s->n);
    s->srcs = malloc(sizeof(void *) * (size_t)s->n);
    if (!s->pidfd || !s->srcs)
        return bt__err_set(&c->err, BT_ERR_SYSTEM, "shm: out of memory");
    for (int p = 0; p < s->n; p++)
        s->pidfd[p] = -1;
    s->cma_min = bt__param_cma_bytes() > 0 ? (size_t)bt__param_cma_bytes() : 0;
    s->cma_fail_test = bt__env_int("BATON_TEST_CMA_FAIL", 0) != 0; /* read per segment: tests */
    s->key = key;
    s->bytes = slot_off(s, s->n, 0) + (size_t)s->n * (size_t)s->n * P2P_STRIDE;
    BT_CHECK(attach(c, s, name));
    BT_CHECK(announce(c, s));
    BT_INFO(SHM, "rank %d: shm segment %s, %d local ranks, 2 x %zu bytes per slot", c->rank,
            s->name, s->n, s->slot_bytes);
    return BT_OK;
}

static void shm_destroy(struct bt_comm *c)
{
    struct bt__shm *s = c->shm;
    if (!s)
        return;
    c->shm = NULL;
    if (s->key && s->base && !s->p2p_used && c->err.code == BT_OK && !atomic_load(&hdr(s)->abort)) {
        bt__shm_pool_give(s); /* clean: kept for a later child of the same members */
        return;
    }
    /* The last rank to attach removes the name. Removing it here while a rank has not yet
     * opened it would leave that rank with ENOENT (a child communicator that its creator
     * destroys right after making it), so it is removed here only when it never got mapped
     * or a rank of the node failed; the name of a job whose rank died before attaching is
     * removed by its launcher (/dev/shm/baton-<launcher pid>-*, launcher/run_tree.c). */
    int unlink_name = s->name[0] && s->me == 0 && (!s->base || atomic_load(&hdr(s)->abort));
    if (unlink_name)
        shm_unlink(s->name);
    shm_free(s);
}

const struct bt__transport_ops bt__shm_ops = {
    .name = "shm",
    .reduce = shm_reduce,
    .reduce_scatter = shm_reduce_scatter,
    .allgather = shm_allgather,
    .broadcast = shm_broadcast,
    .barrier = shm_barrier,
    .destroy = shm_destroy,
};
