#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Tests of simsiam_launch (tools/simsiam_launch.cpp): the variables each rank sees, failure
# propagation (exit code, signal, SIGTERM then SIGKILL, nothing left running), option errors,
# programs that cannot run, several nodes, --log-dir, and signals sent to the launcher.
# The ranks are small sh scripts; the whole run takes a few seconds.
#
#   tests/launch/test_launch.sh path/to/simsiam_launch
#
# shellcheck disable=SC2016  # the ranks' sh scripts are in single quotes: $RANK is theirs
set -u
export LC_ALL=C
unset OMP_NUM_THREADS  # the launcher sets it to 1 when unset; test 1b presets it

LAUNCH=${1:?usage: test_launch.sh path/to/simsiam_launch}
if [[ ! -x $LAUNCH ]]; then
  echo "FAIL: '$LAUNCH' is not an executable file" >&2
  exit 2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/simsiam_launch_test.XXXXXX")
failures=0
current=""

# Whatever a failed test left running is killed; its pids are in files named *.pid.
cleanup() {
  local file
  while IFS= read -r file; do
    kill -KILL "$(cat "$file")" 2>/dev/null
  done < <(find "$WORK" -name '*.pid' 2>/dev/null)
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "FAIL ($current): $*" >&2
  failures=$((failures + 1))
}

begin() {
  current=$1
  echo "--- $current"
}

