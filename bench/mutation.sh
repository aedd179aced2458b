#!/usr/bin/env bash
# Mutation testing of the pure core modules, each against its own tests.
#
#   bench/mutation.sh                 every target below
#   bench/mutation.sh tokens mail     only the targets whose module path contains a word
#
# mutmut 2.5.x (not a project dependency) is installed by this script into a
# throw-away virtualenv ($MUTMUT_VENV, default /tmp/newsletter-mutmut-venv). The
# tests run with the project's .venv (make it first: see the README). Work happens
# in a copy of the project per target under bench/out/mutation-work (not
# committed), so the work tree is never mutated. A rerun keeps mutmut's cache
# there: a killed mutant stays killed while its line is unchanged, every other
# one is tested again. For figures from scratch, and after changing a target's
# functions (mutmut keeps skipped mutants skipped): rm -rf bench/out/mutation-work.
#
# Prints per target: mutants, killed, survived, kill rate over all mutants and
# over the non-equivalent ones (bench/mutation-equivalent.txt lists the
# equivalent mutants, each with why). The surviving non-equivalent mutants are
# printed as diffs; the whole report is kept in bench/out/mutation-report.txt.
# Not part of CI: it takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# One line per target:  module | top-level functions, classes or constants to
# mutate (empty: all of the module) | tests (pytest arguments)
TARGETS=(
  # (the 200-example round-trip property test takes ~25 s a run: format_digest's
  # mutants are killed by an exact test in test_digest_edges.py instead; the
  # CLI tests of test_lines_and_files.py are left out for time: its in-process
  # test_only_digest_files_are_read checks the same file lists)
  "newsletter/digest.py | | tests/test_digest_edges.py tests/test_digest.py tests/test_lines_and_files.py --deselect tests/test_digest.py::test_format_then_parse_round_trips --deselect tests/test_lines_and_files.py::test_check_prints_file_and_line_once --deselect tests/test_lines_and_files.py::test_check_ignores_them_and_lists_them_with_v --deselect tests/test_lines_and_files.py::test_build_and_publish_ignore_them"
  "newsletter/tokens.py | | tests/test_tokens.py tests/test_bounces_verp.py tests/test_mail_headers.py tests/test_mail.py::test_only_the_outbox_falls_back_to_the_dev_key"
  "newsletter/headers.py | | tests/test_mail_headers.py tests/test_mail.py"
  "newsletter/text.py | _START _ASCII_RUN _TRAILING _CLOSERS _DANGLING _wide _is_iri_char _trim url_spans urls linkify Shortened _is_word_char shorten _cut | tests/test_urls.py tests/test_shorten.py"
  "newsletter/mail.py | unsubscribe_url unsubscribe_mailto EditionEmail _TOKEN _check_token | tests/test_mail_headers.py tests/test_mail.py"
  "newsletter/mime.py | | tests/test_mime.py tests/test_mail_headers.py"
  "newsletter/smtp_replies.py | | tests/test_smtp_replies.py"
)

PYTHON="$ROOT/.venv/bin/python"
[ -x "$PYTHON" ] || { echo "mutation: $PYTHON missing; create the project venv first (README)" >&2; exit 2; }
MUTMUT_VENV=${MUTMUT_VENV:-/tmp/newsletter-mutmut-venv}
if [ ! -x "$MUTMUT_VENV/bin/mutmut" ]; then
  echo "mutation: installing mutmut 2.5.1 into $MUTMUT_VENV"
  python3 -m venv "$MUTMUT_VENV"
  "$MUTMUT_VENV/bin/pip" install -q 'mutmut==2.5.1'
fi

WORK=${MUTATION_WORK:-$ROOT/bench/out/mutation-work}
mkdir -p "$WORK" "$ROOT/bench/out"
report="${MUTATION_REPORT:-$ROOT/bench/out/mutation-report.txt}"  # kept (bench/out is not committed)
: >"$report"
for target in "${TARGETS[@]}"; do
  IFS='|' read -r module functions tests <<<"$target"
  module=$(echo "$module" | xargs); functions=$(echo "$functions" | xargs); tests=$(echo "$tests" | xargs)
  if [ $# -gt 0 ]; then
    wanted=no
    for word in "$@"; do [[ $module == *"$word"* ]] && wanted=yes; done
    [ $wanted = yes ] || continue
  fi
  missing=no
  for t in $tests; do [[ $t == -* || $t == *::* || -e "$ROOT/$t" ]] || missing=yes; done
  if [ ! -e "$ROOT/$module" ] || [ $missing = yes ]; then
    echo "mutation: skipping $module: $module or one of its tests ($tests) does not exist" | tee -a "$report"
    continue
  fi
  copy="$WORK/$(basename "$module" .py)"
  mkdir -p "$copy"
  # A fresh copy of the project, keeping only mutmut's cache from a previous run.
  find "$copy" -mindepth 1 -maxdepth 1 ! -name .mutmut-cache -exec rm -rf {} +
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | grep -zv '^bench/' \
    | xargs -0 cp --parents -t "$copy" 2>/dev/null || true)
  cp "$ROOT/bench/mutmut_config.py" "$ROOT/bench/mutmut_exit.py" "$copy/"
  echo "== $module ($tests)"
  (
    cd "$copy"
    # PYTHONPATH: the copy's newsletter package, not the editable install's.
    export PYTHONPATH="$copy" MUTATION_FUNCTIONS="$functions"
    # mutmut 2.5 counts only exit status 1 as "tests failed": pytest's 2 (a mutant
    # that breaks the module's import fails collection) would count as survived,
    # so the plugin mutmut_exit makes every failed run exit 1. (Not a shell
    # wrapper: mutmut's timeout would kill the shell and leave pytest running.)
    runner="$PYTHON -m pytest -p mutmut_exit -x -q -p no:cacheprovider -p no:xdist -W ignore $tests"
    $PYTHON -c "import newsletter, sys; sys.exit(0 if newsletter.__file__.startswith('$copy') else 1)" \
      || { echo "mutation: the copy's package is not the one imported" >&2; exit 2; }
    # mutmut 2.5's test process sometimes dies and leaves mutmut waiting for ever
    # (seen on a loaded machine): when mutmut has had no test process for three
    # looks in a row, it is stopped and started again; its cache keeps the results.
    for attempt in 1 2 3 4 5; do
      "$MUTMUT_VENV/bin/mutmut" run --paths-to-mutate "$module" --runner "$runner" \
        --tests-dir tests --simple-output --no-progress >>"$copy/mutmut.log" 2>&1 &
      pid=$!
      idle=0
      while kill -0 "$pid" 2>/dev/null; do
        sleep 20
        # Alive: mutmut's test process (spawn_main) or its baseline pytest run.
        if pgrep -P "$pid" -f "spawn_main|-m pytest" >/dev/null 2>&1; then
          idle=0
        else
          idle=$((idle + 1))
        fi
        if [ "$idle" -ge 3 ]; then
          echo "mutation: mutmut stalled (attempt $attempt); restarting it" >&2
          pkill -P "$pid" 2>/dev/null || true
          kill "$pid" 2>/dev/null || true
          break
        fi
      done
      wait "$pid" 2>/dev/null && break || true
      [ "$idle" -ge 3 ] || break
    done
    "$PYTHON" "$ROOT/bench/mutation_report.py" "$copy/.mutmut-cache" "$module" \
      "$ROOT/bench/mutation-equivalent.txt" --functions "$functions" --diffs "$MUTMUT_VENV/bin/mutmut"
  ) | tee -a "$report"
done
echo
echo "== summary"
grep "^RESULT\|^mutation: skipping" "$report" || true
