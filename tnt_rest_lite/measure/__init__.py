"""Layer 4, measurement: parameters, FLOPs and their conventions, throughput, GL's counts, intervals."""
