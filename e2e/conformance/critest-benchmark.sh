#!/usr/bin/env bash
# critest-benchmark.sh ENDPOINT NAME [critest flags...]: runs critest's
# benchmarks (critest -benchmark, with benchmark-params.yaml: 20 pods, 20
# containers, 10 image pulls, one at a time) against the CRI runtime at
# ENDPOINT and prints, per operation, the sample count, min, median, max and
# mean in ms, from the data files critest writes. Results go to
# $CONF_WORK/results/critest-benchmark-NAME/.
#
# Environment: CONF_WORK (from setup.sh), CRITEST; RUNTIME_HANDLER,
# PARAMS (default benchmark-params.yaml here), TIMEOUT (default 30m).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
load_work

EP=${1:?usage: critest-benchmark.sh ENDPOINT NAME [critest flags...]}
NAME=${2:?usage: critest-benchmark.sh ENDPOINT NAME [critest flags...]}
shift 2
OUT=$CONF_WORK/results/critest-benchmark-$NAME
rm -rf "$OUT"
mkdir -p "$OUT/data"

args=(
    -benchmark
    --runtime-endpoint "$EP" --image-endpoint "$EP"
    --test-images-file "$HERE/images.yaml"
    --benchmarking-params-file "${PARAMS:-$HERE/benchmark-params.yaml}"
    --benchmarking-output-dir "$OUT/data"
    --ginkgo.no-color --ginkgo.timeout "${TIMEOUT:-30m}"
    --ginkgo.json-report "$OUT/report.json"
)
[ -z "${RUNTIME_HANDLER:-}" ] || args+=(--runtime-handler "$RUNTIME_HANDLER")
args+=("$@")

step "critest -benchmark against $EP, results in $OUT"
start=$(date +%s)
set +e
(cd "$OUT" && "$(critest_bin)" "${args[@]}") > "$OUT/critest.log" 2>&1
rc=$?
set -e
step "critest exited $rc after $(($(date +%s) - start)) s"

{
    if [ -s "$OUT/report.json" ]; then
        # Each benchmark spec's outcome (the conformance specs are filtered out).
        jq -r '.[] | .SpecReports[]? | select(.LeafNodeType == "It")
            | select(.State != "skipped" or (.Failure.Message // "") != "")
            | "spec: \(.LeafNodeText): \(.State)\(if (.Failure.Message // "") != ""
                then " (" + (.Failure.Message | split("\n")[0]) + ")" else "" end)"' "$OUT/report.json"
        # Measurements the specs report to ginkgo (start-container-benchmark).
        jq -r '.[] | .SpecReports[]? | .ReportEntries[]? | .Value.AsJSON | fromjson?
            | .Name as $experiment | .Measurements[]? | select((.Durations // []) | length > 0)
            | "\($experiment) \(.Name): \(.Durations | map(. / 1e5 | round / 10 | tostring) | join(", ")) ms"' \
            "$OUT/report.json"
    fi
    # Per operation: the samples of each data file, sorted.
    for f in "$OUT"/data/*.json; do
        [ -f "$f" ] || continue
        jq -r --arg file "$(basename "$f" _data.json)" '
            def r: . * 10 | round / 10;
            .operationsNames as $ops | .datapoints as $d | ($d | length) as $n
            | range(0; $ops | length) as $i
            | ($d | map(.operationsDurationsNs[$i] / 1e6) | sort) as $v
            | if $n == 0 then "\($file) \($ops[$i]): no samples"
              else "\($file) \($ops[$i]): n=\($n) min=\($v[0] | r) median=\((if $n % 2 == 1
                    then $v[($n - 1) / 2] else ($v[$n / 2 - 1] + $v[$n / 2]) / 2 end) | r) max=\($v[-1] | r) mean=\(($v | add / $n) | r) ms"
              end' "$f"
    done
} | tee "$OUT/summary.txt"
exit "$rc"
