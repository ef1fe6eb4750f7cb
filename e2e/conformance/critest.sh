#!/usr/bin/env bash
# critest.sh ENDPOINT NAME [critest flags...]: runs critest's conformance
# suite (not its benchmarks) against the CRI runtime at ENDPOINT, with the
# harness's image list, one spec at a time and no retries, and prints every
# spec that failed or skipped (with the first line of why), then
#     specs: T total, P passed, F failed, S skipped at run time, B not run
#     P passed, F failed, S skipped
# Results (critest's log, ginkgo's JSON and JUnit reports, the summary) go
# to $CONF_WORK/results/critest-NAME/.
#
# Environment: CONF_WORK (from setup.sh), CRITEST; RUNTIME_HANDLER (a
# RuntimeClass handler, e.g. crun; default: the runtime's default),
# FOCUS / SKIP (ginkgo regexps), TIMEOUT (ginkgo's, default 60m).
# Exit status: 0 when no spec failed, 1 when some did, 2 without a report.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
load_work

EP=${1:?usage: critest.sh ENDPOINT NAME [critest flags...]}
NAME=${2:?usage: critest.sh ENDPOINT NAME [critest flags...]}
shift 2
OUT=$CONF_WORK/results/critest-$NAME
rm -rf "$OUT"
mkdir -p "$OUT"

args=(
    --runtime-endpoint "$EP" --image-endpoint "$EP"
    --test-images-file "$HERE/images.yaml"
    --ginkgo.no-color --ginkgo.timeout "${TIMEOUT:-60m}"
    --ginkgo.json-report "$OUT/report.json" --ginkgo.junit-report "$OUT/junit.xml"
)
[ -z "${RUNTIME_HANDLER:-}" ] || args+=(--runtime-handler "$RUNTIME_HANDLER")
[ -z "${FOCUS:-}" ] || args+=(--ginkgo.focus "$FOCUS")
[ -z "${SKIP:-}" ] || args+=(--ginkgo.skip "$SKIP")
args+=("$@")

shm_ids() { ipcs -m | awk '$2 ~ /^[0-9]+$/ { print $2 }' | sort; }
shm_before=$(shm_ids)

step "critest against $EP${RUNTIME_HANDLER:+ (handler $RUNTIME_HANDLER)}, results in $OUT"
start=$(date +%s)
set +e
(cd "$OUT" && "$(critest_bin)" "${args[@]}") > "$OUT/critest.log" 2>&1
rc=$?
set -e
step "critest exited $rc after $(($(date +%s) - start)) s"

# critest's HostIpc specs make a SysV shared memory segment on the host
# (ipcmk) and never remove it: remove those that appeared during the run.
for id in $(comm -13 <(echo "$shm_before") <(shm_ids)); do
    ipcrm -m "$id" 2>/dev/null || true
done

if [ ! -s "$OUT/report.json" ]; then
    tail -20 "$OUT/critest.log" >&2
    echo "critest wrote no report" >&2
    exit 2
fi

# One line per failed or run-time-skipped spec, then the counts. Specs that
# did not run at all are the ones critest filters out (its benchmarks).
jq -r '
    def name: ((.ContainerHierarchyTexts // []) + [.LeafNodeText]) | map(select(. != "")) | join(" ");
    # The first line of the failure, and for gomega'"'"'s "Unexpected error:"
    # the error itself (the next line that is not a type name).
    def why: [(.Failure.Message // "") | split("\n")[] | sub("^\\s+"; "") | select(. != "")] as $l
        | if ($l[0] // "") | startswith("Unexpected error")
          then $l[0] + " " + ([$l[1:][] | select(startswith("<") | not)][0] // "")
          else ($l[0] // "") end
        | .[0:300];
    [.[] | .SpecReports[]? | select(.LeafNodeType == "It")] as $specs
    | ($specs | map(select(.State == "passed"))) as $passed
    | ($specs | map(select(.State | IN("failed", "panicked", "interrupted", "aborted", "timedout")))) as $failed
    | ($specs | map(select(.State | IN("skipped", "pending")))) as $skipped
    | ($skipped | map(select((.Failure.Message // "") != ""))) as $skipped_run
    | ($failed | sort_by(name) | .[] | "FAILED  \(name) -- \(why)"),
      ($skipped_run | sort_by(name) | .[] | "SKIPPED \(name) -- \(why)"),
      "specs: \($specs | length) total, \($passed | length) passed, \($failed | length) failed, \($skipped_run | length) skipped at run time, \(($skipped | length) - ($skipped_run | length)) not run",
      "\($passed | length) passed, \($failed | length) failed, \($skipped_run | length) skipped"
' "$OUT/report.json" | tee "$OUT/summary.txt"

[ "$rc" = 0 ] || exit 1
