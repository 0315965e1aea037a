"""The KServe v2 HTTP server: protocol codec, dynamic batching, connections and limits, worker processes."""
