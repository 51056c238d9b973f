#!/bin/sh
# One-shot bootstrap of the compose stack (service "bootstrap"): MovieLens-100K -> a sim_can artifact -> every
# rating ingested into Redis. Each step is skipped when its result exists, so a second `docker compose up` is quick:
#   longrank data ml100k --out /data/ml100k
#   longrank train --data /data/ml100k --model sim_can --out /artifacts/demo
#   longrank ingest /data/ml100k --store redis://redis:6379/0
set -eu
DATA="${BOOTSTRAP_DATA:-/data/ml100k}"
ARTIFACT="${LONGRANK_ARTIFACT:-/artifacts/demo}"
STORE="${LONGRANK_STORE_URL:-redis://redis:6379/0}"

if [ -f "$DATA/meta.json" ]; then echo "bootstrap: $DATA exists"; else longrank data ml100k --out "$DATA"; fi
if [ -f "$ARTIFACT/manifest.json" ]; then
    echo "bootstrap: $ARTIFACT exists"
else
    longrank train --data "$DATA" --model sim_can --out "$ARTIFACT"
fi
# MovieLens user "1" in the store means the ratings were ingested (event ids make a repeat harmless anyway).
if python -c "import sys; from retrieval.store import open_store; sys.exit(0 if open_store(sys.argv[1]).length('1') else 1)" "$STORE"; then
    echo "bootstrap: the store already holds MovieLens-100K"
else
    longrank ingest "$DATA" --store "$STORE" --no-progress
fi
echo "bootstrap: done"
