"""The device agent: registers with the server over gRPC, leases jobs, measures ONNX / TFLite models, reports."""
