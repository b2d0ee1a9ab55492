-- wrk script: PutEvents with BATCH events per call, unique eventIds, 1,000 users.
-- env: TRACKING_ID, BATCH (default 10), PREFIX (unique per run)
local tid = 0
function setup(thread)
  thread:set("id", tid)
  tid = tid + 1
end

function init(args)
  counter = 0
  batch = tonumber(os.getenv("BATCH") or "10")
  tracking = os.getenv("TRACKING_ID")
  prefix = os.getenv("PREFIX") or "b"
end

function request()
  counter = counter + 1
  local user = "u" .. ((counter * 7 + id) % 1000)
  local evs = {}
  for i = 1, batch do
    evs[i] = string.format('{"eventId":"%s-%d-%d-%d","eventType":"click","itemId":"i%d","sentAt":%d}',
      prefix, id, counter, i, (counter * batch + i) % 5000, 1700000000 + counter)
  end
  local body = string.format('{"trackingId":"%s","userId":"%s","sessionId":"s-%s","eventList":[%s]}',
    tracking, user, user, table.concat(evs, ","))
  return wrk.format("POST", "/events", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f\n", summary.requests, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.duration / 1e6))
end
