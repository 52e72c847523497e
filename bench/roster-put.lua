-- wrk: every request registers a new server through POST /v1/commands (one revision each), so
-- the configuration grows with the run. The same load shape as etcd-put.lua.
-- Secure clusters: wrk -H "Authorization: Bearer $(cat roster-dev/secure/admin.token)" ... (wrk
-- speaks TLS but does not check certificates).
local prefix = "s"
local count = 0

function init(args)
  prefix = string.format("s%x%s", os.time(), tostring({}):sub(-6))
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  count = count + 1
  local change = string.format('{"add_server":{"name":"%s-%d","host":"10.0.0.1","port":6700,"pool":"%s"}}',
    prefix, count, string.rep("p", 40))
  return wrk.format(nil, "/v1/commands", nil, '{"changes":[' .. change .. ']}')
end
