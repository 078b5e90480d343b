#!/bin/bash
# Issue 13's figures: README's first command on cpu (three seeds), tflite-cpu and openvino-cpu, each export
# checked by an independent paired loop (experiments/reproduce.py, the runtime's own API, default settings)
# started at least ten minutes after its search ended. Run on a quiet machine; results: experiments/results/figures/
#     bash experiments/figures.sh /tmp/figures      # then copy summary-*, report-*, reproduce-* from there
# The second argument `minilm` runs the MiniLM half instead: three seeds of MiniLM on openvino-cpu (results:
# experiments/results/figures-minilm/), each `--trials ${TRIALS:-12} --timeout ${TIMEOUT:-15m}`.
#     bash experiments/figures.sh /tmp/figures-minilm minilm
set -u
OUT=${1:-/tmp/figures}
EXAMPLE=${2:-digits}
mkdir -p "$OUT"
export AUTOCOMPRESS_HOME=${AUTOCOMPRESS_HOME:-$OUT/home}
cd "$(dirname "$0")/.."
grep -m1 "model name" /proc/cpuinfo > "$OUT/machine.txt"
grep -m1 -o -w "avx512_vnni\|avx_vnni\|avx512_bf16\|amx_bf16" /proc/cpuinfo | sort -u >> "$OUT/machine.txt"
nproc >> "$OUT/machine.txt"
git rev-parse HEAD > "$OUT/commit.txt"

declare -A ENDED
search() {  # name device seed trials [more search options]
    local name=$1 device=$2 seed=$3 trials=$4
    echo "$(date +%T) search $name" >> "$OUT/timeline.txt"
    autocompress search --example "$EXAMPLE" --device "$device" --seed "$seed" --trials "$trials" "${@:5}" \
        --study "fig-$name" --out "$OUT/best-$name" > "$OUT/summary-$name.txt" 2> "$OUT/search-$name.log"
    ENDED[$name]=$(date +%s)
}
reproduce() {  # name device: waits until ten minutes after the search ended
    local name=$1 device=$2 wait
    wait=$(( ENDED[$name] + 600 - $(date +%s) ))
    [ "$wait" -gt 0 ] && sleep "$wait"
    echo "$(date +%T) reproduce $name" >> "$OUT/timeline.txt"
    python -m experiments.reproduce "$OUT/best-$name/$device" --max-windows 8 \
        > "$OUT/reproduce-$name.json" 2> "$OUT/reproduce-$name.log"
}

if [ "$EXAMPLE" = minilm ]; then
    export HF_HUB_OFFLINE=1
    search minilm-openvino-s0 openvino-cpu 0 "${TRIALS:-12}" --timeout "${TIMEOUT:-15m}"
    search minilm-openvino-s1 openvino-cpu 1 "${TRIALS:-12}" --timeout "${TIMEOUT:-15m}"
    reproduce minilm-openvino-s0 openvino-cpu
    search minilm-openvino-s2 openvino-cpu 2 "${TRIALS:-12}" --timeout "${TIMEOUT:-15m}"
    reproduce minilm-openvino-s1 openvino-cpu
    reproduce minilm-openvino-s2 openvino-cpu
    echo "$(date +%T) done" >> "$OUT/timeline.txt"
    exit 0
fi
search cpu-s0 cpu 0 30
search cpu-s1 cpu 1 30
reproduce cpu-s0 cpu
search cpu-s2 cpu 2 30
reproduce cpu-s1 cpu
search tflite tflite-cpu 0 10
reproduce cpu-s2 cpu
search openvino openvino-cpu 0 10
reproduce tflite tflite-cpu
reproduce openvino openvino-cpu
echo "$(date +%T) done" >> "$OUT/timeline.txt"
