/* test_topo.c: topology loading and the placement plan (launcher/topo.c).
 *
 * The fixtures in tests/fixtures/ are hand-written hwloc 2.x XML files:
 *   topo-2socket-8gpu.xml  2 packages x 8 cores x 2 PUs (package 0: CPUs 0-7,16-23, package
 *                          1: 8-15,24-31), one NUMA node each; under each package a host bridge
 *                          > PCI switch > 4 NVIDIA A100 + 1 ConnectX NIC (ens1f0/mlx5_0 on
 *                          package 0, ens2f0/mlx5_1 on package 1); an ASPEED BMC VGA on the
 *                          machine's own host bridge, which must not count as a GPU.
 *   topo-2socket-cpu.xml   the same machine without GPUs.
 *   topo-broken.xml        the first lines of the above: does not parse.
 * Fixture tests need hwloc: a build without it runs only the others (its topology is flat, and
 * loading a fixture must fail with a clear line).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/topo.h"

static char fixture_path[4][512];

static const char *fixture(const char *name)
{
    static int next;
    const char *src = getenv("BATON_SRC");
    char *p = fixture_path[next++ % 4];
    snprintf(p, sizeof(fixture_path[0]), "%s/tests/fixtures/%s", src ? src : ".", name);
    return p;
}

static const char *cpus_of(const cpu_set_t *set)
{
    static char buf[4][256];
    static int next;
    return bt__cpulist_format(set, buf[next++ % 4], sizeof(buf[0]));
}

static void plan_ok(const struct bt__topo *t, int r, int n, enum bt__bind mode,
                    struct bt__topo_place *pl)
{
    struct bt__err err = {0};
    int rc = bt__topo_plan(t, r, n, mode, pl, &err);
    if (rc != BT_OK)
        fail_msg("plan rank %d of %d: %s", r, n, err.msg);
}

/* ---- helpers that need no topology ---- */

static void test_bind_parse(void **state)
{
    (void)state;
    enum bt__bind b = BT_BIND_NONE;
    assert_int_equal(bt__bind_parse("gpu", &b), 0);
    assert_int_equal(b, BT_BIND_GPU);
    assert_int_equal(bt__bind_parse("core", &b), 0);
    assert_int_equal(b, BT_BIND_CORE);
    assert_int_equal(bt__bind_parse("numa", &b), 0);
    assert_int_equal(b, BT_BIND_NUMA);
    assert_int_equal(bt__bind_parse("none", &b), 0);
    assert_int_equal(b, BT_BIND_NONE);
    assert_int_equal(bt__bind_parse("socket", &b), -1);
    assert_int_equal(bt__bind_parse("", &b), -1);
    assert_int_equal(bt__bind_parse("GPU", &b), -1);
    assert_int_equal(bt__bind_parse(NULL, &b), -1);
    assert_string_equal(bt__bind_name(BT_BIND_NUMA), "numa");
}

static void test_cpulist_format(void **state)
{
    (void)state;
    cpu_set_t s;
    char buf[64];
    CPU_ZERO(&s);
    assert_string_equal(bt__cpulist_format(&s, buf, sizeof(buf)), "");
    CPU_SET(3, &s);
    assert_string_equal(bt__cpulist_format(&s, buf, sizeof(buf)), "3");
    for (int c = 0; c < 8; c++)
        CPU_SET(c, &s), CPU_SET(c + 16, &s);
    CPU_SET(30, &s);
    assert_string_equal(bt__cpulist_format(&s, buf, sizeof(buf)), "0-7,16-23,30");
    CPU_SET(CPU_SETSIZE - 1, &s);
    assert_string_equal(bt__cpulist_format(&s, buf, sizeof(buf)), "0-7,16-23,30,1023");
    char tiny[6];
    bt__cpulist_format(&s, tiny, sizeof(tiny)); /* truncates, stays terminated */
    assert_true(strlen(tiny) < sizeof(tiny));
}

/* The NIC rule on a synthetic node (plain arrays, no hwloc): one package, one NUMA node, three
 * GPUs and three NICs on different PCI paths. The NIC sharing most bridges with the GPU wins;
 * with none shared, the first in the same NUMA node. */
