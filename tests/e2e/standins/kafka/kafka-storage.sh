#!/bin/bash
# Stand-in for apache/kafka's kafka-storage.sh: Tansu keeps its log in memory, there is nothing to format.
echo "kafka stand-in (tansu): kafka-storage.sh $*: memory storage, nothing to format"
