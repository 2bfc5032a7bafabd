#!/usr/bin/env bash
# Inflates the same gzip blob with every DEFLATE backend that builds here, and prints a
# Markdown table (median of ROUNDS runs, MB = 10^6 bytes, one thread, from memory).
#
#   benches/inflate_backends/run.sh [FILE.gz]     (default: the bench cache's big.gzip)
#
# Needs cargo; zlib-ng needs cmake, ISA-L needs nasm (Debian: apt-get install cmake nasm).
# A backend that does not build is reported as such, not fatal.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rounds=${ROUNDS:-5}
blob=${1:-$(cd "$repo" && PYTHONPATH=python python3 benches/data.py --path big.gzip)}
bin_dir="$here/target/backends"
mkdir -p "$bin_dir"

backends=(zlib-rs-nodetect zlib-rs zlib-ng miniz_oxide zlib isal)
built=()
for backend in "${backends[@]}"; do
    case $backend in
        zlib-ng) need=cmake ;;
        isal) need=nasm ;;
        *) need= ;;
    esac
    if [[ -n $need ]] && ! command -v "$need" >/dev/null; then
        echo "skipping $backend: $need is not installed" >&2
        continue
    fi
    echo "building $backend" >&2
    if cargo build --release --quiet --manifest-path "$here/Cargo.toml" \
        --no-default-features --features "$backend" >"$bin_dir/$backend.log" 2>&1; then
        cp "$here/target/release/inflate-backends" "$bin_dir/inflate-$backend"
        built+=("$backend")
    else
        echo "$backend did not build; see $bin_dir/$backend.log" >&2
    fi
done

echo "inflating $blob ($(du -h "$blob" | cut -f1)), median of $rounds rounds, load $(cut -d' ' -f1 /proc/loadavg)" >&2
echo "| backend | MB/s compressed in | MB/s uncompressed out | median s |"
echo "|---|---:|---:|---:|"
for backend in "${built[@]}"; do
    "$bin_dir/inflate-$backend" "$blob" "$rounds"
done
python3 "$here/cpython_zlib.py" "$blob" "$rounds"