static void test_nic_choice_by_pci_path(void **state)
{
    (void)state;
    struct bt__topo_package pkg = {.os_index = 0};
    struct bt__topo_numa numa = {.os_index = 0, .package = 0};
    struct bt__topo_core core = {.numa = 0};
    CPU_ZERO(&pkg.cpus);
    CPU_SET(0, &pkg.cpus);
    numa.cpus = core.cpus = pkg.cpus;
    struct bt__topo_locality here = {.package = 0, .numa = 0, .cpus = pkg.cpus};
    struct bt__topo_gpu gpus[3] = {{.busid = "0000:01:00.0", .loc = here},
                                   {.busid = "0000:02:00.0", .loc = here},
                                   {.busid = "0000:03:00.0", .loc = here}};
    struct bt__topo_nic nics[3] = {{.name = "far", .loc = here},
                                   {.name = "hostbridge", .loc = here},
                                   {.name = "switch", .loc = here}};
    unsigned long long g0[] = {1, 2, 20}, g1[] = {1, 3, 30}, g2[] = {9};
    unsigned long long n0[] = {5}, n1[] = {1, 3}, n2[] = {1, 2, 21};
    struct {
        struct bt__topo_locality *loc;
        unsigned long long *path;
        int depth;
    } set[] = {{&gpus[0].loc, g0, 3}, {&gpus[1].loc, g1, 3}, {&gpus[2].loc, g2, 1},
               {&nics[0].loc, n0, 1}, {&nics[1].loc, n1, 2}, {&nics[2].loc, n2, 3}};
    for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++) {
        set[i].loc->io_depth = set[i].depth;
        memcpy(set[i].loc->io_path, set[i].path, sizeof(set[i].path[0]) * (size_t)set[i].depth);
    }
    struct bt__topo t = {.npackages = 1,
                         .nnumas = 1,
                         .ncores = 1,
                         .npus = 1,
                         .ngpus = 3,
                         .nnics = 3,
                         .packages = &pkg,
                         .numas = &numa,
                         .cores = &core,
                         .gpus = gpus,
                         .nics = nics,
                         .cpus = pkg.cpus};
    struct bt__topo_place pl;
    plan_ok(&t, 0, 3, BT_BIND_GPU, &pl);
    assert_string_equal(pl.nic_name, "switch"); /* shares host bridge 1 and switch 2 */
    plan_ok(&t, 1, 3, BT_BIND_GPU, &pl);
    assert_string_equal(pl.nic_name, "hostbridge"); /* shares 1 and 3 */
    plan_ok(&t, 2, 3, BT_BIND_GPU, &pl);
    assert_string_equal(pl.nic_name, "far"); /* shares nothing: the first in its NUMA node */
    nics[0].loc.numa = -1;                   /* ... and NUMA beats "first" */
    plan_ok(&t, 2, 3, BT_BIND_GPU, &pl);
    assert_string_equal(pl.nic_name, "hostbridge");
    assert_int_equal(bt__topo_gpu_by_busid(&t, "0000:02:00.0"), 1);
}

#ifdef BT_HAVE_HWLOC
/* ---- the 2-socket, 8-GPU fixture ---- */

static struct bt__topo *load_ok(const char *name)
{
    struct bt__topo *t = NULL;
    struct bt__err err = {0};
    int rc = bt__topo_load(fixture(name), &t, &err);
    if (rc != BT_OK)
        fail_msg("loading %s: %s", name, err.msg);
    assert_non_null(t);
    return t;
}

