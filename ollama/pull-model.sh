#!/bin/sh
# Build step of ollama/Dockerfile: pull one model into $OLLAMA_MODELS with a throwaway server.
#
#   ollama-pull-model MODEL
#
# `ollama pull` is a client of `ollama serve`, so a server runs for the length of this step and
# is stopped cleanly (SIGTERM, then wait) before it ends. serve writes a key pair under
# $HOME/.ollama when it starts; HOME is a temporary directory here, removed at the end, so no
# private key is baked into the image. The server listens on $OLLAMA_BUILD_HOST (loopback).
set -eu

model="${1:?usage: ollama-pull-model MODEL}"
: "${OLLAMA_MODELS:?OLLAMA_MODELS must name the directory to bake the model into}"
start_timeout="${OLLAMA_START_TIMEOUT_SECONDS:-120}"

scratch="$(mktemp -d)"
HOME="$scratch"
OLLAMA_HOST="${OLLAMA_BUILD_HOST:-127.0.0.1:11434}"
export HOME OLLAMA_HOST

log() { printf 'ollama-pull-model: %s\n' "$*" >&2; }

ollama serve >"$scratch/serve.log" 2>&1 &
serve_pid=$!

give_up() {
    log "$1"
    log "ollama serve log:"
    cat "$scratch/serve.log" >&2 || true
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
    rm -rf "$scratch"
    exit 1
}

waited=0
until ollama list >/dev/null 2>&1; do
    kill -0 "$serve_pid" 2>/dev/null || give_up "ollama serve exited before it answered"
    [ "$waited" -lt "$start_timeout" ] || give_up "ollama serve did not answer within ${start_timeout}s"
    sleep 1
    waited=$((waited + 1))
done

ollama pull "$model" || give_up "ollama pull $model failed"
# The manifest resolves: the model is complete in $OLLAMA_MODELS.
ollama show "$model" >/dev/null || give_up "ollama show $model failed after the pull"

kill -TERM "$serve_pid"
status=0
wait "$serve_pid" || status=$?
# serve returns 0 after SIGTERM (it closes its listener and unloads runners); 143 would mean
# it died by the signal, which is as clean for a throwaway build server.
case "$status" in
    0 | 143) ;;
    *) give_up "ollama serve exited with status $status when stopped" ;;
esac
rm -rf "$scratch"
log "baked $model into $OLLAMA_MODELS"
