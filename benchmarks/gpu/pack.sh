#!/usr/bin/env bash
# Here, before a device session: what benchmarks/gpu/run.sh needs on the GPU machine that its image lacks, into
# .gpu/ (git-ignored; name it in the device run's `carry`). The machine there has torch, numpy, onnx, onnxruntime
# (CPU), pytest and hypothesis, and no registry: the serve extra's web stack travels as wheels (the versions
# installed here, for its Python 3.12) and wrk as Debian packages (unpacked there, not installed).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/debs
names="fastapi starlette pydantic pydantic-core annotated-types typing-inspection uvicorn httptools orjson"
specs=$($PY -c 'import sys, importlib.metadata as m; print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' $names)
platforms=""
for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
    platforms="$platforms --platform $p"
done
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
    -d .gpu/wheels $specs 2> >(grep -v "^WARNING: Location" >&2)
(cd .gpu/debs && apt-get download -q wrk libluajit2-5.1-2 libluajit2-5.1-common 2>/dev/null)
echo "packed for the GPU machine: $(ls .gpu/wheels | wc -l) wheels, $(ls .gpu/debs | wc -l) debs, $(du -sh .gpu | cut -f1)"
