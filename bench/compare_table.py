#!/usr/bin/env python3
"""compare_table.py DIR ROUNDS PLOT PROGRAM...: the tables (and plot) of bench/compare.sh.

Reads DIR/PROGRAM.ROUND.txt (nccl-tests table: size count type redop time algbw busbw #wrong),
prints per size the median busbw of each program with its min-max over the rounds and the
median time, then baton's ratios (median of the per-round ratios, min-max beside it). With a
PLOT path, writes busbw and time against size with gnuplot (log axes, one line per program).
"""
import os
import statistics
import subprocess
import sys

RATIOS = [("baton_shm", "mpi"), ("baton_tcp", "mpi_tcp"), ("baton_tcp", "gloo"),
          ("baton_shm", "mpi_tuned"), ("baton_tcp", "mpi_tcp_tuned"),
          ("baton_tcp_bound", "mpi_tcp"), ("baton_mpi", "mpi"), ("baton_mpi", "mpi_nb"),
          ("baton_mpi_poll", "mpi"), ("baton_mpi_poll", "mpi_nb")]
LABEL = {"mpi": "Open MPI (defaults)", "mpi_tcp": "Open MPI TCP (defaults)",
         "mpi_tuned": "Open MPI (tuned)", "mpi_tcp_tuned": "Open MPI TCP (tuned)",
         "gloo": "Gloo (defaults)", "baton_shm": "baton shm", "baton_tcp": "baton TCP",
         "baton_tcp_bound": "baton TCP (--bind core)",
         "baton_mpi": "baton on Open MPI",
         "baton_mpi_poll": "baton on Open MPI, BATON_MPI_POLL=1",
         "mpi_nb": "Open MPI MPI_Iallreduce+MPI_Test"}


OP = os.environ.get("COMPARE_OP", "allreduce")

if os.environ.get("COMPARE_VETH") == "1":
    LABEL["mpi_tcp"] = "Open MPI TCP (--bind-to none)"
    LABEL["gloo"] = "Gloo (GLOO_SOCKET_IFNAME)"


def load(path):
    rows = {}
    try:
        with open(path) as f:
            for line in f:
                a = line.split()
                if not a or a[0].startswith("#") or len(a) < 8:
                    continue
                try:
                    rows[int(a[0])] = (float(a[4]), float(a[6]), int(a[7]))
                except ValueError:
                    continue
    except OSError:
        pass
    return rows


def human(n):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return "%d %s" % (n >> shift, unit)
    return "%d B" % n


def spread(vals, fmt):
    if not vals:
        return "-"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt % med
    return (fmt + " (" + fmt + "-" + fmt + ")") % (med, min(vals), max(vals))


def main():
    out, rounds, plot, progs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    data = {p: [load(os.path.join(out, "%s.%d.txt" % (p, r))) for r in range(1, rounds + 1)]
            for p in progs}
    sizes = sorted({s for p in progs for rows in data[p] for s in rows})
    wrong = [(p, r + 1, s) for p in progs for r, rows in enumerate(data[p])
             for s, v in rows.items() if v[2] != 0]
    for p, r, s in wrong:
        print("WRONG RESULT: %s round %d at %d bytes: that figure is not a figure" % (p, r, s))

    print("\n%s busbw GB/s, median of %d interleaved rounds (min-max); median time per op in us"
          % (OP, rounds))
    print("| bytes | " + " | ".join(LABEL.get(p, p) for p in progs) + " |")
    print("|---:|" + "---:|" * len(progs))
    for s in sizes:
        cells = []
        for p in progs:
            bw = [rows[s][1] for rows in data[p] if s in rows]
            us = [rows[s][0] for rows in data[p] if s in rows]
            cells.append("-" if not bw else "%s, %s us" % (spread(bw, "%.2f"),
                                                          "%.1f" % statistics.median(us)))
        print("| %s | %s |" % (human(s), " | ".join(cells)))

    pairs = [(a, b) for a, b in RATIOS if a in progs and b in progs]
    if pairs:
        print("\nbaton's busbw / baseline's, median of the per-round ratios (min-max)")
        print("| bytes | " + " | ".join("%s / %s" % (LABEL[a], LABEL[b]) for a, b in pairs) + " |")
        print("|---:|" + "---:|" * len(pairs))
        for s in sizes:
            cells = []
            for a, b in pairs:
                # busbw ratio = inverse time ratio (times keep their precision at 4 KiB)
                rs = [rb[s][0] / ra[s][0] for ra, rb in zip(data[a], data[b])
                      if s in ra and s in rb and ra[s][0] > 0]
                cells.append(spread(rs, "%.2fx"))
            print("| %s | %s |" % (human(s), " | ".join(cells)))
    if plot:
        write_plot(plot, out, progs, data, sizes)
    return 1 if wrong else 0


def write_plot(path, out, progs, data, sizes):
    dat = os.path.join(out, "plot.dat")
    with open(dat, "w") as f:
        f.write("# bytes " + " ".join("%s_busbw %s_us" % (p, p) for p in progs) + "\n")
        for s in sizes:
            cols = []
            for p in progs:
                bw = [rows[s][1] for rows in data[p] if s in rows]
                us = [rows[s][0] for rows in data[p] if s in rows]
                cols += ["%.4f" % statistics.median(bw) if bw else "NaN",
                         "%.2f" % statistics.median(us) if us else "NaN"]
            f.write("%d %s\n" % (s, " ".join(cols)))
    lines = []
    for col in (2, 3):
        # noenhanced: an underscore in a label (MPI_Test, GLOO_SOCKET_IFNAME) is no subscript
        lines.append(", ".join('"%s" using 1:%d with linespoints title "%s" noenhanced' %
                               (dat, col + 2 * i, LABEL.get(p, p)) for i, p in enumerate(progs)))
    script = """set terminal svg size 1100,450 dynamic font "sans,11"
set output "%s"
set multiplot layout 1,2
set logscale xy 2
set format x "%%.0b%%B"
set xlabel "message size (bytes)"
set key top left
set grid
set title "%s busbw (GB/s), 2 ranks"
plot %s
set title "%s time per op (us), 2 ranks"
plot %s
unset multiplot
""" % (path, OP, lines[0], OP, lines[1])
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
        print("plot: %s" % path)
    except (OSError, subprocess.CalledProcessError) as e:
        print("compare.sh: no plot (%s); install gnuplot-nox (make deps)" % e)


if __name__ == "__main__":
    sys.exit(main())
