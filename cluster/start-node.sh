#!/usr/bin/env bash
# Start Ray on one machine of a faice lab cluster, advertising what the machine is for.
#
# Ray's on-premise (local) provider runs the same start command on every worker, so the per-host part
# lives here: the host finds its pool in FAICE_POOLS ("IP-or-hostname=pool ..."; pools: train, eval),
# counts its GPUs with nvidia-smi and advertises
#   train -> {"train_slot": N}   trials ask for train_slot, so they only land on training machines
#   eval  -> {"eval_slot": N}    evaluation tasks (FID/IS) ask for eval_slot
#   head  -> nothing             the head runs the search driver, trial actors and the eval dispatcher
# with N = the number of GPUs (1 on a CPU-only machine). Token authentication is on (RAY_AUTH_MODE=token,
# the token from RAY_AUTH_TOKEN or Ray's token file); the dashboard listens on the head's own address.
#
#   bash cluster/start-node.sh --head [--pool head|train] [--port 6379] [--node-ip IP] [--dry-run] [-- RAY_ARGS]
#   bash cluster/start-node.sh --address HEAD_IP:6379 [--pool train|eval] [--node-ip IP] [--dry-run] [-- RAY_ARGS]
#
# --dry-run prints the `ray start` command and a `faice-node:` JSON line (pool, gpus, resources) instead
# of running it. Extra arguments after `--` go to `ray start` unchanged (e.g. --autoscaling-config=...).
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

head=0 address="" pool="" port=6379 node_ip="" dry=0 extra=()
while (($#)); do
    case "$1" in
        --head) head=1 ;;
        --address) address="$2"; shift ;;
        --pool) pool="$2"; shift ;;
        --port) port="$2"; shift ;;
        --node-ip) node_ip="$2"; shift ;;
        --dry-run) dry=1 ;;
        -h | --help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "start-node.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if ((head)) && [[ -n "$address" ]]; then
    echo "start-node.sh: give either --head or --address HEAD_IP:PORT, not both" >&2; exit 2
fi
if ((!head)) && [[ -z "$address" ]]; then
    echo "start-node.sh: a worker needs --address HEAD_IP:PORT (or --head for the head node)" >&2; exit 2
fi

count_gpus() {
    # one line "GPU i: ..." per device; no driver (or no nvidia-smi) -> 0
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true
    else
        echo 0
    fi
}
gpus=$(count_gpus)
gpus=${gpus:-0}

# the pool of this host: --pool, else the FAICE_POOLS entry naming one of its addresses or its hostname
# (a matching address also becomes the node's Ray address)
addresses=$(hostname -I 2>/dev/null || true)
if [[ -z "$pool" ]]; then
    if ((head)); then
        pool=head
    else
        for entry in ${FAICE_POOLS:-}; do
            host=${entry%%=*}
            for candidate in ${node_ip:-$addresses} "$(hostname)" "$(hostname -s 2>/dev/null)"; do
                if [[ "$host" == "$candidate" ]]; then
                    pool=${entry#*=}
                    [[ -z "$node_ip" && "$candidate" != "$(hostname)" && " $addresses " == *" $candidate "* ]] &&
                        node_ip=$candidate
                fi
            done
        done
        if [[ -z "$pool" ]]; then
            echo "start-node.sh: this host (${node_ip:-$addresses}, $(hostname)) has no pool in" \
                "FAICE_POOLS='${FAICE_POOLS:-}'; add 'ADDRESS=train' or 'ADDRESS=eval' for it" \
                "(cluster/lab.yaml) or pass --pool" >&2
            exit 2
        fi
    fi
fi
if [[ -z "$node_ip" ]]; then
    node_ip=$(echo "$addresses" | awk '{print $1}')
    node_ip=${node_ip:-127.0.0.1}
fi

slots=$((gpus > 0 ? gpus : 1))
case "$pool" in
    train) resources="{\"train_slot\": $slots}" ;;
    eval) resources="{\"eval_slot\": $slots}" ;;
    head)
        if ((!head)); then echo "start-node.sh: pool 'head' is only for --head" >&2; exit 2; fi
        resources="{}"
        ;;
    *) echo "start-node.sh: unknown pool '$pool'; valid pools: train, eval (head for --head)" >&2; exit 2 ;;
esac

# Token authentication, whatever the environment says: an inherited auth mode other than token (any
# mode) is refused, not passed on. The dashboard (and with it the job API) never listens on every
# interface unless asked for explicitly with FAICE_ALLOW_PUBLIC_DASHBOARD=1.
if [[ -n "${RAY_AUTH_MODE+x}" && "$RAY_AUTH_MODE" != token ]]; then
    echo "start-node.sh: RAY_AUTH_MODE='$RAY_AUTH_MODE' is refused; faice clusters use token authentication" \
        "(unset it, or set RAY_AUTH_MODE=token; the token: RAY_AUTH_TOKEN or ~/.ray/auth_token)" >&2
    exit 2
fi
export RAY_AUTH_MODE=token
dashboard_host=${FAICE_DASHBOARD_HOST:-$node_ip}
for arg in "$dashboard_host" "${extra[@]}"; do
    value=${arg#--dashboard-host=}
    value=${value//[\"\']/}
    if [[ "$value" == 0.0.0.0 || "$value" == "::" || "$value" == "[::]" || "$value" == "*" ]] &&
        [[ "${FAICE_ALLOW_PUBLIC_DASHBOARD:-0}" != 1 ]]; then
        echo "start-node.sh: a dashboard on $value (every interface) is refused: anyone who reaches the" \
            "machine could submit jobs; use the head's private address, or FAICE_ALLOW_PUBLIC_DASHBOARD=1" \
            "behind a firewall" >&2
        exit 2
    fi
done
if ((head)); then
    cmd=(ray start --head --port="$port" --node-ip-address="$node_ip"
        --dashboard-host="$dashboard_host" --num-gpus="$gpus" --resources="$resources"
        --disable-usage-stats)
else
    cmd=(ray start --address="$address" --node-ip-address="$node_ip" --num-gpus="$gpus" --resources="$resources")
fi
cmd+=("${extra[@]}")

if ((dry)); then
    printf 'faice-node: {"pool": "%s", "gpus": %d, "node_ip": "%s", "resources": %s}\n' \
        "$pool" "$gpus" "$node_ip" "$resources"
    printf 'RAY_AUTH_MODE=%s' "$RAY_AUTH_MODE"
    printf ' %q' "${cmd[@]}"
    printf '\n'
    exit 0
fi
echo "start-node.sh: $pool node, $gpus GPU(s), resources $resources, auth $RAY_AUTH_MODE"
exec "${cmd[@]}"
