-- wrk script for benchmarks/bench_serving.py: POST one JSON body, the same on every request.
--
--   wrk -t2 -c8 -d15s --latency -s benchmarks/wrk_post.lua http://127.0.0.1:3000/predict -- body.json
--
-- The body is read from the file named after `--` (each wrk thread reads it once). At the
-- end it prints one line `wrk-json {...}` with exact counts and percentiles (microseconds)
-- next to wrk's own report, which rounds them.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
   local path = args[1]
   if path == nil then
      error("usage: wrk ... -s wrk_post.lua URL -- BODY_FILE")
   end
   local file = assert(io.open(path, "rb"))
   wrk.body = file:read("*a")
   file:close()
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'wrk-json {"duration_us": %d, "requests": %d, "bytes": %d, '
         .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
         .. '"latency_us": {"mean": %.1f, "stdev": %.1f, "max": %d, '
         .. '"p50": %d, "p90": %d, "p99": %d, "p99.9": %d}}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9)))
end
