# bench/cpu.sh: CPU by component over one second of a case, from /proc; sourced by bench/run
# and bench/leads.sh. Jiffies of our own processes, by group; "rest of machine" is everything
# else, the noise other users add on a shared host.
#
# The caller sets VAR (the stack's FL_VAR) and CPU_GROUPS (group names, in print order: postgres,
# nginx, wrk, or the name of a FastCGI pool whose supervisor pid is in $VAR/run/NAME.pid, where
# NAME is the group name without an "fl-" prefix).

cpu_group_pids() {   # cpu_group_pids GROUP
    local pm
    case $1 in
        postgres) pm=$(head -1 "$VAR/pg/data/postmaster.pid" 2>/dev/null) && { echo "$pm"; pgrep -P "$pm"; } ;;
        nginx) pm=$(cat "$VAR/run/nginx.pid" 2>/dev/null) && { echo "$pm"; pgrep -P "$pm"; } ;;
        wrk) pgrep -x wrk ;;
        *) pm=$(cat "$VAR/run/${1#fl-}.pid" 2>/dev/null) && pgrep -P "$pm" ;;
    esac 2>/dev/null || true
}

cpu_snap() {   # all processes' utime+stime ("pid jiffies") and "cpu busy total", in one pass
    awk '$1 == "cpu" { print "cpu", $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
    # a process that exits between the glob and the read makes cat fail: not an error here
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{ pid = $1; sub(/^.*\) /, ""); print pid, $12 + $13 }'
}

# cpu_sample FILE DELAY: after DELAY seconds, writes to FILE one line "group N%, ..., rest of
# machine N% (busy N% of M00%)", percentages of one core. Run it in the background: it never
# fails, and writes n/a at worst.
cpu_sample() {
    set +e
    sleep "$2"
    local g p out="" s0 s1 map
    cpu_group_map() { for g in $CPU_GROUPS; do for p in $(cpu_group_pids "$g"); do echo "$p $g"; done; done; }
    map=$(cpu_group_map)
    s0=$(cpu_snap); sleep 1; s1=$(cpu_snap)
    # a process of a group that started during the second (an autovacuum worker, a
    # PostgreSQL backend) counts with its group, all its time being inside the second
    map=$( { echo "$map"; cpu_group_map; } | sort -u)
    # percentages of one core over the real interval (total jiffies / cores)
    out=$(awk -v ncpu="$(nproc)" -v order="$CPU_GROUPS" '
        FNR == 1 { fi++ }
        fi == 1 { grp[$1] = $2; next }
        fi == 2 { if ($1 == "cpu") { b0 = $2; t0 = $3 } else j0[$1] = $2; next }
        { if ($1 == "cpu") { b1 = $2; t1 = $3 } else d[$1] = $2 - ($1 in j0 ? j0[$1] : 0) }
        END {
            span = (t1 - t0) / ncpu; if (span <= 0) exit
            for (p in d) if (p in grp) { g[grp[p]] += d[p]; ours += d[p] }
            n = split(order, o, " ")
            for (i = 1; i <= n; i++) if (g[o[i]] > 0) printf "%s %d%%, ", o[i], g[o[i]] * 100 / span
            rest = (b1 - b0 - ours) * 100 / span; if (rest < 0) rest = 0
            printf "rest of machine %d%% (busy %d%% of %d00%%)", rest, (b1 - b0) * 100 / span, ncpu
        }' <(echo "$map") <(echo "$s0") <(echo "$s1") 2>/dev/null)
    echo "${out:-n/a}" > "$1"
}
