#!/usr/bin/env bash
# A stand-in for Kafka's bin/kafka-topics.sh, for librdkafka suite tests that create topics
# with it (0077): `--create` is carried out by `ferry topics create` over the wire, so the
# suite needs neither Java nor Kafka's distribution. Point KAFKA_PATH at scripts/kafka-shim
# and set FERRY_BIN to the ferry binary. Only the arguments those tests pass are known.
set -euo pipefail
ferry="${FERRY_BIN:?FERRY_BIN must name the ferry binary}"
bootstrap="" topic="" partitions=1 replication=1 create=0
configs=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bootstrap-server) bootstrap="$2"; shift 2 ;;
        --create) create=1; shift ;;
        --topic) topic="$2"; shift 2 ;;
        --partitions) partitions="$2"; shift 2 ;;
        --replication-factor) replication="$2"; shift 2 ;;
        --config) configs+=(--config "$2"); shift 2 ;;
        *) echo "kafka-topics.sh (ferry shim): unsupported argument: $1" >&2; exit 2 ;;
    esac
done
[[ $create -eq 1 && -n "$topic" && -n "$bootstrap" ]] ||
    { echo "kafka-topics.sh (ferry shim): only --create --topic T --bootstrap-server B" >&2; exit 2; }
exec "$ferry" topics create "$topic" --bootstrap "$bootstrap" --partitions "$partitions" \
    --replication-factor "$replication" "${configs[@]}"