now_ms() {
  local t=${EPOCHREALTIME/./}
  echo $((10#$t / 1000))
}

# run NAME ARGS...: runs the launcher (20 s at most); sets rc and elapsed_ms; its stdout and
# stderr go to $WORK/NAME.out and $WORK/NAME.err.
run() {
  local name=$1
  shift
  local start
  start=$(now_ms)
  timeout -k 2 20 "$LAUNCH" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  rc=$?
  elapsed_ms=$(($(now_ms) - start))
}

expect_rc() {  # expect_rc NAME EXPECTED
  if [[ $rc != "$2" ]]; then
    fail "exit status $rc, expected $2; launcher stderr:"
    sed 's/^/    /' "$WORK/$1.err" >&2
  fi
}

expect_stderr() {  # expect_stderr NAME TEXT: the launcher's stderr contains TEXT (fixed string)
  if ! grep -qF -- "$2" "$WORK/$1.err"; then
    fail "stderr does not contain '$2'; it is:"
    sed 's/^/    /' "$WORK/$1.err" >&2
  fi
}

expect_faster() {  # expect_faster MS
  if ((elapsed_ms > $1)); then fail "took ${elapsed_ms} ms, expected under $1 ms"; fi
}

expect_var() {  # expect_var FILE NAME VALUE: FILE (the output of env) has NAME=VALUE
  local actual
  if ! actual=$(grep -m1 "^$2=" "$1"); then
    fail "$(basename "$1"): $2 is not set, expected $3"
  elif [[ $actual != "$2=$3" ]]; then
    fail "$(basename "$1"): $actual, expected $2=$3"
  fi
}

# Whether a process runs (a zombie does not count).
alive() {
  kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]
}

expect_all_gone() {  # expect_all_gone DIR: no process whose pid is in DIR/*.pid still runs
  local file pid
  for file in "$1"/*.pid; do
    [[ -e $file ]] || continue
    pid=$(cat "$file")
    if alive "$pid"; then fail "process $pid ($(basename "$file")) is still running"; fi
  done
}

wait_for_files() {  # wait_for_files FILE...: up to 5 s
  local file missing
  for _ in $(seq 100); do
    missing=0
    for file in "$@"; do [[ -s $file ]] || missing=1; done
    ((missing == 0)) && return 0
    sleep 0.05
  done
  fail "timed out waiting for $*"
  return 1
}

# The rank script of the failure tests: ranks other than $2 start `sleep 60` as a child (so the
# launcher must stop the rank's process group, not only the rank), record the pids and wait;
# rank $2 waits until they have (5 s at most), then exits with status $3 (or kills itself with
# SIGKILL for "KILL"). A non-empty $4 makes the ranks ignore SIGTERM.
readonly SLEEPER='
dir=$1 failing=$2 status=$3 ignore_term=$4
[ -n "$ignore_term" ] && trap "" TERM
echo $$ > "$dir/shell_$RANK.pid"
if [ "$RANK" = "$failing" ]; then
  r=0 tries=0
  while [ "$r" -lt "$WORLD_SIZE" ] && [ "$tries" -lt 250 ]; do
    if [ "$r" = "$failing" ] || [ -s "$dir/sleep_$r.pid" ]; then
      r=$((r + 1))
    else
      sleep 0.02
      tries=$((tries + 1))
    fi
  done
  if [ "$status" = KILL ]; then kill -KILL $$; fi
  exit "$status"
fi
sleep 60 &
echo $! > "$dir/sleep_$RANK.tmp" && mv "$dir/sleep_$RANK.tmp" "$dir/sleep_$RANK.pid"
wait
'

# --- 1: each of 3 ranks sees its variables ---------------------------------------------------
begin "1 variables of 3 ranks"
d=$WORK/env3 && mkdir -p "$d"
run env3 --nproc 3 -- sh -c 'env > "$1/rank_$RANK.env"' sh "$d"
expect_rc env3 0
for r in 0 1 2; do
  f=$d/rank_$r.env
  if [[ ! -f $f ]]; then
    fail "rank $r did not run (no $f)"
    continue
  fi
  expect_var "$f" RANK $r
  expect_var "$f" WORLD_SIZE 3
  expect_var "$f" LOCAL_RANK $r
  expect_var "$f" LOCAL_WORLD_SIZE 3
  expect_var "$f" GROUP_RANK 0
  expect_var "$f" MASTER_ADDR 127.0.0.1
  expect_var "$f" MASTER_PORT 29500
  expect_var "$f" OMP_NUM_THREADS 1
done
expect_stderr env3 "OMP_NUM_THREADS=1"

begin "1b --master-addr, --master-port, OMP_NUM_THREADS kept, the environment passed on"
d=$WORK/env_custom && mkdir -p "$d"
OMP_NUM_THREADS=4 SIMSIAM_LAUNCH_TEST_VAR="a b" RANK=99 \
  run env_custom --nproc-per-node=2 --master-addr 10.1.2.3 --master-port 12345 \
  sh -c 'env > "$1/rank_$RANK.env"' sh "$d"
expect_rc env_custom 0
for r in 0 1; do
  f=$d/rank_$r.env
  [[ -f $f ]] || { fail "rank $r did not run"; continue; }
  expect_var "$f" RANK $r
  expect_var "$f" MASTER_ADDR 10.1.2.3
  expect_var "$f" MASTER_PORT 12345
  expect_var "$f" OMP_NUM_THREADS 4
  expect_var "$f" SIMSIAM_LAUNCH_TEST_VAR "a b"
done
if grep -qF OMP_NUM_THREADS "$WORK/env_custom.err"; then
  fail "printed the OMP_NUM_THREADS notice although the variable was set"
fi

# --- 2: a rank exiting with 3 stops the others --------------------------------------------------
begin "2 rank 1 exits with 3"
d=$WORK/exit3 && mkdir -p "$d"
run exit3 --nproc 3 --grace-seconds 10 -- sh -c "$SLEEPER" sh "$d" 1 3 ""
expect_rc exit3 3
expect_faster 4000  # SIGTERM ends the sleepers at once; the 10 s grace is not waited for
expect_stderr exit3 "rank 1 (local rank 1"
expect_stderr exit3 "failed: exit code 3"
expect_all_gone "$d"

begin "2b ranks ignoring SIGTERM get SIGKILL after --grace-seconds"
d=$WORK/grace && mkdir -p "$d"
run grace --nproc 3 --grace-seconds 1 -- sh -c "$SLEEPER" sh "$d" 0 4 ignore
expect_rc grace 4
if ((elapsed_ms < 900 || elapsed_ms > 5000)); then
  fail "took ${elapsed_ms} ms, expected about the 1 s grace period"
fi
expect_stderr grace "rank 0 (local rank 0"
expect_stderr grace "sending SIGKILL"
expect_all_gone "$d"

# --- 3: a rank killed by SIGKILL ---------------------------------------------------------------
begin "3 a rank killed by SIGKILL"
d=$WORK/sigkill && mkdir -p "$d"
run sigkill --nproc 2 -- sh -c "$SLEEPER" sh "$d" 0 KILL ""
expect_rc sigkill 137
expect_faster 4000
expect_stderr sigkill "rank 0 (local rank 0"
expect_stderr sigkill "killed by signal SIGKILL"
expect_all_gone "$d"

# --- 4: invalid options name the expected value; the program is not run -----------------------
begin "4 invalid options"
d=$WORK/options && mkdir -p "$d"
bad_option() {  # bad_option EXPECTED_TEXT OPTIONS...
  local expected=$1
  shift
  run options "$@"
  if [[ $rc != 2 ]]; then fail "'$*' exited with $rc, expected 2 (invalid options)"; fi
  expect_stderr options "$expected"
  if [[ -e $d/ran ]]; then
    fail "'$*' ran the program"
    rm -f "$d/ran"
  fi
}
bad_option "expected --nproc-per-node >= 1, got 0" --nproc 0 touch "$d/ran"
bad_option "expected --nproc-per-node >= 1, got -2" --nproc-per-node -2 touch "$d/ran"
bad_option "expected a program to run" --nproc 2
bad_option "expected a program to run" --nproc 2 --
bad_option "expected 0 <= --node-rank < --nnodes (2), got 2" --nnodes 2 --node-rank 2 touch "$d/ran"
bad_option "expected 0 <= --node-rank < --nnodes (1), got -1" --node-rank -1 touch "$d/ran"
bad_option "expected --nnodes >= 1, got 0" --nnodes 0 touch "$d/ran"
bad_option "expected 1 <= --master-port <= 65535, got 0" --master-port 0 touch "$d/ran"
bad_option "expected 1 <= --master-port <= 65535, got 65536" --master-port 65536 touch "$d/ran"
bad_option "expected 0 <= --grace-seconds <= 86400 s, got -1 s" --grace-seconds -1 touch "$d/ran"
bad_option "expected 0 <= --grace-seconds <= 86400 s, got nan s" --grace-seconds nan touch "$d/ran"
bad_option "unknown option '--bogus'" --bogus 3 touch "$d/ran"
bad_option "--nproc-per-node" --nproc two touch "$d/ran"

# --- 5: a program that cannot run --------------------------------------------------------------
begin "5 a program that cannot run"
d=$WORK/noprog && mkdir -p "$d"
run noprog --nproc 2 "$d/no_such_program" --flag
expect_rc noprog 127
expect_stderr noprog "simsiam_launch: cannot run '$d/no_such_program': No such file or directory"
run noprog --nproc 1 simsiam_launch_test_no_such_program_$$
expect_rc noprog 127
expect_stderr noprog "cannot run 'simsiam_launch_test_no_such_program_$$'"
printf '#!/bin/sh\nexit 0\n' >"$d/not_executable" && chmod 644 "$d/not_executable"
run noprog --nproc 1 "$d/not_executable"
expect_rc noprog 127
expect_stderr noprog "Permission denied"

# --- 6: the second of two nodes -----------------------------------------------------------------
begin "6 --nnodes 2 --node-rank 1 --nproc 2"
d=$WORK/node1 && mkdir -p "$d"
run node1 --nnodes 2 --node-rank 1 --nproc 2 --master-addr node0.example --master-port 23456 \
  -- sh -c 'env > "$1/local_$LOCAL_RANK.env"' sh "$d"
expect_rc node1 0
for l in 0 1; do
  f=$d/local_$l.env
  [[ -f $f ]] || { fail "local rank $l did not run"; continue; }
  expect_var "$f" RANK $((2 + l))
  expect_var "$f" WORLD_SIZE 4
  expect_var "$f" LOCAL_RANK $l
  expect_var "$f" LOCAL_WORLD_SIZE 2
  expect_var "$f" GROUP_RANK 1
  expect_var "$f" MASTER_ADDR node0.example
  expect_var "$f" MASTER_PORT 23456
done

# --- 7: --log-dir ------------------------------------------------------------------------------
begin "7 --log-dir"
d=$WORK/logs/run1  # created by the launcher, parents included
run logs --nproc 2 --log-dir "$d" -- \
  sh -c 'echo "stdout of rank $RANK"; echo "stderr of rank $RANK" >&2'
expect_rc logs 0
for r in 0 1; do
  f=$d/rank_$r.log
  if [[ ! -f $f ]]; then
    fail "no $f"
    continue
  fi
  for stream in stdout stderr; do
    grep -qx "$stream of rank $r" "$f" || fail "rank_$r.log lacks '$stream of rank $r': $(cat "$f")"
  done
  other=$((1 - r))
  if grep -q "of rank $other" "$f"; then fail "rank_$r.log has rank $other's output"; fi
done
if grep -q "of rank" "$WORK/logs.out" "$WORK/logs.err"; then
  fail "the ranks' output reached the launcher's stdout or stderr"
fi
run logs_again --nproc 1 --log-dir "$d" -- echo second run
if ! grep -qx "second run" "$d/rank_0.log" || grep -q "of rank" "$d/rank_0.log"; then
  fail "a second run did not overwrite rank_0.log: $(cat "$d/rank_0.log")"
fi

# --- 8: SIGTERM sent to the launcher ------------------------------------------------------------
begin "8 SIGTERM to the launcher"
d=$WORK/sigterm && mkdir -p "$d"
start=$(now_ms)
"$LAUNCH" --nproc 2 -- sh -c "$SLEEPER" sh "$d" none 0 "" \
  >"$WORK/sigterm.out" 2>"$WORK/sigterm.err" &
launcher=$!
echo "$launcher" >"$d/launcher.pid"
if wait_for_files "$d/sleep_0.pid" "$d/sleep_1.pid"; then
  kill -TERM "$launcher"
  for _ in $(seq 200); do  # a launcher that hangs fails the test after 10 s
    alive "$launcher" || break
    sleep 0.05
  done
  elapsed_ms=$(($(now_ms) - start))
  kill -KILL "$launcher" 2>/dev/null
  wait "$launcher"
  rc=$?
  if [[ $rc == 0 ]]; then fail "exit status 0, expected non-zero"; fi
  expect_rc sigterm 143
  expect_faster 5000
  expect_stderr sigterm "received SIGTERM"
  expect_all_gone "$d"
fi

# --- 9: no rank outlives a launcher killed outright (Linux: PR_SET_PDEATHSIG) -------------------
if [[ $(uname -s) == Linux ]]; then
  begin "9 SIGKILL to the launcher"
  d=$WORK/orphans && mkdir -p "$d"
  rank_script='echo $$ > "$1/rank_$RANK.tmp" && mv "$1/rank_$RANK.tmp" "$1/rank_$RANK.pid"
    exec sleep 60'
  "$LAUNCH" --nproc 2 -- sh -c "$rank_script" sh "$d" >"$WORK/orphans.out" 2>"$WORK/orphans.err" &
  launcher=$!
  if wait_for_files "$d/rank_0.pid" "$d/rank_1.pid"; then
    sleep 0.2  # the ranks have exec'd sleep
    kill -KILL "$launcher"
    wait "$launcher" 2>/dev/null
    for _ in $(seq 40); do
      alive "$(cat "$d/rank_0.pid")" || alive "$(cat "$d/rank_1.pid")" || break
      sleep 0.05
    done
    expect_all_gone "$d"
  fi
fi

echo
if ((failures > 0)); then
  echo "simsiam_launch tests: $failures failure(s)" >&2
  exit 1
fi
echo "simsiam_launch tests: all passed"
