"""The local end-to-end demo: API test server, operator, Prometheus, pod runner and a trace replay."""
