-- wrk: every request moves one of 1,000 registered servers (s0 .. s999) to another port through
-- POST /v1/commands, so the configuration keeps its size while the history grows. Register the
-- servers first, e.g. `roster bench write` does, or one POST /v1/commands with 1,000 add_server
-- changes.
local count = 0
local offset = 0

function init(args)
  offset = os.time() % 1000
  math.randomseed(os.time() + (tonumber(tostring({}):sub(-6), 16) or 0))
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  count = count + 1
  local change = string.format('{"update_server":{"name":"s%d","port":%d}}', math.random(0, 999), 1024 + (count + offset) % 60000)
  return wrk.format(nil, "/v1/commands", nil, '{"changes":[' .. change .. ']}')
end
