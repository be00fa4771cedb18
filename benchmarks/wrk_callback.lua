-- wrk script: every request is a new, unique callback (single 11010 or an 11013 batch).
-- args: <mode: single|batch> <run id> [batch size]
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "single"
  run = args[2] or "r"
  size = tonumber(args[3] or "50")
  counter = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

local function item(key, n)
  return string.format(
    '{"seq":"%d","id":"%d","appinfo":"%s","sender":"7881300000%06d","receiver":"1688850000000001",' ..
    '"roomid":"0","sendtime":%d,"sender_name":"客户","content_type":2,"referid":"0","flag":0,' ..
    '"content":"您好，请问%s的报价单什么时候发我？谢谢👍","at_list":[],"quote_content":"","quote_appinfo":"",' ..
    '"send_flag":0,"msg_type":2}',
    n, n, key, n % 1000000, 1718000000 + n % 86400, key)
end

request = function()
  counter = counter + 1
  local base = string.format("%s-%d-%d", run, tid, counter)
  local body
  if mode == "batch" then
    local items = {}
    for k = 1, size do
      items[k] = item(base .. "-" .. k, counter * size + k)
    end
    body = '{"guid":"bench-ingest","notify_type":11013,"data":[' .. table.concat(items, ",") .. ']}'
  else
    body = '{"guid":"bench-ingest","notify_type":11010,"data":' .. item(base, counter) .. '}'
  end
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d,"non2xx":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
