"""One adapter module per server: Kafka (:mod:`.kafka`), MongoDB (:mod:`.mongo`), MySQL (:mod:`.mysql`)."""