static void test_fixture_inventory(void **state)
{
    (void)state;
    struct bt__topo *t = load_ok("topo-2socket-8gpu.xml");
    assert_int_equal(t->npackages, 2);
    assert_int_equal(t->nnumas, 2);
    assert_int_equal(t->ncores, 16);
    assert_int_equal(t->npus, 32);
    assert_int_equal(t->ngpus, 8); /* the ASPEED VGA is not one */
    assert_int_equal(t->nnics, 2);
    assert_string_equal(t->host, "fixture-2s8g");
    assert_string_equal(cpus_of(&t->packages[0].cpus), "0-7,16-23");
    assert_string_equal(cpus_of(&t->packages[1].cpus), "8-15,24-31");
    assert_string_equal(cpus_of(&t->numas[1].cpus), "8-15,24-31");
    assert_int_equal(t->numas[1].os_index, 1);
    assert_int_equal(t->numas[1].package, 1);
    assert_true(t->numas[0].mem == 274877906944ULL);
    static const char *const bus[8] = {"0000:19:00.0", "0000:1a:00.0", "0000:1b:00.0",
                                       "0000:1c:00.0", "0000:99:00.0", "0000:9a:00.0",
                                       "0000:9b:00.0", "0000:9c:00.0"};
    for (int i = 0; i < 8; i++) {
        assert_string_equal(t->gpus[i].busid, bus[i]);
        assert_int_equal(t->gpus[i].vendor, 0x10de);
        assert_int_equal(t->gpus[i].device, 0x20b0);
        assert_string_equal(t->gpus[i].name, "NVIDIA A100-SXM4-40GB");
        assert_int_equal(t->gpus[i].loc.package, i / 4);
        assert_int_equal(t->gpus[i].loc.numa, i / 4);
        assert_string_equal(cpus_of(&t->gpus[i].loc.cpus), i < 4 ? "0-7,16-23" : "8-15,24-31");
        assert_int_equal(t->gpus[i].loc.io_depth, 3); /* host bridge, switch, its port */
    }
    assert_string_equal(t->nics[0].name, "ens1f0");
    assert_string_equal(t->nics[0].rdma, "mlx5_0");
    assert_string_equal(t->nics[0].busid, "0000:1d:00.0");
    assert_string_equal(t->nics[1].name, "ens2f0");
    assert_int_equal(t->nics[1].loc.package, 1);
    /* PCI paths run from the host bridge down: GPU 0 and ens1f0 share the host bridge and the
     * switch, not the switch's downstream port; GPU 0 and GPU 4 share nothing. */
    const struct bt__topo_locality *g0 = &t->gpus[0].loc, *n0 = &t->nics[0].loc;
    assert_int_equal(n0->io_depth, 3);
    assert_true(g0->io_path[0] == n0->io_path[0] && g0->io_path[1] == n0->io_path[1]);
    assert_true(g0->io_path[2] != n0->io_path[2]);
    assert_true(g0->io_path[0] != t->gpus[4].loc.io_path[0]);
    bt__topo_destroy(t);
}

static void test_fixture_busid_lookup(void **state)
{
    (void)state;
    struct bt__topo *t = load_ok("topo-2socket-8gpu.xml");
    assert_int_equal(bt__topo_gpu_by_busid(t, "0000:1a:00.0"), 1);
    assert_int_equal(bt__topo_gpu_by_busid(t, "00000000:9C:00.0"), 7); /* NVML's form */
    assert_int_equal(bt__topo_gpu_by_busid(t, "0000:9B:00.0"), 6);     /* CUDA's form */
    assert_int_equal(bt__topo_gpu_by_busid(t, "19:00.0"), 0);
    assert_int_equal(bt__topo_gpu_by_busid(t, "0000:03:00.0"), -1); /* the BMC VGA */
    assert_int_equal(bt__topo_gpu_by_busid(t, "garbage"), -1);
    assert_int_equal(bt__topo_gpu_by_busid(t, ""), -1);
    assert_int_equal(bt__topo_gpu_by_busid(t, NULL), -1);
    /* A pod given two of the eight GPUs: CUDA names them 0 and 1, in PCI order. */
    const char *visible[] = {"00000000:9B:00.0", "0000:1a:00.0", "bogus"};
    assert_int_equal(bt__topo_keep_gpus(t, visible, 3), 2);
    assert_string_equal(t->gpus[0].busid, "0000:1a:00.0");
    assert_string_equal(t->gpus[1].busid, "0000:9b:00.0");
    struct bt__topo_place pl;
    plan_ok(t, 1, 2, BT_BIND_GPU, &pl);
    assert_int_equal(pl.gpu, 1);
    assert_string_equal(pl.nic_name, "ens2f0");
    assert_string_equal(cpus_of(&pl.cpus), "8-15,24-31");
    bt__topo_destroy(t);
}

/* The check: for N=8, rank i on GPU i, on the CPUs of GPU i's socket, using the NIC of
 * that socket. */
static void test_plan_8_ranks_bind_gpu(void **state)
{
    (void)state;
    struct bt__topo *t = load_ok("topo-2socket-8gpu.xml");
    for (int r = 0; r < 8; r++) {
        struct bt__topo_place pl;
        plan_ok(t, r, 8, BT_BIND_GPU, &pl);
        int sock = r / 4;
        assert_int_equal(pl.gpu, r);
        assert_int_equal(pl.gpu_shared, 0);
        assert_string_equal(pl.gpu_busid, t->gpus[r].busid);
        assert_int_equal(pl.numa_os, sock);
        assert_int_equal(pl.package, sock);
        assert_true(CPU_EQUAL(&pl.cpus, &t->packages[sock].cpus));
        assert_int_equal(pl.ncpus, 16);
        assert_string_equal(pl.nic_name, sock ? "ens2f0" : "ens1f0");
        assert_int_equal(pl.nic, sock);
    }
    bt__topo_destroy(t);
}

