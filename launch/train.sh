#!/usr/bin/env bash
# Starts `vae train` on several MPI ranks with the environment each rank needs.
#
#   launch/train.sh [--ranks N] [--threads T] [--hostfile FILE] [--tcp] [--no-bind] -- TRAIN-ARGS...
#
#   --ranks N        MPI ranks (default: as many as make ranks x threads the largest power of two
#                    up to the cores, or the slots of --hostfile, and up to the images of --batch)
#   --threads T      threads per rank, each with one OpenBLAS thread (default 1; ranks x threads
#                    should not exceed the cores: oversubscribed cores silently wreck speed)
#   --hostfile FILE  Open MPI hostfile for several machines ("node1 slots=16" per line); every
#                    machine needs the binary and the dataset at the same path
#   --tcp            force the TCP transport that separate hosts use (--mca btl tcp,self)
#   --no-bind        do not bind ranks to cores
#
# Stopping: SIGTERM, SIGINT (Ctrl-C) or SIGUSR1 to this script stops every rank after the current
# step with a checkpoint and a line saying how to continue; a second one stops at once.
#
# Example: launch/train.sh --ranks 2 -- --data faces.vaeds --out runs/faces --epochs 5
set -euo pipefail
# The command that continues this run after a stop: this one, which vae completes with --resume.
VAE_CONTINUE_COMMAND=$(printf '%q ' "$0" "$@")
export VAE_CONTINUE_COMMAND="${VAE_CONTINUE_COMMAND% }"
root="$(cd "$(dirname "$0")/.." && pwd)"
vae="${VAE_BINARY:-$root/.build/release/vae}"
ranks="" threads=1 hostfile="" tcp=0 bind=1
while (($#)); do
    case "$1" in
        --ranks) ranks="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --hostfile) hostfile="$2"; shift 2 ;;
        --tcp) tcp=1; shift ;;
        --no-bind) bind=0; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "train.sh: unknown option $1 (options go before --, vae train's after it)" >&2; exit 2 ;;
    esac
done
[ -x "$vae" ] || { echo "train.sh: $vae not found; run launch/setup.sh first" >&2; exit 1; }
cores=$(nproc)
# The global batch (vae train's default 64): at most one worker per image.
batch=64 previous=""
for arg in "$@"; do
    [ "$previous" = --batch ] && batch="$arg"
    case "$arg" in --batch=*) batch="${arg#--batch=}" ;; esac
    previous="$arg"
done
# A bad --batch is left for vae train to refuse, in the same one line as any other bad flag.
[[ "$batch" =~ ^[1-9][0-9]*$ ]] || batch=1
if [ -n "$hostfile" ]; then
    slots=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^slots=/) {split($i, s, "="); n += s[2]}} END {print n}' "$hostfile")
    unit="slots"
else
    slots=$cores unit="cores"
fi
note=""
if [ -z "$ranks" ]; then
    # A power of two of workers, no more than the images: every rank's piece is then a node of the
    # gradient tree, which gives the same bits as one process at the same leaf (vae train --help).
    ((fit = (slots < batch ? slots : batch) / threads, ranks = 1))
    while ((2 * ranks <= fit)); do ((ranks *= 2)); done
    idle=$((slots - ranks * threads))
    if ((idle > 0)); then
        note=" ($idle idle: the largest power of two up to the $unit and the images, for the same bits"
        note+=" as one process; --ranks overrides)"
    fi
fi
echo "train.sh: $ranks ranks x $threads thread(s) on $slots $unit for batch $batch$note"
if [ -z "$hostfile" ] && ((ranks * threads > cores)); then
    echo "train.sh: warning: $ranks ranks x $threads threads exceeds the $cores cores here; expect a large slowdown" >&2
fi

# mpirun's own banners ("N processes exited with non-zero status", MPI_ABORT notes) are filtered
# out of its standard error below (vae prints one line saying what went wrong, and mpirun still
# exits non-zero); not with --quiet, which would also silence the one that names a lost rank.
args=(-np "$ranks" -x "OPENBLAS_NUM_THREADS=1" -x "VAE_PROGRESS=$([ -t 1 ] && echo bar || echo lines)")
[ "$(id -u)" -eq 0 ] && args+=(--allow-run-as-root)
if [ -n "$hostfile" ]; then
    # A host that drops off the network (power, cable, switch) is noticed by mpirun's keepalives to
    # its daemon there after about 10 + 2 x 5 seconds, instead of Open MPI's default 300 + 20 x 9.
    args+=(--hostfile "$hostfile" --mca oob_tcp_keepalive_time 10 --mca oob_tcp_keepalive_intvl 2
           --mca oob_tcp_keepalive_probes 5)
