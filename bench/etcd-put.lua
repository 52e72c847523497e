-- wrk: every request puts one new key (about 30 bytes) with a 150-byte value through etcd's
-- v3 JSON gateway, which takes keys and values base64-encoded. The same load shape as
-- roster-put.lua.
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Standard base64 with padding, three bytes at a time.
local function base64(text)
  local out = {}
  for i = 1, #text, 3 do
    local a, b, c = text:byte(i, i + 2)
    local group = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 4 - (3 - (#text - i + 1 >= 3 and 3 or #text - i + 1))
    for k = 1, 4 do
      local index = math.floor(group / 64 ^ (4 - k)) % 64
      out[#out + 1] = k <= chars and alphabet:sub(index + 1, index + 1) or "="
    end
  end
  return table.concat(out)
end

local value = base64(string.rep("v", 150))
local prefix = "k"
local count = 0

function init(args)
  prefix = string.format("k%x%s", os.time(), tostring({}):sub(-6))
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  count = count + 1
  local key = base64(prefix .. "/" .. count)
  return wrk.format(nil, "/v3/kv/put", nil, '{"key":"' .. key .. '","value":"' .. value .. '"}')
end