/* --bind core, N=8: four ranks per socket, two cores (four CPUs) each, disjoint, covering the
 * socket. */
static void test_plan_8_ranks_bind_core(void **state)
{
    (void)state;
    struct bt__topo *t = load_ok("topo-2socket-8gpu.xml");
    static const char *const want[8] = {"0-1,16-17", "2-3,18-19",   "4-5,20-21",   "6-7,22-23",
                                        "8-9,24-25", "10-11,26-27", "12-13,28-29", "14-15,30-31"};
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int r = 0; r < 8; r++) {
        struct bt__topo_place pl;
        plan_ok(t, r, 8, BT_BIND_CORE, &pl);
        assert_int_equal(pl.gpu, r);
        assert_string_equal(cpus_of(&pl.cpus), want[r]);
        assert_int_equal(pl.ncpus, 4);
        cpu_set_t overlap;
        CPU_AND(&overlap, &all, &pl.cpus);
        assert_int_equal(CPU_COUNT(&overlap), 0);
        CPU_OR(&all, &all, &pl.cpus);
        assert_string_equal(pl.nic_name, r < 4 ? "ens1f0" : "ens2f0");
    }
    assert_true(CPU_EQUAL(&all, &t->cpus));
    bt__topo_destroy(t);
}

/* N=2: rank i -> GPU i still (the LOCAL_RANK -> cuda:LOCAL_RANK convention), so both ranks sit
 * on socket 0 and share its NIC; numa mode binds each to node 0. */
static void test_plan_2_ranks(void **state)
{
    (void)state;
    struct bt__topo *t = load_ok("topo-2socket-8gpu.xml");
    struct bt__topo_place pl[2];
    for (int r = 0; r < 2; r++) {
        plan_ok(t, r, 2, BT_BIND_NUMA, &pl[r]);
        assert_int_equal(pl[r].gpu, r);
        assert_int_equal(pl[r].numa_os, 0);
        assert_true(CPU_EQUAL(&pl[r].cpus, &t->numas[0].cpus));
        assert_string_equal(pl[r].nic_name, "ens1f0");
    }
    plan_ok(t, 1, 2, BT_BIND_CORE, &pl[1]); /* 2 ranks on node 0 split its 8 cores */
    assert_string_equal(cpus_of(&pl[1].cpus), "4-7,20-23");
    bt__topo_destroy(t);
}

/* More ranks than GPUs: rank i -> GPU i mod 8, flagged shared; one core each. */
static void test_plan_oversubscribed(void **state)
{
    (void)state;
    struct bt__topo *t = load_ok("topo-2socket-8gpu.xml");
    struct bt__topo_place pl;
    plan_ok(t, 13, 16, BT_BIND_CORE, &pl);
    assert_int_equal(pl.gpu, 5);
    assert_int_equal(pl.gpu_shared, 1);
    assert_int_equal(pl.numa_os, 1);
    assert_string_equal(pl.nic_name, "ens2f0");
    /* Ranks on node 1 are 4-7 and 12-15; rank 13 is the 6th of 8: core 8+5. */
    assert_string_equal(cpus_of(&pl.cpus), "13,29");
    plan_ok(t, 0, 1, BT_BIND_NONE, &pl); /* none: planned, not bound */
    assert_int_equal(pl.ncpus, 0);
    assert_int_equal(pl.gpu, 0);
    assert_int_equal(pl.gpu_shared, 0);
    assert_string_equal(pl.nic_name, "ens1f0");
    bt__topo_destroy(t);
}

/* ---- the same machine without GPUs ---- */

