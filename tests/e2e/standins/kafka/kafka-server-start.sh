#!/bin/bash
# Stand-in for apache/kafka's kafka-server-start.sh: read the PLAINTEXT listener and advertised listener from the
# chart's server.properties and run Tansu (Kafka protocol, memory storage) in the foreground. Topics are
# auto-created on first use; num.partitions and the other broker settings are not applied.
set -euo pipefail
props=$1
get() { sed -n "s/^$1=//p" "$props" | tail -n1; }
listen=$(get listeners | tr ',' '\n' | sed -n 's#^PLAINTEXT://##p')
advertised=$(get advertised.listeners | tr ',' '\n' | sed -n 's#^PLAINTEXT://##p')
host=${listen%:*}
port=${listen##*:}
[ -n "$host" ] || host=0.0.0.0
echo "kafka stand-in (tansu): listening on $host:$port, advertising $advertised"
exec tansu broker --listener-url "tcp://$host:$port" --advertised-listener-url "tcp://$advertised" \
  --storage-engine memory://tansu/ --cluster-id "${KAFKA_CLUSTER_ID:-tansu}"
