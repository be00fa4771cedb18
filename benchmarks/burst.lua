-- wrk script for the burst: exactly <total> distinct single callbacks for device <guid>, spread
-- over wrk's threads. A connection whose thread has sent its share asks for /healthz instead
-- (nothing stored) until run.py sees every callback stored and stops wrk; done() reports how many
-- callbacks each thread sent and saw acknowledged.
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

-- args: <guid> <total> <threads>
function init(args)
  guid = args[1]
  quota = math.floor(tonumber(args[2]) / tonumber(args[3]))
  sent, acked, failed = 0, 0, 0
end

local function item(n)
  local key = string.format("%s-%d-%d", guid, tid, n)
  return string.format(
    '{"seq":"%d","id":"%d","appinfo":"%s","sender":"7881300000%06d","receiver":"1688850000000001",' ..
    '"roomid":"0","sendtime":%d,"sender_name":"客户","content_type":2,"referid":"0","flag":0,' ..
    '"content":"突发消息%s","at_list":[],"quote_content":"","quote_appinfo":"","send_flag":0,"msg_type":2}',
    tid * 1000000 + n, tid * 1000000 + n, key, n % 1000000, 1718000000 + n % 86400, key)
end

-- wrk calls request() once more, on the first thread, to check the script before any connection
-- exists, and drops what it returns. delay() runs only before real sends: until it has, request()
-- answers a /healthz, so that check costs no callback.
delay = function()
  live = true
  return 0
end

request = function()
  if not live or sent >= quota then
    return wrk.format("GET", "/healthz", {}, nil)
  end
  sent = sent + 1
  local body = '{"guid":"' .. guid .. '","notify_type":11010,"data":' .. item(sent) .. '}'
  return wrk.format("POST", "/callback", {["Content-Type"] = "application/json"}, body)
end

response = function(status, headers, body)
  if body:find("Callback processed", 1, true) then
    acked = acked + 1
  elseif status ~= 200 then
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local sent_total, acked_total = 0, 0
  for _, thread in ipairs(threads) do
    sent_total = sent_total + thread:get("sent")
    acked_total = acked_total + thread:get("acked")
  end
  io.write(string.format('WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":%d,"non2xx":%d,"sent":%d,"acked":%d}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.errors.status, sent_total, acked_total))
end
