#!/usr/bin/env bash
# Runs a command with N "hosts" on this machine: network namespaces with separate network stacks,
# each with its own address on a bridge, its own cores, and an Open MPI launch agent that enters
# the namespace instead of ssh. mpirun started by the command (in this, the root namespace) starts
# every rank inside the hosts, and the ranks talk TCP between them, as on separate machines.
#
#   launch/netns-hosts.sh [--hosts N] [--slots S] [--shape HOST:SPEC]... -- COMMAND...
#
#   --hosts N          hosts (default 2); this machine's cores are dealt out to them, each host's
#                      ranks run on its own (a host with more ranks than cores shares them)
#   --slots S          ranks per host in the hostfile (default 1)
#   --shape HOST:SPEC  shapes host HOST's (1..N) link in both directions; SPEC is a comma list of
#                      rate=RATE (tc tbf, e.g. 10gbit, 100mbit), loss=PERCENT (random drops, nft),
#                      delay=TIME (tc netem, e.g. 1ms; only where the kernel has netem)
#
# COMMAND sees plain `mpirun` set up for the hosts through the environment (Open MPI's OMPI_MCA_*
# variables): the hostfile, the launch agent, `btl tcp,self` and the bridge's subnet for both MPI
# and Open MPI's own out-of-band traffic, and no binding (each host's cores are set by the agent;
# `--bind-to core` would put every host's first rank on core 0, since each believes it owns all
# cores). It also sees NETNS_HOSTFILE, NETNS_HOSTS (the hosts' addresses) and NETNS_LINKS (each
# host's end of its link on the bridge, in this namespace: `ip link set WORD down` cuts that host
# off, as a pulled cable would; the opening line names them too). Example:
#
#   launch/netns-hosts.sh --hosts 2 --slots 2 -- sh -c \
#       'launch/train.sh --hostfile "$NETNS_HOSTFILE" --no-bind -- --data faces.vaeds --out runs/faces --batch 128'
#
# Addresses: only 198.18.0.0/15 (reserved for benchmarking, RFC 2544), one free /24 per run; nothing
# is routed anywhere else. Names carry a random id, so concurrent runs do not meet. Everything is
# torn down when the command ends, fails, or this script gets INT, TERM or HUP.
# Needs root, iproute2, and nftables for loss= (launch/setup.sh installs both). Where the
# sandbox forbids namespaces it prints one line saying why and exits 77 (the tests then skip).
set -euo pipefail

hosts=2 slots=1 shapes=()
while (($#)); do
    case "$1" in
        --hosts) hosts="$2"; shift 2 ;;
        --slots) slots="$2"; shift 2 ;;
        --shape) shapes+=("$2"); shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "netns-hosts: unknown option $1 (the command goes after --)" >&2; exit 2 ;;
    esac
done
(($#)) || { echo "netns-hosts: no command given (after --)" >&2; exit 2; }
[[ "$hosts" =~ ^[1-9][0-9]?$ ]] || { echo "netns-hosts: --hosts must be 1 to 99, got $hosts" >&2; exit 2; }
[[ "$slots" =~ ^[1-9][0-9]*$ ]] || { echo "netns-hosts: --slots must be positive, got $slots" >&2; exit 2; }

forbidden() { echo "netns-hosts: network namespaces are not available here: $1" >&2; exit 77; }
[ "$(id -u)" -eq 0 ] || forbidden "not root (ip netns needs CAP_SYS_ADMIN and CAP_NET_ADMIN)"
command -v ip >/dev/null || { echo "netns-hosts: no ip command (launch/setup.sh installs iproute2)" >&2; exit 1; }

# Interface names have at most 15 characters: "vh" + 6 hex digits + a suffix of up to 4.
id="vh$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/netns-hosts-$id.XXXX")
namespace() { echo "vaehost-$id-$1"; }

teardown() {
    trap '' INT TERM HUP
    # What the command started and left running in this namespace, wherever its process group (mpirun
    # under launch/train.sh has a session of its own): every such process has this run's launch agent
    # in its environment.
    local process
    for process in /proc/[0-9]*; do
        grep -qsxz "OMPI_MCA_plm_rsh_agent=$run_dir/agent" "$process/environ" && kill -KILL "${process#/proc/}" 2>/dev/null || true
    done
    local host
    for ((host = 1; host <= hosts; host++)); do
        local ns
        ns=$(namespace "$host")
        if ip netns list | grep -qw "$ns"; then
            # Anything still running in the host (an orted or a rank the command left behind) goes first.
            ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
            ip netns del "$ns" 2>/dev/null || true
        fi
        ip link del "${id}h$host" 2>/dev/null || true
    done
    ip link del "$id" 2>/dev/null || true
    rm -rf "$run_dir"
}
trap teardown EXIT
source "$(dirname "$0")/command-group.sh"

# One free /24 of 198.18.0.0/15, chosen and claimed (by the bridge's address) under a lock, so that
# two runs started together never take the same subnet.
exec {lock}>/run/lock/vae-netns-hosts.lock
flock "$lock"
ip netns add "$(namespace 1)" 2>"$run_dir/error" || forbidden "ip netns add failed: $(head -n 1 "$run_dir/error")"
ip link add "$id" type bridge || forbidden "cannot create a bridge"
subnet=""
for second in 18 19; do
    for third in $(shuf -i 0-255); do
        candidate="198.$second.$third"
        ip -4 -o addr show | grep -q " $candidate\." || { subnet=$candidate; break 2; }
    done
done
[ -n "$subnet" ] || { echo "netns-hosts: every /24 of 198.18.0.0/15 is in use" >&2; exit 1; }
ip addr add "$subnet.1/24" dev "$id"
flock -u "$lock"
ip link set "$id" up

cores=$(nproc)
: >"$run_dir/hostfile"
agent_cases=""
addresses=() links=()
for ((host = 1; host <= hosts; host++)); do
    ns=$(namespace "$host") address="$subnet.$((host + 1))"
    ((host == 1)) || ip netns add "$ns"
    ip link add "${id}h$host" type veth peer name "${id}n$host"
    ip link set "${id}n$host" netns "$ns"
    ip -n "$ns" link set "${id}n$host" name eth0
    ip -n "$ns" addr add "$address/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip link set "${id}h$host" master "$id"
    ip link set "${id}h$host" up
    # The host's cores: an equal share of this machine's, in order (with more hosts than cores,
    # hosts share them round robin).
    if ((hosts <= cores)); then
        first=$(((host - 1) * cores / hosts)) last=$((host * cores / hosts - 1))
    else
        first=$(((host - 1) % cores)) last=$first
    fi
    echo "$address slots=$slots" >>"$run_dir/hostfile"
    # Its own host name too (a UTS namespace), so that MPI_Get_processor_name tells the hosts apart.
    agent_cases+="    $address) exec ip netns exec $ns unshare --uts taskset -c $first-$last sh -c \"hostname host$host; \$*\" ;;"$'\n'
    addresses+=("$address") links+=("${id}h$host")
done

# Open MPI's rsh launcher runs `AGENT HOST COMMAND...` to start its daemon (orted) on HOST; the
# daemon starts that host's ranks, which inherit its namespace and cores.
cat >"$run_dir/agent" <<EOF
#!/bin/sh
host=\$1
shift
case "\$host" in
$agent_cases    *) echo "netns-hosts agent: unknown host \$host" >&2; exit 1 ;;
esac
EOF
chmod +x "$run_dir/agent"

