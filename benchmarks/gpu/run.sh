#!/usr/bin/env bash
# On the GPU machine, through the device tool (after benchmarks/gpu/pack.sh here; carry .gpu):
#     bash benchmarks/gpu/run.sh STEP      STEP: checks | bench | e2e   (each well inside the 10-minute limit)
# checks: the GPU tests, the AOTInductor crash narrower, training throughput (fp32, bf16, fp16).
# bench:  `ganforge bench` on cuda (torch, CUDA graphs, torch.compile, AOTInductor; fp32/fp16/bf16; batch 1, 64,
#         1024; offline host, host-uint8 and device-only; single-stream; the in-process server with 2 in flight).
# e2e:    `ganforge sample` end to end against offline (host-uint8), and `ganforge serve` under wrk.
# The parts of a step add up to 8 minutes at most, leaving 2 of the 10-minute limit for the setup and the model.
# Results go to $OUT (what the device tool brings back): STEP.log and STEP.tgz (the results files), the tarball
# rewritten after every part so a run cut short still returns what it finished.
set -uo pipefail
cd "$(dirname "$0")/../.."
step=${1:?usage: run.sh checks|bench|e2e}
OUT=${OUT:-/tmp/gpu-out}
RESULTS=/tmp/gpu-results/$step
mkdir -p "$OUT" "$RESULTS"
exec > >(tee -a "$OUT/$step.log") 2>&1
export PYTHONUNBUFFERED=1
PY=${PY:-python3}

# The web stack and wrk, unpacked where nothing of the image is touched.
[ -d /tmp/site/fastapi ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .gpu/wheels/*.whl || exit 1
mkdir -p /tmp/wrk && for f in .gpu/debs/*.deb; do dpkg -x "$f" /tmp/wrk; done
export PATH=/tmp/wrk/usr/bin:$PATH LD_LIBRARY_PATH=/tmp/wrk/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
# ganforge without installing it: pyproject.toml's package-dir mapping, as links.
rm -rf /tmp/gf && mkdir -p /tmp/gf/ganforge && ln -s "$PWD"/ganforge/*.py /tmp/gf/ganforge/
for p in train export serve benchmarks; do ln -s "$PWD/$p" "/tmp/gf/ganforge/$p"; done
export PYTHONPATH=/tmp/gf:/tmp/site
nvidia-smi -L; $PY -c 'import torch, ganforge.serve.http.server; print("torch", torch.__version__, torch.cuda.get_device_name())' || exit 1

# The benchmarks' model (benchmarks/backends_table.py's recipe), trained here on the GPU if missing.
run=runs/bench-dcgan64
[ -d $run/checkpoints ] || $PY -m ganforge train --data shapes --model dcgan --resolution 64 --width 64 --z-dim 100 \
    --steps 300 --checkpoint-every 300 --eval-every 0 --sample-every 300 --device cuda --quiet --out $run || exit 1

part() {  # part NAME SECONDS COMMAND...: one part under a time limit, then the tarball of everything so far
    local name=$1 limit=$2; shift 2
    echo "=== $name ($(date -u +%T), limit ${limit}s)"
    timeout --signal=INT --kill-after=20 "$limit" "$@"; echo "=== $name: exit $?"
    tar czf "$OUT/$step.tgz" -C /tmp/gpu-results "$step"
}
case $step in
checks)
    part tests 120 $PY -m pytest -q -p no:cacheprovider -m "gpu or tensorrt" tests/serve/test_runners.py \
        tests/export/test_tensorrt.py
    part aoti 200 $PY benchmarks/aoti_crash.py --device cuda --timeout 100 --out "$RESULTS/aoti_crash.json"
    for precision in fp32 bf16 fp16; do
        part "train $precision" 50 $PY benchmarks/train_throughput.py --device cuda --precision "$precision" \
            --batch-size 256 --steps 40 --out "$RESULTS/train-width64-b256-$precision.json"
    done ;;
bench)
    part bench 480 $PY -m ganforge bench $run --device cuda --out "$RESULTS/bench" \
        --backends auto,torch,torch-cudagraph,torch-compile,aoti --precisions fp32,fp16,bf16 \
        --batch-sizes 1,64,1024 --min-duration 0.6 --server-duration 0.6 ;;
e2e)
    part sample 270 $PY benchmarks/sample_e2e.py --device cuda --backends auto,torch:fp16,torch-cudagraph:fp16 \
        --batch-size 1024 --images 500000 --repeats 3 --out "$RESULTS/sample_e2e.json"
    part http 210 $PY benchmarks/http_wrk.py --device cuda --backend torch-cudagraph --precision fp16 --seconds 5 \
        --variants "--in-flight 1" --out "$RESULTS/http_wrk.json" ;;
*) echo "unknown step $step (checks, bench or e2e)"; exit 2 ;;
esac
sleep 1  # let tee write the log's last lines before the device tool collects $OUT