fi
((tcp)) && args+=(--mca btl tcp,self)
if [ -z "$hostfile" ] && ((ranks * threads > cores)); then
    args+=(--oversubscribe --bind-to none)
elif ((bind)); then
    if ((threads == 1)); then args+=(--bind-to core); else args+=(--map-by "slot:PE=$threads" --bind-to core); fi
else
    args+=(--bind-to none)
fi
args+=(-x VAE_CONTINUE_COMMAND)

# Stopping. mpirun kills its ranks one second after it forwards a TERM or an INT: too soon for the
# step in hand and a checkpoint. It forwards a USR1 without killing. So mpirun runs in a session
# of its own, where a Ctrl-C on the terminal does not reach it, and this script turns the first
# TERM, INT or USR1 it gets into a USR1 for mpirun (every rank stops after the same step, rank 0
# writes a checkpoint, all exit 0) and a second one into a TERM (everything stops at once).
signals=0
forward_stop() {
    signals=$((signals + 1))
    if ((signals == 1)); then
        echo "train.sh: stopping after the current step (send it again to stop at once)" >&2
        kill -USR1 "$mpirun" 2>/dev/null || true
    else
        kill -TERM "$mpirun" 2>/dev/null || true
    fi
}
# mpirun's standard error, line by line: its banners between lines of dashes go, except the one
# that says a rank died, which becomes one line naming the rank, its host and how to continue;
# everything else (vae's own lines) passes through.
filter_mpirun_errors() {
    # mawk (Debian's awk) reads a pipe in blocks: without -W interactive it would hold vae's lines
    # until mpirun ends, and a job that hangs in its end (a lost host) would never show them.
    local line_by_line=()
    awk -W version 2>/dev/null | grep -q mawk && line_by_line=(-W interactive)
    awk "${line_by_line[@]}" -v again="$VAE_CONTINUE_COMMAND" '
        BEGIN { if (again !~ / --resume( |$)/) again = again " --resume" }
        function finish_banner() {
            if (match(banner, /process rank [0-9]+ with PID [0-9]+ on node [^ ]+ exited on signal [0-9]+ \([^)]*\)/)) {
                split(substr(banner, RSTART, RLENGTH), w, " ")
                how = substr(banner, RSTART, RLENGTH); sub(/.*exited on /, "", how)
                print "train.sh: error: rank " w[3] " on host " w[9] " was lost: it died of " how ", so the job ended; " \
                      "continue from the last checkpoint with: " again
            } else if (banner ~ /ORTE has lost communication with a remote daemon/ && match(banner, /Remote daemon: [^ ]+ on node [^ \n]+/)) {
                host = substr(banner, RSTART, RLENGTH); sub(/.* on node /, "", host)
                print "train.sh: error: host " host " was lost with its ranks: mpirun lost contact with it, so the job ended; " \
                      "continue from the last checkpoint (on the remaining hosts: a hostfile without it) with: " again
            } else if (banner !~ /Primary job +terminated normally|exited with non-zero status|MPI_ABORT was invoked/) {
                printf "%s\n%s%s\n", dashes, banner, dashes
            }
            fflush()
        }
        /^-+$/ { dashes = $0; if (inside) finish_banner(); else banner = ""; inside = !inside; next }
        inside { banner = banner $0 "\n"; next }
        # Noise: help-message counts, and what a rank or mpirun says when a peer vanishes mid-transfer.
        /more process(es)? ha(s|ve) sent help message|orte_base_help_aggregate/ { next }
        /ORTE_ERROR_LOG: Data unpack would read past end of buffer|\] Read -1, expected [0-9]+, errno = [0-9]+$/ { next }
        { print; fflush() }'
}

trap forward_stop TERM INT USR1
# The filter ignores the signals meant for mpirun, so that it outlives mpirun and reads it all.
exec 3> >(trap '' TERM INT USR1; filter_mpirun_errors >&2)
filter=$!
setsid mpirun "${args[@]}" "$vae" train --threads "$threads" "$@" </dev/null 2>&3 &
mpirun=$!
exec 3>&-
# A trapped signal interrupts wait; wait again until mpirun is gone, then take its status.
while kill -0 "$mpirun" 2>/dev/null; do wait "$mpirun" || true; done
status=0
wait "$mpirun" || status=$?
while kill -0 "$filter" 2>/dev/null; do wait "$filter" || true; done
exit "$status"