static void test_cpu_only_spreads(void **state)
{
    (void)state;
    struct bt__topo *t = load_ok("topo-2socket-cpu.xml");
    assert_int_equal(t->ngpus, 0);
    assert_int_equal(t->nnics, 2);
    struct bt__topo_place pl;
    for (int r = 0; r < 2; r++) { /* N=2: one rank per socket, each with its socket's NIC */
        plan_ok(t, r, 2, BT_BIND_NUMA, &pl);
        assert_int_equal(pl.gpu, -1);
        assert_string_equal(pl.gpu_busid, "");
        assert_int_equal(pl.numa_os, r);
        assert_true(CPU_EQUAL(&pl.cpus, &t->numas[r].cpus));
        assert_string_equal(pl.nic_name, r ? "ens2f0" : "ens1f0");
    }
    plan_ok(t, 1, 4, BT_BIND_CORE, &pl); /* N=4: ranks 0,1 on node 0, 4 cores each */
    assert_int_equal(pl.numa_os, 0);
    assert_string_equal(cpus_of(&pl.cpus), "4-7,20-23");
    plan_ok(t, 2, 3, BT_BIND_CORE, &pl); /* N=3: blocks 0,0,1 */
    assert_int_equal(pl.numa_os, 1);
    assert_int_equal(pl.ncpus, 16);
    bt__topo_destroy(t);
}

static void test_bind_gpu_without_gpu(void **state)
{
    (void)state;
    struct bt__topo *t = load_ok("topo-2socket-cpu.xml");
    struct bt__topo_place pl;
    struct bt__err err = {0};
    assert_int_equal(bt__topo_plan(t, 0, 2, BT_BIND_GPU, &pl, &err), BT_ERR_INVALID_USAGE);
    assert_string_equal(err.msg, "--bind gpu: no GPU found on this node (hwloc saw none); use "
                                 "--bind core or none");
    bt__topo_destroy(t);
}

static void test_env_xml(void **state)
{
    (void)state;
    struct bt__topo *t = NULL;
    struct bt__err err = {0};
    setenv("BATON_TOPO_XML", fixture("topo-2socket-8gpu.xml"), 1);
    int rc = bt__topo_load(NULL, &t, &err);
    setenv("BATON_TOPO_XML", "/nonexistent.xml", 1);
    struct bt__topo *t2 = NULL;
    struct bt__err err2 = {0};
    int rc2 = bt__topo_load(NULL, &t2, &err2);
    unsetenv("BATON_TOPO_XML");
    assert_int_equal(rc, BT_OK);
    assert_int_equal(t->ngpus, 8);
    assert_int_equal(rc2, BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err2.msg, "cannot load topology from /nonexistent.xml"));
    bt__topo_destroy(t);
}

#endif /* BT_HAVE_HWLOC */

/* ---- bad input ---- */

static void expect_load_error(const char *path, const char *want_in_msg)
{
    struct bt__topo *t = (struct bt__topo *)1;
    struct bt__err err = {0};
    assert_int_equal(bt__topo_load(path, &t, &err), BT_ERR_INVALID_ARG);
    assert_null(t);
    char head[600];
    snprintf(head, sizeof(head), "cannot load topology from %s: ", path);
    if (strncmp(err.msg, head, strlen(head)) || !strstr(err.msg, want_in_msg))
        fail_msg("error '%s' lacks '%s' or '%s'", err.msg, head, want_in_msg);
    assert_null(strchr(err.msg, '\n'));
}

static void test_bad_files(void **state)
{
    (void)state;
    expect_load_error("/nonexistent/topo.xml", "No such file or directory");
    expect_load_error("/tmp", "not a regular file");
#ifdef BT_HAVE_HWLOC
    expect_load_error(fixture("topo-broken.xml"), "not a valid hwloc XML topology");
    char junk[] = "/tmp/baton-topo-junk.XXXXXX";
    int fd = mkstemp(junk);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not xml at all\n", 15), 15);
    close(fd);
    expect_load_error(junk, "not a valid hwloc XML topology");
    fd = open(junk, O_WRONLY | O_TRUNC); /* empty */
    close(fd);
    expect_load_error(junk, "not a valid hwloc XML topology");
    unlink(junk);
#else
    expect_load_error(fixture("topo-2socket-8gpu.xml"), "built without hwloc");
#endif
}

