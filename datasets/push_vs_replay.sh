#!/usr/bin/env bash
# Live equals replay, the whole bundled set: starts a `vigil serve` on free loopback ports, runs
# `vigil push` on every scenario of datasets/ (or of the folder given), runs `vigil replay --json`
# on the same folder, and prints per scenario whether `verdict`, `score` and `time_to_detect_s`
# are equal, then the count of equal records.
#
#   datasets/push_vs_replay.sh [DIR]    (VIGIL=path/to/vigil; default: the workspace's release
#                                        build, else its debug build)
#
# Exit status 0 when every record is equal.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$here}"
if [ -z "${VIGIL:-}" ]; then
    # The workspace's target directory (a worktree may point it elsewhere): release, else debug.
    target="$(cd "$here/.." && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    for v in "$target/release/vigil" "$target/debug/vigil"; do
        [ -x "$v" ] && VIGIL="$v" && break
    done
fi
vigil="${VIGIL:?no vigil binary: cargo build --release (or set VIGIL=path/to/vigil)}"
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

"$vigil" serve --listen 127.0.0.1:0 --otlp-grpc-listen 127.0.0.1:0 --otlp-http-listen 127.0.0.1:0 \
    --data-dir "$work/data" 2>"$work/serve.err" >/dev/null &
server=$!
for _ in $(seq 100); do
    [ "$(grep -c '^vigil: ' "$work/serve.err" || true)" -ge 3 ] && break
    sleep 0.1
done
api="$(sed -n 's|^vigil: serving on ||p' "$work/serve.err")"
otlp="$(sed -n 's|^vigil: OTLP/gRPC on ||p' "$work/serve.err")"

"$vigil" replay "$dir" --json --quiet >"$work/replay.json"
: >"$work/push.jsonl"
python3 - "$dir" >"$work/folders" <<'EOF'
import os, sys
root = sys.argv[1]
if os.path.isfile(os.path.join(root, "scenario.json")):
    print(root)
else:
    for d, subs, files in sorted(os.walk(root)):
        if "scenario.json" in files:
            print(d)
            subs[:] = []
EOF
while read -r folder; do
    if ! "$vigil" push "$folder" --server "$api" --otlp "$otlp" >>"$work/push.jsonl" 2>"$work/push.err"; then
        echo "{\"id\": \"$(basename "$folder")\", \"error\": $(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$work/push.err")}" >>"$work/push.jsonl"
    fi
done <"$work/folders"

python3 - "$work/replay.json" "$work/push.jsonl" <<'EOF'
import json, sys
replay = {r["id"]: r for r in json.load(open(sys.argv[1]))["scenarios"]}
pushed = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
equal = 0
for p in pushed:
    r = replay.get(p["id"])
    keys = ("verdict", "score", "time_to_detect_s")
    same = r is not None and "error" not in p and all(p.get(k) == r.get(k) for k in keys)
    equal += same
    got = p.get("error", "").strip() or " ".join(str(p.get(k)) for k in keys)
    want = " ".join(str(r.get(k)) for k in keys) if r else "(not replayed)"
    print(f"{'equal' if same else 'DIFF '} {p['id']}: push {got} | replay {want}")
def steps(v):
    return [(t["elapsed_s"], t["verdict"], t["score"]) for t in v.get("timeline") or []]
def keys_of(v):
    return [e.get("key") for e in v.get("evidence") or []]
same_steps = sum(1 for p in pushed if p["id"] in replay and steps(p) == steps(replay[p["id"]]))
same_keys = sum(1 for p in pushed if p["id"] in replay and keys_of(p) == keys_of(replay[p["id"]]))
print(f"{same_steps} of {len(pushed)} timelines equal (every interval's verdict and score)")
print(f"{same_keys} of {len(pushed)} evidence lists name the same findings")
print(f"{equal} of {len(pushed)} records equal (verdict, score, time_to_detect_s)")
sys.exit(0 if equal == len(pushed) else 1)
EOF