for shape in "${shapes[@]}"; do
    host=${shape%%:*} spec=${shape#*:}
    [[ "$host" =~ ^[0-9]+$ ]] && ((host >= 1 && host <= hosts)) || { echo "netns-hosts: --shape $shape: no host $host" >&2; exit 2; }
    ns=$(namespace "$host")
    IFS=, read -ra settings <<<"$spec"
    rate="" delay="" loss=""
    for setting in "${settings[@]}"; do
        case "$setting" in
            rate=*) rate=${setting#rate=} ;;
            delay=*) delay=${setting#delay=} ;;
            loss=*) loss=${setting#loss=}; loss=${loss%\%} ;;
            *) echo "netns-hosts: --shape $shape: unknown setting $setting (rate=, delay=, loss=)" >&2; exit 2 ;;
        esac
    done
    # Both directions: the host's own interface sends to the bridge, the bridge's end sends to the host.
    for device in "ip netns exec $ns tc qdisc add dev eth0" "tc qdisc add dev ${id}h$host"; do
        if [ -n "$delay" ]; then
            $device root handle 1: netem delay "$delay" 2>"$run_dir/error" \
                || { echo "netns-hosts: delay=$delay needs tc netem, which this kernel lacks: $(head -n 1 "$run_dir/error")" >&2; exit 1; }
            [ -z "$rate" ] || $device parent 1: handle 2: tbf rate "$rate" burst 256kb latency 100ms
        elif [ -n "$rate" ]; then
            # A bucket of 256 KB: the 64 KB segments a veth passes at once must fit.
            $device root tbf rate "$rate" burst 256kb latency 100ms
        fi
    done
    if [ -n "$loss" ]; then
        command -v nft >/dev/null || { echo "netns-hosts: loss= needs nft (apt-get install nftables)" >&2; exit 1; }
        # Per mille, both directions; TCP resends what is lost, so only time is lost.
        permille=$(awk -v p="$loss" 'BEGIN { printf "%d", p * 10 + 0.5 }')
        ip netns exec "$ns" nft -f - <<EOF
table inet loss {
    chain incoming { type filter hook input priority 0; numgen random mod 1000 < $permille counter drop; }
    chain outgoing { type filter hook output priority 0; numgen random mod 1000 < $permille counter drop; }
}
EOF
    fi
done

subnet_mask="$subnet.0/24"
export NETNS_HOSTFILE="$run_dir/hostfile" NETNS_HOSTS="${addresses[*]}" NETNS_LINKS="${links[*]}"
export OMPI_MCA_orte_default_hostfile="$run_dir/hostfile" OMPI_MCA_plm_rsh_agent="$run_dir/agent"
export OMPI_MCA_plm_rsh_no_tree_spawn=1 OMPI_MCA_btl=tcp,self
export OMPI_MCA_btl_tcp_if_include="$subnet_mask" OMPI_MCA_oob_tcp_if_include="$subnet_mask"
export OMPI_MCA_hwloc_base_binding_policy=none
echo "netns-hosts: $hosts host(s) ${addresses[*]} on $subnet_mask, $slots slot(s) each, links ${links[*]}" >&2
run_command "$@"
# What the shaping did, so that a run can show its link was really slowed: packets dropped (both
# directions) and the times tbf held a packet back for the rate (both directions).
for shape in "${shapes[@]}"; do
    host=${shape%%:*} ns=$(namespace "${shape%%:*}")
    dropped=$(ip netns exec "$ns" nft list table inet loss 2>/dev/null | awk '/counter/ {for (i = 1; i < NF; i++) if ($i == "packets") n += $(i + 1)} END {print n + 0}')
    throttled=$( (ip netns exec "$ns" tc -s qdisc show dev eth0; tc -s qdisc show dev "${id}h$host") \
        | awk '/overlimits/ {for (i = 1; i < NF; i++) if ($i == "overlimits") n += $(i + 1)} END {print n + 0}')
    echo "netns-hosts: host $host ($shape): $dropped packets dropped, $throttled held back for the rate" >&2
done
exit "$command_status"
