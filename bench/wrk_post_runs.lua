-- wrk script: POST /v1/runs with the token in $VENTURE_TOKEN, starting runs of the workflow
-- $VENTURE_WORKFLOW (default "hello"). Used by bench/wrk_post_runs.sh; see docs/performance.md.
wrk.method = "POST"
wrk.path = "/v1/runs"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("VENTURE_TOKEN")
wrk.body = '{"workflow":"' .. (os.getenv("VENTURE_WORKFLOW") or "hello") .. '"}'

done = function(summary, latency, requests)
  io.write(string.format("errors: %d non-2xx/3xx, %d socket\n", summary.errors.status,
                         summary.errors.connect + summary.errors.read + summary.errors.write +
                         summary.errors.timeout))
  io.write(string.format("p50 %.2f ms, p99 %.2f ms\n", latency:percentile(50) / 1000,
                         latency:percentile(99) / 1000))
end
