-- The one check of the edge that runs on every request: a header name must be a valid gRPC metadata
-- key ([0-9a-z_.-]; Envoy has already lowercased names and dropped names with underscores). The
-- server's gRPC library fails a call carrying any other name with INTERNAL, so such a request is
-- refused here with 400 (the envelope for REST callers, INVALID_ARGUMENT for gRPC callers, both
-- rendered by local_reply_config).
--
-- It is a filter of its own because Envoy has nothing built in that can look at every header name
-- (route and RBAC matchers take one exact name, CEL comprehensions are disabled). Everything else
-- the edge does on a successful request is Envoy configuration; error_envelope.lua runs only on
-- the requests that need it (envoy.yaml, render.py's fast routes). No envoy_on_response: Envoy
-- never enters Lua on the way back for this filter.

local COLON = string.byte(":")

local function has_illegal_name(headers)
  for name, _ in pairs(headers) do
    -- Pseudo-headers (":path") are not metadata.
    if string.byte(name, 1) ~= COLON and string.find(name, "[^0-9a-z_.%-]") ~= nil then
      return true
    end
  end
  return false
end

function envoy_on_request(request_handle)
  if has_illegal_name(request_handle:headers()) then
    -- error_envelope.lua reads this back when the refusal reaches an HTTP/1.x caller as a
    -- gRPC-shaped answer (a gRPC content type) that has no body to read the status from (HEAD).
    request_handle:streamInfo():dynamicMetadata():set("envoy.filters.http.lua", "refused_status", "400")
    request_handle:respond({[":status"] = "400"}, "")
  end
end
