# Job runners for the recipe. pse.sh sources it after its options are parsed, so
# `./run.sh --cmd_backend slurm` switches backends (the default is local).
#   local: utils/run.pl runs every job on this machine (jobs in parallel up to the core count)
#   slurm: utils/slurm.pl submits with sbatch; partitions and GPU options: conf/slurm.conf
# train_cmd: CPU jobs (stats, data); cuda_cmd: training (espnet2.bin.launch adds --gpu N);
# decode_cmd: inference and scoring.
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        export train_cmd="run.pl"
        export cuda_cmd="run.pl"
        export decode_cmd="run.pl"
        ;;
    slurm)
        export train_cmd="slurm.pl --config conf/slurm.conf"
        export cuda_cmd="slurm.pl --config conf/slurm.conf"
        export decode_cmd="slurm.pl --config conf/slurm.conf"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (choose local or slurm)" >&2
        return 1 2>/dev/null || exit 1
        ;;
esac
