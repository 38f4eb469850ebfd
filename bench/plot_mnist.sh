#!/usr/bin/env bash
# plot_mnist.sh: the trainer's loss and accuracy per epoch, from the CSV that
# `mnist_cnn --log-csv FILE` writes (rank 0, one row per epoch), as an SVG with gnuplot.
#
#   bench/plot_mnist.sh LOG.csv OUT.svg
#   build/baton run -n 2 -- build/examples/mnist_cnn --epochs 10 --log-csv /tmp/mn.csv
#   bench/plot_mnist.sh /tmp/mn.csv docs/img/mnist_training.svg
set -u
[ $# -eq 2 ] || { echo "usage: bench/plot_mnist.sh LOG.csv OUT.svg" >&2; exit 2; }
csv=$1 out=$2
[ -r "$csv" ] || { echo "plot_mnist.sh: cannot read $csv; write it with mnist_cnn --log-csv $csv" >&2; exit 2; }
head -1 "$csv" | grep -q '^epoch,epochs,world,steps,loss,train_acc,val_acc,val_loss,test_acc' ||
    { echo "plot_mnist.sh: $csv is not a mnist_cnn --log-csv file (its header differs)" >&2; exit 2; }
[ "$(wc -l <"$csv")" -ge 2 ] || { echo "plot_mnist.sh: $csv has no epoch rows yet" >&2; exit 2; }
command -v gnuplot >/dev/null || { echo "plot_mnist.sh: gnuplot is missing; make deps installs gnuplot-nox" >&2; exit 2; }
gnuplot <<GP || { echo "plot_mnist.sh: gnuplot failed (above)" >&2; exit 1; }
set terminal svg size 1000,420 dynamic font "sans,11"
set output "$out"
set datafile separator ","
set key autotitle columnhead bottom right
set multiplot layout 1,2
set grid
set xlabel "epoch"
set title "loss (training mean)"
plot "$csv" using 1:5 with linespoints title "train loss", "" using 1:10 with linespoints title "test loss"
set title "accuracy"
set key top left
plot "$csv" using 1:6 with linespoints title "train", "" using 1:7 with linespoints title "validation", \
     "" using 1:9 with linespoints title "test"
unset multiplot
GP
echo "plot_mnist.sh: wrote $out"
