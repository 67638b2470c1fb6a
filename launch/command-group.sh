# Sourced by launch/netns-hosts.sh and launch/slurm-local.sh, after they set `trap teardown EXIT`:
# their command runs in a process group of its own, and an INT, TERM or HUP to the script ends that
# group and then the script (through its EXIT trap, which tears down what it made).
stop_command() {
    trap '' INT TERM HUP
    if [ -n "${command_pid:-}" ]; then
        kill -TERM -- "-$command_pid" 2>/dev/null
        # At most 5 s to end (a command that hangs in its end must not keep the teardown waiting),
        # then KILL.
        for ((tenth = 0; tenth < 50; tenth++)); do kill -0 "$command_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$command_pid" 2>/dev/null
        wait "$command_pid" 2>/dev/null
    fi
    exit 143
}
trap stop_command INT TERM HUP

# run_command COMMAND...: runs it to its end and leaves its exit status in command_status.
run_command() {
    setsid "$@" &
    command_pid=$!
    command_status=0
    wait "$command_pid" || command_status=$?
}
