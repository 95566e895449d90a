"""Few-shot latency prediction over NAS-Bench-201: features, GCN, cross-device prior, adaptation, evaluation."""
