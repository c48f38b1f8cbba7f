#!/usr/bin/env bash
# Figures and their goals, one row each, printed as one table at the end: sourced by scripts/lab.sh (the
# scenarios and the demo) and by the bench scripts.
# goal functional|timing NAME MET|MISSED|- FIGURE GOAL [reported]: a row ("-": a figure printed for
# comparison, without a goal). A functional goal MISSED fails the run: a FAIL line, counted in failures, unless
# "reported" says that the caller's own result line already failed on it. A timing goal is printed, never
# enforced: the machines are noisy and the VM is emulated.
goal_rows=()
goal() {
  goal_rows+=("$3|$1|$2|$4|$5")
  if [ "$1" = functional ] && [ "$3" != MET ] && [ "${6:-}" != reported ]; then
    echo "${goal_prefix:-e2e}: FAIL goal $2: $4 (goal: $5)"; failures=$((${failures:-0} + 1))
  fi
}
# below A B: A ≤ B, as numbers with decimals (for met).
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
# met CONDITION...: MET when the test command succeeds, else MISSED.
met() { if "$@"; then echo MET; else echo MISSED; fi; }
goals_table() {
  echo "${goal_prefix:-e2e}: figures and goals (a functional goal missed fails the run; timing goals are printed, never enforced):"
  printf '%s\n' "${goal_rows[@]}" | awk -F'|' '{printf "  %-6s  %-10s  %-34s  %s  (goal: %s)\n", $1, $2, $3, $4, $5}'
}