static void test_bad_plan_args(void **state)
{
    (void)state;
    struct bt__topo *t = NULL;
    struct bt__err err = {0};
    assert_int_equal(bt__topo_load(NULL, &t, &err), BT_OK);
    struct bt__topo_place pl;
    assert_int_equal(bt__topo_plan(t, 2, 2, BT_BIND_CORE, &pl, &err), BT_ERR_INVALID_USAGE);
    assert_non_null(strstr(err.msg, "local rank 2 of 2 is out of range"));
    bt__err_clear(&err);
    assert_int_equal(bt__topo_plan(t, 0, 0, BT_BIND_CORE, &pl, &err), BT_ERR_INVALID_USAGE);
    bt__err_clear(&err);
    assert_int_equal(bt__topo_plan(t, -1, 4, BT_BIND_CORE, &pl, &err), BT_ERR_INVALID_USAGE);
    bt__err_clear(&err);
    assert_int_equal(bt__topo_plan(t, 0, 1, (enum bt__bind)9, &pl, &err), BT_ERR_INVALID_USAGE);
    bt__topo_destroy(t);
    bt__topo_destroy(NULL);
}

/* ---- this machine ---- */

static void test_this_machine(void **state)
{
    (void)state;
    struct bt__topo *t = NULL;
    struct bt__err err = {0};
    unsetenv("BATON_TOPO_XML");
    assert_int_equal(bt__topo_load(NULL, &t, &err), BT_OK);
    assert_true(t->npackages >= 1 && t->nnumas >= 1 && t->ncores >= 1);
    assert_true(t->npus >= t->ncores);
    int ncpu = CPU_COUNT(&t->cpus);
    assert_true(ncpu >= 1);
    print_message("# this machine: %d packages, %d NUMA, %d cores, %d CPUs (%s), %d GPUs, "
                  "%d NICs%s%s\n",
                  t->npackages, t->nnumas, t->ncores, t->npus, cpus_of(&t->cpus), t->ngpus,
                  t->nnics, t->nnics ? ", first " : "", t->nnics ? t->nics[0].name : "");
    for (int n = 1; n <= 3; n++)
        for (int r = 0; r < n; r++) {
            struct bt__topo_place pl;
            plan_ok(t, r, n, BT_BIND_CORE, &pl);
            cpu_set_t in;
            CPU_AND(&in, &pl.cpus, &t->cpus);
            assert_true(pl.ncpus >= 1 && CPU_EQUAL(&in, &pl.cpus));
            assert_int_equal(pl.gpu, t->ngpus ? r % t->ngpus : -1);
            if (t->nnics)
                assert_true(pl.nic >= 0 && pl.nic_name[0]);
        }
    struct bt__topo_place pl;
    if (t->ngpus == 0)
        assert_int_equal(bt__topo_plan(t, 0, 1, BT_BIND_GPU, &pl, &err), BT_ERR_INVALID_USAGE);
    bt__topo_destroy(t);
}

/* bt__topo_apply binds a (forked) process to the planned CPUs. */
static void test_apply(void **state)
{
    (void)state;
    struct bt__topo *t = NULL;
    struct bt__err err = {0};
    assert_int_equal(bt__topo_load(NULL, &t, &err), BT_OK);
    struct bt__topo_place pl;
    int n = CPU_COUNT(&t->cpus) > 1 ? 2 : 1;
    plan_ok(t, n - 1, n, BT_BIND_CORE, &pl);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        cpu_set_t now;
        int ok = bt__topo_apply(&pl, NULL) == BT_OK &&
                 sched_getaffinity(0, sizeof(now), &now) == 0 && CPU_EQUAL(&now, &pl.cpus);
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    plan_ok(t, 0, 1, BT_BIND_NONE, &pl);
    assert_int_equal(bt__topo_apply(&pl, &err), BT_OK); /* none: a no-op */
    bt__topo_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bind_parse),
        cmocka_unit_test(test_cpulist_format),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_bad_plan_args),
        cmocka_unit_test(test_this_machine),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_nic_choice_by_pci_path),
#ifdef BT_HAVE_HWLOC
        cmocka_unit_test(test_fixture_inventory),
        cmocka_unit_test(test_fixture_busid_lookup),
        cmocka_unit_test(test_plan_8_ranks_bind_gpu),
        cmocka_unit_test(test_plan_8_ranks_bind_core),
        cmocka_unit_test(test_plan_2_ranks),
        cmocka_unit_test(test_plan_oversubscribed),
        cmocka_unit_test(test_cpu_only_spreads),
        cmocka_unit_test(test_bind_gpu_without_gpu),
        cmocka_unit_test(test_env_xml),
#endif
    };
    return cmocka_run_group_tests_name("topo", tests, NULL, NULL);
}
