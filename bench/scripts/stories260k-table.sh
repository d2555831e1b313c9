#!/usr/bin/env bash
# Reproduces the README's stories260K table: dense, RTN, GPTQ and SpQR at wbits 2/3/4 (groupsize 16; SpQR with
# 3-bit statistics over qq_groupsize 4, τ 0.2, act_order, percdamp 1.0), plus SpQR with qq_groupsize 16.
# Calibration: the 128 x 256 windows of ../shared/fixtures/stories260K; evaluation: eval_tinystories at seqlen 256.
set -euo pipefail
cd "$(dirname "$0")/../.."
shared=${SPQR_SHARED:-../shared}
fx=$shared/fixtures/stories260K
cli="dotnet run --project src/SpQR.Cli -c Release --no-build --"
dotnet build src/SpQR.Cli -c Release >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ppl() { $cli ppl --model "$1" --tokens "$fx/stories260K-calibration.safetensors:eval_tinystories" --seqlen 256 --json | tail -1 | sed -n 's/.*"ppl":\([0-9.]*\).*/\1/p'; }
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
echo "| method | wbits | qq_groupsize | avg bits | outliers | perplexity |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
echo "| dense (F32) | 32 | - | 32 | - | $(ppl "$fx/hf") |"
for b in 2 3 4; do
  for m in rtn gptq spqr; do
    extra=""; qg=-
    if [ "$m" = spqr ]; then extra="--qq-groupsize 4"; qg=4; fi
    out="$work/$m-$b"
    j=$($cli quantize --model "$fx/hf" --calibration "$fx/stories260K-calibration.safetensors:calibration" --out "$out" --method $m --wbits $b $extra --json | tail -1)
    echo "| $m | $b | $qg | $(echo "$j" | field average_bits) | $(echo "$j" | field outlier_share) | $(ppl "$out") |"
  done
done
out="$work/spqr-3-16"
j=$($cli quantize --model "$fx/hf" --calibration "$fx/stories260K-calibration.safetensors:calibration" --out "$out" --method spqr --wbits 3 --qq-groupsize 16 --json | tail -1)
echo "| spqr | 3 | 16 | $(echo "$j" | field average_bits) | $(echo "$j" | field outlier_share) | $(ppl "$out") |"
