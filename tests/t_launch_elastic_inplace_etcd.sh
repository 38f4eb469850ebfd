#!/usr/bin/env bash
# t_launch_elastic_inplace_etcd.sh: t_launch_elastic_inplace.sh (BATON_ELASTIC_INPLACE=1: a
# loss, a joiner, a worker that does not take up its generation; not the SIGSTOPped launcher
# and the duplicate identity) under --rdzv-backend etcd, a real one-member etcd on 127.0.0.1.
# timeout: 180
T_BACKEND=etcd exec bash "$(dirname "$0")/t_launch_elastic_inplace.sh"
