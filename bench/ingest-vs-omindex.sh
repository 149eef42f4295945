#!/usr/bin/env bash
# Ingest throughput of `rag bench ingest` against Xapian's omindex on the same folder: the PostgreSQL 15
# HTML manual (postgresql-doc-15) plus a subset of the PDFs in texlive-publishers-doc, both unpacked from
# their Debian packages into a scratch folder under /tmp (never into the repository).
#
#   bench/ingest-vs-omindex.sh [RAG_BINARY]      (default: build/rag)
#   MAX_PDFS=200 SCRATCH=/tmp/rag-omindex bench/ingest-vs-omindex.sh
#
# xapian-tools gives xapian-delve, used to count what omindex indexed.
# omindex is single-threaded and only indexes (no chunking, no catalog); rag parses on every core, chunks,
# and writes both the SQLite catalog and Xapian. Both figures are wall clock for a fresh index. omindex
# reads PDFs through pdftotext (poppler-utils), which this script installs and checks.
set -euo pipefail

rag=${1:-build/rag}
scratch=${SCRATCH:-/tmp/rag-omindex}
max_pdfs=${MAX_PDFS:-200}

[ -x "$rag" ] || { echo "ingest-vs-omindex: $rag is not an executable; build rag first or pass its path" >&2; exit 2; }
rag=$(readlink -f "$rag")

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
missing=()
for p in xapian-omega xapian-tools poppler-utils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "ingest-vs-omindex: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v pdftotext >/dev/null || { echo "ingest-vs-omindex: pdftotext missing; omindex would skip PDFs" >&2; exit 1; }

mkdir -p "$scratch/debs" "$scratch/unpacked"
(
  cd "$scratch/debs"
  for package in postgresql-doc-15 texlive-publishers-doc; do
    ls "${package}"_*.deb >/dev/null 2>&1 || apt-get download -qq "$package"
  done
)
if [ ! -e "$scratch/unpacked/.done" ]; then
  for deb in "$scratch"/debs/*.deb; do dpkg -x "$deb" "$scratch/unpacked"; done
  touch "$scratch/unpacked/.done"
fi

# The corpus: every HTML page of the manual and the first $max_pdfs PDFs by path (the same files for both).
corpus="$scratch/corpus"
rm -rf "$corpus"
mkdir -p "$corpus/html" "$corpus/pdf"
find "$scratch/unpacked/usr/share/doc/postgresql-doc-15/html" -name '*.html' -exec cp -t "$corpus/html" {} +
# PDFs sorted by path cluster by package (the first few are text-less figures), so take every k-th.
find "$scratch/unpacked/usr/share/doc" -name '*.pdf' | LC_ALL=C sort > "$scratch/pdfs.txt"
step=$(( $(wc -l < "$scratch/pdfs.txt") / max_pdfs ))
[ "$step" -ge 1 ] || step=1
n=0
while IFS= read -r pdf; do
  n=$((n + 1))
  cp "$pdf" "$corpus/pdf/$(printf '%04d' "$n")-$(basename "$pdf")"
done < <(awk -v step="$step" -v max="$max_pdfs" '(NR - 1) % step == 0 && ++taken <= max' "$scratch/pdfs.txt")
files=$(find "$corpus" -type f | wc -l)
mb=$(du -sm --apparent-size "$corpus" | cut -f1)
echo "corpus: $files files ($(find "$corpus/html" -type f | wc -l) HTML, $n PDF), $mb MB in $corpus"

sync
echo "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "--- rag bench ingest"
/usr/bin/time -f "rag: cpu user %U s, sys %S s" "$rag" bench ingest "$corpus"

echo "--- omindex"
rm -rf "$scratch/omega-db"
start=$(date +%s.%N)
/usr/bin/time -f "omindex: cpu user %U s, sys %S s" -o "$scratch/omindex-time.txt" omindex --db "$scratch/omega-db" --url / "$corpus" > "$scratch/omindex.log" 2>&1
end=$(date +%s.%N)
indexed=$(xapian-delve -1 "$scratch/omega-db" 2>/dev/null | sed -n 's/^number of documents = //p')
pdfs_indexed=$(xapian-delve -1 -t Tapplication/pdf "$scratch/omega-db" 2>/dev/null | tail -n +2 | wc -l)
seconds=$(echo "$end - $start" | bc -l)
printf 'omindex: %s files indexed (%s PDFs) of %s in %.2f s: %.1f files/s, %.2f MB/s\n' "$indexed" "$pdfs_indexed" \
  "$files" "$seconds" "$(echo "$files / $seconds" | bc -l)" "$(echo "$mb / $seconds" | bc -l)"
cat "$scratch/omindex-time.txt"
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "${pdfs_indexed:-0}" -gt 0 ] || echo "ingest-vs-omindex: warning: omindex indexed no PDFs (see $scratch/omindex.log)" >&2
