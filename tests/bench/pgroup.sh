# pgroup.sh: start a daemon in a process group of its own and end that whole group (sourced by the
# benchmark scripts here). Nothing is ever found or killed by name: a script kills the groups it started,
# by their id, and checks that nothing of them is left.
#   pg_start LOG CMD ARGS...   runs CMD under setsid in the background (stdout+stderr appended to LOG);
#                              sets pg_last to its pid, which is also its process-group id
#   pg_members PGID            pids of the live processes in the group (zombies excluded)
#   pg_stop PGID [SECONDS]     SIGTERM to the group, up to SECONDS (10) for it to go, then SIGKILL;
#                              returns 1 (and says so) if anything of the group is still there after that

pg_start() {
  local log=$1; shift
  # setsid without --fork: a background job of a script is no group leader, so setsid calls setsid(2)
  # and execs CMD in place; $! is CMD, the leader of a new session and process group.
  setsid "$@" >>"$log" 2>&1 &
  pg_last=$!
  local pgid="" i
  for i in $(seq 1 50); do
    pgid=$(awk '{ sub(/.*\) /, ""); print $3 }' "/proc/$pg_last/stat" 2>/dev/null || true)
    [ "$pgid" = "$pg_last" ] && return 0
    sleep 0.02
  done
  echo "pgroup: $1 (pid $pg_last) is not the leader of its own process group (pgid ${pgid:-?})" >&2
  kill -KILL "$pg_last" 2>/dev/null || true
  return 1
}

pg_members() {
  local f line rest
  for f in /proc/[0-9]*/stat; do
    line=$(cat "$f" 2>/dev/null) || continue
    rest=${line##*) }
    # rest: state ppid pgrp ...
    set -- $rest
    [ "${3:-}" = "$pg_want" ] && [ "$1" != Z ] && echo "${f//[^0-9]/}"
  done
}

pg_stop() {
  local pgid=$1 secs=${2:-10} i
  [ -n "$pgid" ] || return 0
  pg_want=$pgid
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for i in $(seq 1 $(( secs * 10 ))); do
    [ -z "$(pg_members)" ] && break
    sleep 0.1
  done
  if [ -n "$(pg_members)" ]; then
    echo "pgroup: group $pgid still running after ${secs}s of SIGTERM: SIGKILL" >&2
    kill -KILL -- "-$pgid" 2>/dev/null || true
    sleep 0.5
  fi
  wait "$pgid" 2>/dev/null || true
  if [ -n "$(pg_members)" ]; then
    echo "pgroup: processes of group $pgid left running: $(pg_members | tr '\n' ' ')" >&2
    return 1
  fi
  return 0
}
