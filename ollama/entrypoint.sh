#!/bin/sh
# Entrypoint of the Ollama image: run `ollama serve`, load $OLLAMA_MODEL into memory as soon as
# the server answers (OLLAMA_KEEP_ALIVE=-1 keeps it there), and stay until serve exits, passing
# SIGTERM/SIGINT on to it. The exit status is serve's (0 after a SIGTERM), or 1 when the model
# could not be loaded, so the orchestrator replaces the container instead of keeping a server
# that can never become healthy.
#
#   ollama-entrypoint [serve]    the above (the image's CMD is "serve")
#   ollama-entrypoint ARGS...    runs `ollama ARGS...` instead, e.g. `docker run IMAGE ps`
set -eu

if [ "$#" -gt 0 ] && [ "$1" != "serve" ]; then
    exec ollama "$@"
fi

: "${OLLAMA_MODEL:?OLLAMA_MODEL must name the model baked into this image}"
start_timeout="${OLLAMA_START_TIMEOUT_SECONDS:-120}"

log() { printf 'ollama-entrypoint: %s\n' "$*" >&2; }

serve_pid=""
loader_pid=""
stopping=0

# shellcheck disable=SC2329 # called by the traps below, which shellcheck does not follow
on_signal() {
    stopping=1
    [ -z "$loader_pid" ] || kill -TERM "$loader_pid" 2>/dev/null || true
    [ -z "$serve_pid" ] || kill -s "$1" "$serve_pid" 2>/dev/null || true
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

ollama serve &
serve_pid=$!

# Load in the background, so that this shell stays in `wait`, where a signal interrupts it at
# once (a foreground command would delay the trap until it ends: a model load takes minutes).
load_model() {
    waited=0
    until ollama list >/dev/null 2>&1; do
        if ! kill -0 "$serve_pid" 2>/dev/null; then
            log "ollama serve exited before it answered"
            exit 1
        fi
        if [ "$waited" -ge "$start_timeout" ]; then
            log "ollama serve did not answer within ${start_timeout}s"
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "loading $OLLAMA_MODEL"
    # An empty prompt loads the model and generates nothing (Ollama docs/faq.md, preloading).
    # stdin is closed: `ollama run` reads a non-terminal stdin as part of the prompt.
    ollama run "$OLLAMA_MODEL" "" </dev/null >/dev/null
    log "loaded $OLLAMA_MODEL"
}
load_model &
loader_pid=$!

failed=0
loader_status=0
wait "$loader_pid" || loader_status=$?
if [ "$stopping" -eq 0 ] && [ "$loader_status" -ne 0 ]; then
    log "could not load $OLLAMA_MODEL (status $loader_status); stopping ollama serve"
    failed=1
    kill -TERM "$serve_pid" 2>/dev/null || true
fi

# `wait` returns early (status > 128) when a trapped signal arrives; wait again until serve has
# really exited, so its own exit status is the one reported.
status=0
while :; do
    if wait "$serve_pid"; then status=0; else status=$?; fi
    kill -0 "$serve_pid" 2>/dev/null || break
done
if [ "$failed" -ne 0 ]; then
    exit 1
fi
exit "$status"
