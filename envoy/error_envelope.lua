-- REST edge glue for the LiveStreamChat transcoder (loaded by envoy.filters.http.lua, which sits
-- before grpc_json_transcoder, so responses reach it after the transcoder).
--
-- Request path (all callers):
--   * removes identity-like and x-envoy-* headers a client could forge (the only identity is the
--     verified JWT);
-- Request path (REST callers only):
--   * drops grpc-* headers (gRPC control metadata is not part of the REST contract);
--   * drops the query string (the transcoder would otherwise bind it to request fields);
--   * answers a non-POST call to the superlike route with 405 (rendered by local_reply_config).
-- Response path (REST callers only, i.e. responses that are not application/grpc):
--   * rewrites the transcoder's error body {"code":N,"message":"...","details":[...]} into
--     {"isSuccess":false,"statusCode":<HTTP status>,"data":null,"errors":["<message>"],"timestamp":"..."};
--   * drops grpc-* and x-envoy-* response headers so no gRPC or proxy internals leak.
-- Native gRPC responses are never touched: gRPC callers keep grpc-status, grpc-message and
-- grpc-status-details-bin exactly as the server sent them.

local FORGEABLE_PREFIXES = {
  "x-user", "x-auth", "x-jwt", "x-forwarded-user", "x-forwarded-email", "x-remote-user",
  "x-authenticated", "x-sender", "x-caller", "x-envoy-",
}

local SUPERLIKE_PATH = "^/api/v1/live%-stream/[^/]+/chat/superlike/?$"

-- Used when the server sends an error without a message.
local DEFAULT_MESSAGES = {
  [400] = "Validation failed",
  [401] = "Authentication required",
  [403] = "Insufficient permissions",
  [404] = "Resource not found",
  [409] = "Resource already exists or cannot be changed in its current state",
  [429] = "Too many requests",
  [503] = "Service temporarily unavailable",
  [504] = "Request timed out",
}

local function starts_with(s, prefix)
  return string.sub(s, 1, #prefix) == prefix
end

local function is_grpc(content_type)
  return content_type ~= nil and starts_with(string.lower(content_type), "application/grpc")
end

local function remove_matching(headers, predicate)
  local doomed = {}
  for name, _ in pairs(headers) do
    if predicate(string.lower(name)) then
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

-- First bytes of the forgeable prefixes: most headers are ruled out by their first byte alone.
local FORGEABLE_FIRST_BYTES = {}
for _, prefix in ipairs(FORGEABLE_PREFIXES) do
  FORGEABLE_FIRST_BYTES[string.byte(prefix, 1)] = true
end

local function is_forgeable(name)
  if not FORGEABLE_FIRST_BYTES[string.byte(name, 1)] then
    return false
  end
  for _, prefix in ipairs(FORGEABLE_PREFIXES) do
    if starts_with(name, prefix) then
      return true
    end
  end
  return false
end

local function is_grpc_header(name)
  return string.byte(name, 1) == G and starts_with(name, "grpc-")
end

local function is_internal_response_header(name)
  return is_grpc_header(name) or (string.byte(name, 1) == X and starts_with(name, "x-envoy-"))
end

-- Index just past the JSON string whose opening quote is at position i (nil if unterminated).
local function skip_string(s, i)
  local j = i + 1
  while j <= #s do
    local c = string.sub(s, j, j)
    if c == "\\" then
      j = j + 2
    elseif c == '"' then
      return j + 1
    else
      j = j + 1
    end
  end
  return nil
end

-- Reads the top-level "code" (number) and "message" (raw, still JSON-escaped string contents) of a
-- google.rpc.Status rendered as JSON. Nested values (e.g. inside "details") are skipped, so a
-- "message" key in an error detail is never mistaken for the top-level one.
local function parse_status(body)
  local i = string.find(body, "%S")
  if i == nil or string.sub(body, i, i) ~= "{" then
    return nil
  end
  i = i + 1
  local depth = 1
  local code, message
  local expecting_key = true
  local key
  while i <= #body and depth > 0 do
    local c = string.sub(body, i, i)
    if c == '"' then
      local j = skip_string(body, i)
      if j == nil then
        return nil
      end
      local raw = string.sub(body, i + 1, j - 2)
      if depth == 1 then
        if expecting_key then
          key = raw
        elseif key == "message" then
          message = raw
        end
      end
      i = j
    elseif c == "{" or c == "[" then
      depth = depth + 1
      i = i + 1
    elseif c == "}" or c == "]" then
      depth = depth - 1
      i = i + 1
    elseif c == ":" then
      if depth == 1 then
        expecting_key = false
      end
      i = i + 1
    elseif c == "," then
      if depth == 1 then
        expecting_key = true
      end
      i = i + 1
    elseif depth == 1 and not expecting_key and key == "code" and string.find(c, "[%d%-]") then
      local num = string.match(body, "^%-?%d+", i)
      code = tonumber(num)
      i = i + #num
    else
      i = i + 1
    end
  end
  if code == nil then
    return nil
  end
  return code, message
end

local function utc_timestamp(handle)
  local ms = handle:timestamp(EnvoyTimestampResolution.MILLISECOND)
  local seconds = math.floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%03dZ", ms - seconds * 1000)
end

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  remove_matching(headers, is_forgeable)

  if is_grpc(headers:get("content-type")) then
    return
  end
  -- A REST caller must not hand the server gRPC control metadata (e.g. grpc-timeout).
  remove_matching(headers, is_grpc_header)
  local raw_path = headers:get(":path") or ""
  local path = string.match(raw_path, "^[^?]*")
  -- The REST contract has no query parameters, but the transcoder would bind them to request
  -- fields (e.g. ?streamId=... would override the stream in the path). The path and the body are
  -- the only inputs, so the query string is dropped.
  if path ~= raw_path then
    headers:replace(":path", path)
  end
  if string.find(path, SUPERLIKE_PATH) ~= nil and headers:get(":method") ~= "POST" then
    request_handle:respond({[":status"] = "405", ["allow"] = "POST"}, "Method not allowed")
  end
end

function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  if is_grpc(headers:get("content-type")) then
    return
  end
  remove_matching(headers, is_internal_response_header)

  local status = tonumber(headers:get(":status"))
  if status == nil or status < 400 then
    return
  end
  local content_type = string.lower(headers:get("content-type") or "")
  if not starts_with(content_type, "application/json") then
    return
  end

  local body = response_handle:body()
  if body == nil or body:length() == 0 then
    return
  end
  local text = body:getBytes(0, body:length())
  -- Local replies are already envelopes (local_reply_config); only transcoded gRPC errors remain.
  if string.find(text, '^%s*{"isSuccess"') then
    return
  end
  local code, message = parse_status(text)
  if code == nil then
    return
  end
  if message == nil or message == "" then
    message = DEFAULT_MESSAGES[status] or "Internal server error"
  end

  local envelope = '{"isSuccess":false,"statusCode":' .. status
      .. ',"data":null,"errors":["' .. message .. '"],"timestamp":"'
      .. utc_timestamp(response_handle) .. '"}'
  -- setBytes also fixes content-length; the headers object may no longer be touched once the
  -- body has been buffered, and content-type is already application/json.
  body:setBytes(envelope)
end
