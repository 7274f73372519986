"""The inference layer: a shard process serving models on an engine."""
