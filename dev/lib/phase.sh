# shellcheck shell=bash
# One line per phase of a dev script, the noisy output in a log file:
#
#   [ 0:03] installing Debian packages: postgresql redis-server … done in 41s (log: /tmp/custodian-dev/logs/install.log)
#
# On a terminal the line counts the phase's time and shows the last line of
# its log while it runs. When a phase fails, its last PHASE_TAIL (30) lines
# go to stderr and the script exits non-zero, naming the phase.
#
#   phase LABEL LOG COMMAND...   run COMMAND (a program or a function, with
#                                `set -e` in force) with its stdout and stderr
#                                in LOG (truncated first), stdin /dev/null
#   phase_begin LABEL LOG        the same by hand, around work done in this
#   phase_end STATUS [TEXT]      shell (starting a background process, then
#                                waiting for it): TEXT follows "done in Ns" or
#                                says why it failed
#   phase_note TEXT              a line with the clock and nothing to run
#   phase_die WHAT LOG [STATUS [WHY]]  the tail of LOG, then exit naming WHAT
#   phase_stop                   for an EXIT trap: ends an open phase's line
#
# PHASE_FD: the descriptor the phase lines go to (default 1; dev/services.sh
# uses 2, its stdout being `eval`ed). DEV_PHASE_T0: the clock's zero (epoch
# seconds), exported, so that dev/services.sh run by dev/run counts on.

: "${DEV_PHASE_T0:=$(date +%s)}"
export DEV_PHASE_T0
PHASE_FD=${PHASE_FD:-1}
PHASE_TAIL=${PHASE_TAIL:-30}
PHASE_SCRIPT=${PHASE_SCRIPT:-$0}
PHASE_LABEL=
PHASE_LOG=
PHASE_HEAD=
PHASE_STARTED=0
PHASE_TICKER=

_phase_now() { date +%s; }

# 75 → "1:15", 3725 → "62:05"
_phase_clock() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }

# 7 → "7s", 125 → "2m 05s"
_phase_took() {
  if [ "$1" -lt 60 ]; then printf '%ds' "$1"; else printf '%dm %02ds' $(($1 / 60)) $(($1 % 60)); fi
}

_phase_say() { printf '%s' "$*" >&"$PHASE_FD"; }

# While a phase runs on a terminal: its time and the last line of its log,
# rewritten once a second, cut to the terminal's width. Ends with the phase,
# or with the script if that goes first. A long label is cut short to leave
# room for the time and some of the log line.
_phase_tick() {
  local parent=$1 width head last line
  while sleep 1; do
    kill -0 "$parent" 2>/dev/null || exit 0
    width=$(($(tput cols 2>/dev/null || echo 80) - 1))
    head=$PHASE_HEAD
    [ $((${#head} + 30)) -gt "$width" ] && head="${head:0:width-33}… "
    last=$(tail -n 1 "$PHASE_LOG" 2>/dev/null | tr -d '\r' | tr -s '[:space:]' ' ' | tr -cd '[:print:]')
    last=${last# }
    line="$head$(_phase_clock $(($(_phase_now) - PHASE_STARTED)))  $last"
    printf '\r\033[K%s' "${line:0:width}"
  done
}

_phase_untick() {
  if [ -n "$PHASE_TICKER" ]; then
    kill "$PHASE_TICKER" 2>/dev/null || true
    wait "$PHASE_TICKER" 2>/dev/null || true
    PHASE_TICKER=
    printf '\r\033[K%s' "$PHASE_HEAD" >&"$PHASE_FD"
  fi
}

phase_begin() {
  PHASE_LABEL=$1
  PHASE_LOG=$2
  mkdir -p "$(dirname "$PHASE_LOG")"
  PHASE_STARTED=$(_phase_now)
  PHASE_HEAD="[$(printf '%5s' "$(_phase_clock $((PHASE_STARTED - DEV_PHASE_T0)))")] $PHASE_LABEL … "
  _phase_say "$PHASE_HEAD"
  if [ -t "$PHASE_FD" ] && [ "${TERM:-dumb}" != dumb ]; then
    _phase_tick $$ 1>&"$PHASE_FD" 2>/dev/null </dev/null &
    PHASE_TICKER=$!
  fi
}

phase_end() {
  local status=${1:-0} text=${2:-} took
  _phase_untick
  took=$(_phase_took $(($(_phase_now) - PHASE_STARTED)))
  if [ "$status" = 0 ]; then
    _phase_say "done in $took${text:+, $text} (log: $PHASE_LOG)"$'\n'
    PHASE_LABEL=
    return 0
  fi
  _phase_say "FAILED after $took (log: $PHASE_LOG)"$'\n'
  local label=$PHASE_LABEL
  PHASE_LABEL=
  phase_die "${label%% (*}" "$PHASE_LOG" "$status" "$text"
}

phase() {
  local label=$1 log=$2 status errexit=
  shift 2
  phase_begin "$label" "$log"
  # Not `( … ) || status=$?`: in a list like that bash ignores `set -e`
  # inside COMMAND, so a failing step in a function would go unnoticed.
  [[ $- == *e* ]] && errexit=1
  set +e
  (
    set -e
    "$@"
  ) >"$log" 2>&1 </dev/null
  status=$?
  [ -n "$errexit" ] && set -e
  phase_end "$status"
}

phase_note() {
  local t
  t=$(_phase_clock $(($(_phase_now) - DEV_PHASE_T0)))
  _phase_say "[$(printf '%5s' "$t")] $*"$'\n'
}

phase_die() {
  local what=$1 log=$2 status=${3:-1} why=${4:-}
  [ "$status" = 0 ] && status=1
  {
    echo "---- the last $PHASE_TAIL lines of $log:"
    tail -n "$PHASE_TAIL" "$log" 2>/dev/null || echo "(no log)"
    echo "----"
    echo "$PHASE_SCRIPT: $what failed${why:+: $why} (exit status $status; full log: $log)"
  } >&2
  exit "$status"
}

phase_stop() {
  _phase_untick
  if [ -n "$PHASE_LABEL" ]; then
    _phase_say "stopped (log: $PHASE_LOG)"$'\n'
    PHASE_LABEL=
  fi
}
