-- Edge glue for the LiveStreamChat transcoder (loaded by envoy.filters.http.lua, which sits before
-- grpc_json_transcoder, so responses reach it after the transcoder).
--
-- It runs only where it has work to do: render.py gives every route to the server a fast twin with
-- this filter disabled, for the requests on which the request function below would change nothing
-- (a REST route's own method, a content type that is not gRPC, no query string, a path of plain
-- ASCII without percent-escapes, no Authorization or one that starts with "Bearer "; for gRPC: POST
-- over HTTP/2 with such an Authorization). Everything else keeps this filter, and so do the routes
-- Envoy answers itself and requests refused before a route is picked. What every request needs is
-- Envoy configuration (envoy.yaml): forgeable headers are dropped before routing, and so are header
-- names that are not gRPC metadata keys (such a request is routed here to be refused), gRPC metadata
-- is kept out of REST requests and answers by header_mutation, and the server's errors become the
-- envelope through custom_response.
--
-- A request is a gRPC call exactly when Envoy itself says so (Grpc::Common::isGrpcRequestHeaders,
-- which the transcoder and the local-reply code use): method POST and content-type
-- "application/grpc" or "application/grpc+<subtype>", case-sensitive. Everything else is REST,
-- e.g. application/grpc-web, APPLICATION/GRPC or a PATCH with application/grpc.
--
-- Request path (all callers): accepts the Authorization scheme in any case (RFC 7235), as
-- jwt_authn wants "Bearer ".
-- Request path (gRPC calls): over HTTP/1.x there is no gRPC (it needs HTTP/2): refused with 400.
-- Request path (REST calls):
--   * keeps only the query parameters the route defines (the proto's HTTP annotations, rendered
--     into the route metadata as rest_routes), refusing others with 400 on routes that take some and
--     dropping the query string on routes that take none: the path is the only source of the stream
--     id; on the live feed's events route `access_token` is taken out of the query first and becomes
--     the Authorization header when none is sent (EventSource cannot set headers), so the token
--     never stays in the path and reaches no log;
--   * refuses a path whose percent-decoded bytes are not UTF-8 (400);
--   * answers a REST route called with another method with 405, and a gRPC content type the
--     transcoder will not transcode (any method but POST) with 405/404.
-- Response path:
--   * native gRPC responses to HTTP/2 callers are never touched: grpc-status, grpc-message and
--     grpc-status-details-bin reach them as the server or Envoy's local reply set them;
--   * a gRPC-shaped answer to an HTTP/1.x caller (Envoy shapes every local reply to a request with a
--     gRPC content type so, e.g. a refusal above) becomes the envelope;
--   * grpc-* and x-envoy-* response headers are dropped for REST callers (also for answers Envoy
--     gives before any route is picked, which no route's header_mutation sees).
--
-- The service's texts come from the route metadata under "envoy.filters.http.lua" that
-- envoy/render.py renders from the error table (server/domain/errors.py, server/api/status_codes.py):
--   messages            every text a client may see
--   default_messages    HTTP status (string) -> text; "4xx" and "5xx" for the rest
--   http_status_of_grpc gRPC code (string) -> HTTP status (the transcoder's mapping)
--   rest_routes         {method, pattern (Lua), query = {JSON name -> "int32" | "string"}} per route

local GRPC_TYPE = "application/grpc"
-- Used only when envoy.yaml runs without render.py (no error table in the route metadata).
local UNRENDERED_MESSAGE = "Request failed"

local FEED_EVENTS_PATH = "^/api/v1/live%-stream/[^/]+/chat/superlikes/events$"
-- A JWT is three base64url parts; anything else is not moved into a header.
local JWT_SHAPE = "^[%w_%-]+%.[%w_%-]+%.[%w_%-]+$"

local function starts_with(s, prefix)
  return string.sub(s, 1, #prefix) == prefix
end

-- Grpc::Common::hasGrpcContentType: exactly application/grpc, or application/grpc+<anything>.
local function has_grpc_content_type(content_type)
  if content_type == nil or string.sub(content_type, 1, #GRPC_TYPE) ~= GRPC_TYPE then
    return false
  end
  return #content_type == #GRPC_TYPE or string.sub(content_type, #GRPC_TYPE + 1, #GRPC_TYPE + 1) == "+"
end

local function is_grpc_call(headers)
  return headers:get(":method") == "POST" and has_grpc_content_type(headers:get("content-type"))
end

local function is_http1(handle)
  return starts_with(handle:streamInfo():protocol() or "", "HTTP/1")
end

local function remove_matching(headers, predicate)
  local doomed = {}
  for name, _ in pairs(headers) do
    if predicate(name) then
      doomed[#doomed + 1] = name
    end
  end
  -- Headers cannot be modified while iterating them.
  for _, name in ipairs(doomed) do
    headers:remove(name)
  end
end

local X = string.byte("x")
local G = string.byte("g")

local function is_internal_response_header(name)
  return (string.byte(name, 1) == G and starts_with(name, "grpc-"))
      or (string.byte(name, 1) == X and starts_with(name, "x-envoy-"))
end

-- RFC 7235: the auth-scheme is case-insensitive; jwt_authn only matches "Bearer ".
local function normalise_bearer(headers)
  local value = headers:get("authorization")
  if value == nil or starts_with(value, "Bearer ") then
    return
  end
  local scheme, credentials = string.match(value, "^(%a+) +(.*)$")
  if scheme ~= nil and string.lower(scheme) == "bearer" then
    headers:replace("authorization", "Bearer " .. credentials)
  end
end

local function percent_decode(s)
  return (string.gsub(s, "%%(%x%x)", function(hex)
    return string.char(tonumber(hex, 16))
  end))
end

local function is_continuation(byte)
  return byte ~= nil and byte >= 0x80 and byte <= 0xBF
end

-- Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF): what protobuf requires
-- of a string field such as stream_id.
local function is_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = string.byte(s, i)
    if c < 0x80 then
      i = i + 1
    elseif c >= 0xC2 and c <= 0xDF then
      if not is_continuation(string.byte(s, i + 1)) then return false end
      i = i + 2
    elseif c >= 0xE0 and c <= 0xEF then
      local c2, c3 = string.byte(s, i + 1, i + 2)
      if not (is_continuation(c2) and is_continuation(c3)) then return false end
      if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F) then return false end
      i = i + 3
    elseif c >= 0xF0 and c <= 0xF4 then
      local c2, c3, c4 = string.byte(s, i + 1, i + 3)
      if not (is_continuation(c2) and is_continuation(c3) and is_continuation(c4)) then return false end
      if (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then return false end
      i = i + 4
    else
      return false
    end
  end
  return true
end

local function is_valid_path(path)
  if string.find(path, "[%%\128-\255]") == nil then
    return true
  end
  return is_utf8(percent_decode(path))
end

-- The REST route (from the rendered table, derived from the proto's HTTP annotations) that `path`
-- and `method` name; or nil and the methods the path allows when only the method is wrong; or nil
-- and nil for a path no route has.
local function rest_route(handle, path, method)
  local routes = handle:metadata():get("rest_routes")
  if routes == nil then
    return nil, nil
  end
  local allowed
  for _, route in ipairs(routes) do
    if string.find(path, route.pattern) ~= nil then
      if route.method == method then
        return route, nil
      end
      allowed = allowed == nil and route.method or (allowed .. ", " .. route.method)
    end
  end
  return nil, allowed
end

local INT32_MAX = 2147483647

local function is_valid_value(kind, value)
  if kind == "int32" then
    local digits = string.match(value, "^%-?(%d+)$")
    return digits ~= nil and #digits <= 10 and math.abs(tonumber(value)) <= INT32_MAX
  end
  return is_utf8(value)
end

-- name=value pairs, each name one of the route's parameters (by its JSON name), at most once, its
-- value of the field's type.
local function is_valid_query(query, parameters)
  local seen = {}
  for pair in string.gmatch(query, "[^&]+") do
    local name, value = string.match(pair, "^([^=]*)=(.*)$")
    if name == nil then
      return false
    end
    name = percent_decode(name)
    local kind = parameters[name]
    if kind == nil or seen[name] or not is_valid_value(kind, percent_decode(value)) then
      return false
    end
    seen[name] = true
  end
  return true
end

-- The live feed's query without `access_token`, which becomes the bearer token when no
-- Authorization header was sent.
local function take_access_token(headers, query)
  local rest = {}
  for pair in string.gmatch(query, "[^&]+") do
    local name, value = string.match(pair, "^([^=]*)=?(.*)$")
    if name == "access_token" then
      if headers:get("authorization") == nil and string.find(value, JWT_SHAPE) ~= nil then
        headers:add("authorization", "Bearer " .. value)
      end
    else
      rest[#rest + 1] = pair
    end
  end
  return table.concat(rest, "&")
end

-- Answered by local_reply_config (the envelope for REST callers, a gRPC status for gRPC callers).
local function refuse(handle, status)
  handle:streamInfo():dynamicMetadata():set("envoy.filters.http.lua", "refused_status", tostring(status))
  handle:respond({[":status"] = tostring(status)}, "")
end

function envoy_on_request(request_handle)
  -- The route has decided already (e.g. a header name that is not a gRPC metadata key, envoy.yaml):
  -- refused here so that the answer takes the way of every refusal of this filter.
  local refuse_with = request_handle:metadata():get("refuse_with")
  if refuse_with ~= nil then
    return refuse(request_handle, refuse_with)
  end
  local headers = request_handle:headers()
  normalise_bearer(headers)

  if is_grpc_call(headers) then
    if is_http1(request_handle) then
      return refuse(request_handle, 400)
    end
    return
  end
  local raw_path = headers:get(":path") or ""
  local path = string.match(raw_path, "^[^?]*")
  if not is_valid_path(path) then
    return refuse(request_handle, 400)
  end
  local method = headers:get(":method")
  local route, allowed = rest_route(request_handle, path, method)
  if route == nil and allowed ~= nil then
    -- Remembered for the answer (as refuse does): a HEAD answer shaped as gRPC carries no rendered
    -- envelope to read the status from.
    request_handle:streamInfo():dynamicMetadata():set("envoy.filters.http.lua", "refused_status", "405")
    request_handle:respond({[":status"] = "405", ["allow"] = allowed}, "")
    return
  end
  -- The transcoder binds query parameters to request fields, so only a route's own parameters may
  -- pass (?streamId=... must never override the stream in the path). A route without any (the
  -- superlike POST) drops the query string; a route with some refuses anything else.
  local kept = path
  local query = string.sub(raw_path, #path + 2)
  if query ~= "" and string.find(path, FEED_EVENTS_PATH) ~= nil then
    query = take_access_token(headers, query)
    raw_path = query == "" and path or (path .. "?" .. query)
  end
  if route ~= nil and next(route.query) ~= nil and query ~= "" then
    if not is_valid_query(query, route.query) then
      request_handle:streamInfo():dynamicMetadata():set("envoy.filters.http.lua", "refusal", "INVALID_QUERY_PARAMETER")
      return refuse(request_handle, 400)
    end
    kept = raw_path
  end
  if kept ~= headers:get(":path") then
    headers:replace(":path", kept)
  end
  if has_grpc_content_type(headers:get("content-type")) then
    -- Not POST, so the transcoder would pass it on untranscoded: there is no such resource.
    refuse(request_handle, 404)
  end
end

-- The rendered error table (see the top of this file); nil when envoy.yaml runs unrendered.
local function error_table(handle, key)
  return handle:metadata():get(key)
end

local function default_message(handle, status)
  local defaults = error_table(handle, "default_messages")
  if defaults == nil then
    return UNRENDERED_MESSAGE
  end
  return defaults[tostring(status)] or (status < 500 and defaults["4xx"]) or defaults["5xx"]
end

-- `message` if it is one of the service's texts, else the default text for `status`.
local function client_message(handle, status, message)
  local messages = error_table(handle, "messages")
  if message ~= nil and messages ~= nil then
    for _, known in ipairs(messages) do
      if known == message then
        return message
      end
    end
  end
  return default_message(handle, status)
end

local function json_escape(s)
  return (string.gsub(s, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end))
end

local function utc_timestamp(handle)
  local ms = handle:timestamp(EnvoyTimestampResolution.MILLISECOND)
  local seconds = math.floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%03dZ", ms - seconds * 1000)
end

local function envelope(handle, status, message)
  return '{"isSuccess":false,"statusCode":' .. status .. ',"data":null,"errors":["'
      .. json_escape(message) .. '"],"timestamp":"' .. utc_timestamp(handle) .. '"}'
end

-- An HTTP/1.x caller cannot be a gRPC client, but Envoy shapes every local reply to a request with
-- a gRPC content type as a gRPC answer (HTTP 200, grpc-status, grpc-message = the rendered body).
-- For HTTP/1.x callers local_reply_config rendered the envelope into it: unwrap it. Anything else
-- gRPC-shaped becomes the envelope for its status.
local function grpc_answer_to_envelope(handle, headers)
  local message = percent_decode(headers:get("grpc-message") or "")
  local status = tonumber(string.match(message, '^{"isSuccess":false,"statusCode":(%d+),'))
  local body = message
  local lua_metadata = handle:streamInfo():dynamicMetadata():get("envoy.filters.http.lua")
  if status == nil and lua_metadata ~= nil and lua_metadata["refused_status"] ~= nil then
    status = tonumber(lua_metadata["refused_status"])
    body = envelope(handle, status, default_message(handle, status))
  end
  -- An answer to HEAD carries no body to read the status from; the local reply named it (render.py).
  local local_status = tonumber(headers:get("x-envoy-livechat-local-status") or "")
  if status == nil and local_status ~= nil then
    status = local_status
    body = envelope(handle, status, default_message(handle, status))
  end
  if status == nil then
    local statuses = error_table(handle, "http_status_of_grpc")
    status = (statuses ~= nil and tonumber(statuses[headers:get("grpc-status") or "2"])) or 500
    body = envelope(handle, status, client_message(handle, status, message))
  end
  remove_matching(headers, is_internal_response_header)
  headers:replace(":status", tostring(status))
  headers:replace("content-type", "application/json")
  handle:body(true):setBytes(body)
end

function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  if has_grpc_content_type(headers:get("content-type")) then
    if is_http1(response_handle) then
      grpc_answer_to_envelope(response_handle, headers)
    end
    return
  end
  -- Errors are envelopes by now: the server's were answered by custom_response (which comes after
  -- this filter, so it sees answers first), Envoy's own by local_reply_config.
  remove_matching(headers, is_internal_response_header)
end
