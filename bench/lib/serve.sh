# Sourced by bench scripts that serve one artifact at a time on 127.0.0.1 (needs $MOVREK):
#   start_server MODEL LOG   serves MODEL on a free port; sets SERVER_PID and URL once
#                            /readyz answers (exits after 60 s without)
#   stop_server              stops that server by its pid (the caller traps it on EXIT)

SERVER_PID=""

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

start_server() {
    MOVREK_LOG=info,movrek::request=off "$MOVREK" serve --bind 127.0.0.1 --port 0 \
        --model "$1" >"$2" 2>&1 &
    SERVER_PID=$!
    local addr=""
    for _ in $(seq 1 300); do
        addr=$(grep -o '"addr":"127.0.0.1:[0-9]*"' "$2" | head -1 | cut -d'"' -f4 || true)
        if [ -n "$addr" ] && curl -fsS --noproxy '*' "http://$addr/readyz" >/dev/null 2>&1; then
            URL="http://$addr"
            return 0
        fi
        sleep 0.2
    done
    echo "server did not get ready; see $2" >&2
    exit 1
}
