--[[
Test harness for swyx_jobservice/callrouting/rundruf.lua.

    lua harness.lua path/to/rundruf.lua < scenario.json > outcome.json

Scenario (JSON on stdin):
  config      the CONFIG table handed to M.run
  clock       start time in seconds (default 1700000000)
  stateDir    optional: use the file store in this directory instead of an in-memory store
  calls       list of calls, run in order against one store and one clock; each has
                after        seconds the clock moves on before the call (default 0)
                callerNumber, callerName, callId
                callerNameHex  optional: the caller name as hex bytes (for non-UTF-8 names)
                digits       answers to read_digits in order; null = timeout (""), and when the
                             list runs out the caller hangs up (read_digits returns nil)
                recordings   answers to record in order (true / false); default true
                playbackFails  optional: playing a recording back raises an error
                http         answers to http_post in order: {"status": 201, "body": "..."};
                             status null = transport error; default 201
                downFor      seconds from the call's start during which every http_post
                             fails as a job service that is down does (connection refused)
                agentFile    optional: the text read_file returns (any path is logged)
                memberStates optional: what member_states returns ({"17": 2}); absent = nil
  keys        optional: {name = key} replacing entries of M.KEYS before the calls
  encodeHex   optional: list of hex strings; instead of calls, print their JSON encodings
  swyx        optional: instead of calls, one call through the SwyxWare adapter with fake
              PBXCall / PBXScript / PBXWebRequest: {dtmf = "4711#21", callerNumber, callerName,
              callId, http = [statuses], hangupWhenEmpty, missing = [PBXCall names],
              members = [{UserID, State}] for a fake PBXConfig.GetUserByAddress (methods
              instead of fields with membersAsMethods = true),
              entryPoint = true to run the script's own entry point with its shipped CONFIG}

Outcome (JSON on stdout): {"calls": [{"result", "events": [...]}], "store": {...}} where each
event is {"type": "answer" | "play" | "read" | "record" | "playback" | "sleep" | "post" |
"hangup", ...}.
]]

local script = assert(arg[1], "usage: lua harness.lua rundruf.lua < scenario.json")

local JNULL = setmetatable({}, { __tostring = function() return "JNULL" end })

-------------------------------------------------------------------------------- JSON decoder

local function decode(text)
    local pos = 1
    local value

    local function fail(msg) error(string.format("bad JSON at %d: %s", pos, msg), 0) end
    local function ws() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end

    local function utf8(cp)
        if cp < 0x80 then return string.char(cp) end
        if cp < 0x800 then
            return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40)
        end
        if cp < 0x10000 then
            return string.char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40,
                0x80 + cp % 0x40)
        end
        return string.char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
            0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
    end

    local simple = {
        b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/",
    }

    local function str()
        pos = pos + 1
        local out = {}
        while true do
            local c = text:sub(pos, pos)
            if c == "" then fail("unterminated string") end
            if c == '"' then pos = pos + 1; return table.concat(out) end
            if c == "\\" then
                local e = text:sub(pos + 1, pos + 1)
                if simple[e] then
                    out[#out + 1] = simple[e]
                    pos = pos + 2
                elseif e == "u" then
                    local cp = tonumber(text:sub(pos + 2, pos + 5), 16) or fail("bad \\u")
                    pos = pos + 6
                    if cp >= 0xD800 and cp <= 0xDBFF and text:sub(pos, pos + 1) == "\\u" then
                        local low = tonumber(text:sub(pos + 2, pos + 5), 16)
                        cp = 0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00)
                        pos = pos + 6
                    end
                    out[#out + 1] = utf8(cp)
                else
                    fail("bad escape")
                end
            else
                out[#out + 1] = c
                pos = pos + 1
            end
        end
    end

    local function arr()
        pos = pos + 1
        local out = {}
        ws()
        if text:sub(pos, pos) == "]" then pos = pos + 1; return out end
        while true do
            out[#out + 1] = value()
            ws()
            local c = text:sub(pos, pos)
            pos = pos + 1
            if c == "]" then return out end
            if c ~= "," then fail("expected , or ]") end
        end
    end

    local function obj()
        pos = pos + 1
        local out = {}
        ws()
        if text:sub(pos, pos) == "}" then pos = pos + 1; return out end
        while true do
            ws()
            if text:sub(pos, pos) ~= '"' then fail("expected key") end
            local k = str()
            ws()
            if text:sub(pos, pos) ~= ":" then fail("expected :") end
            pos = pos + 1
            out[k] = value()
            ws()
            local c = text:sub(pos, pos)
            pos = pos + 1
            if c == "}" then return out end
            if c ~= "," then fail("expected , or }") end
        end
    end

    value = function()
        ws()
        local c = text:sub(pos, pos)
        if c == "{" then return obj() end
        if c == "[" then return arr() end
        if c == '"' then return str() end
        for word, v in pairs({ ["true"] = true, ["false"] = false, ["null"] = JNULL }) do
            if text:sub(pos, pos + #word - 1) == word then pos = pos + #word; return v end
        end
        local num = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
        if num and num ~= "" then pos = pos + #num; return tonumber(num) end
        fail("unexpected " .. c)
    end

    local result = value()
    ws()
    if pos <= #text then fail("trailing data") end
    return result
end

local function unhex(h)
    return (h:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end))
end

local function plain(v)
    if v == JNULL then return nil end
    return v
end

-------------------------------------------------------------------------------- stand-ins

local scenario = decode(io.read("*a"))

-- SwyxWare stand-ins with the names the adapter uses (documented or ASSUMED, see README.md):
-- a whole call through M.swyx_pbx, or, with "entryPoint", through the script's own entry point.
local function run_swyx(spec, M)
    local events, dtmf, answers = {}, spec.dtmf or "", spec.http or {}
    local function log(e) events[#events + 1] = e end
    local missing = {}
    for _, name in ipairs(spec.missing or {}) do missing[name] = true end
    local call = {
        PlayMessage = function(path) log({ type = "PlayMessage", path = path }); return 0 end,
        GetDTMFChar = function()
            if dtmf == "" then return "" end
            local c = dtmf:sub(1, 1)
            dtmf = dtmf:sub(2)
            return c
        end,
        IsOriginatorDisconnected = function()
            return spec.hangupWhenEmpty == true and dtmf == ""
        end,
        RecordMessage = function(path, seconds, silence)
            log({ type = "RecordMessage", path = path, seconds = seconds,
                  silence = silence == nil and M.null or silence })
            return 0
        end,
        Disconnect = function() log({ type = "Disconnect" }); return 0 end,
        CallingPartyNumber = function() return spec.callerNumber end,
        CallingPartyName = function() return spec.callerName end,
        CallId = function() return spec.callId end,
    }
    for name in pairs(missing) do call[name] = nil end
    PBXCall = call
    if spec.members then
        PBXConfig = {
            GetUserByAddress = function(address)
                log({ type = "GetUserByAddress", address = address })
                local users = {}
                for i, m in ipairs(spec.members) do
                    if spec.membersAsMethods then
                        users[i] = { UserID = function() return m.UserID end,
                                     State = function() return m.State end }
                    else
                        users[i] = { UserID = m.UserID, State = m.State }
                    end
                end
                return users
            end,
        }
    end
    PBXScript = {
        TraceInfo = 4,
        Sleep = function(ms) log({ type = "Sleep", ms = ms }) end,
        OutputTraceEx = function(level, msg)
            log({ type = "Trace", level = level, message = msg })
        end,
    }
    PBXSuccess, PBXCallTermOriginatorDisconnected = 0, 10
    package.preload["PBXWebRequest"] = function()
        return {
            new = function()
                local req = { headers = {} }
                local session = {}
                function session:SetVerb(v) req.verb = v end
                function session:SetUrl(u) req.url = u end
                function session:AddHeader(h) req.headers[#req.headers + 1] = h end
                function session:SetBody(b) req.body = b end
                function session:Execute()
                    req.type = "http"
                    log(req)
                    req.status = table.remove(answers, 1) or 201
                end
                function session:GetResponseCode() return req.status end
                function session:GetResponseBody() return '{"id":"job-1"}' end
                return session
            end,
        }
    end
    local result
    if spec.entryPoint then
        dofile(script) -- runs M.main() with the shipped CONFIG, now that PBXCall exists
        result = "entry point ran"
    else
        result = M.run(M.swyx_pbx(scenario.config), M.memory_store(), scenario.config)
    end
    return { result = result, events = events }
end

local M = dofile(script) -- no PBXCall global yet, so the entry point does not run
-- Other keys, to prove the flow reads M.KEYS rather than literal digits.
for name, value in pairs(scenario.keys or {}) do M.KEYS[name] = value end

if scenario.swyx then
    io.write(M.json_encode(run_swyx(scenario.swyx, M)))
    return
end

if scenario.encodeHex then
    local out = {}
    for i, h in ipairs(scenario.encodeHex) do out[i] = M.json_encode(unhex(h)) end
    io.write(M.json_encode({ encoded = out }))
    return
end

local clock = scenario.clock or 1700000000
local store = scenario.stateDir and M.file_store(scenario.stateDir) or M.memory_store()

local function fake_pbx(call, events)
    local digits, recordings, answers = call.digits or {}, call.recordings or {}, call.http or {}
    local n_digits, n_recordings, n_answers = 0, 0, 0
    local function log(e) events[#events + 1] = e end
    local name = plain(call.callerName)
    if call.callerNameHex then name = unhex(call.callerNameHex) end

    local pbx = {}
    function pbx.answer() log({ type = "answer" }) end
    function pbx.play(prompt) log({ type = "play", prompt = prompt }) end
    function pbx.hangup() log({ type = "hangup" }) end
    function pbx.caller_number() return plain(call.callerNumber) end
    function pbx.caller_name() return name end
    function pbx.call_id() return plain(call.callId) end
    function pbx.now() return clock end
    function pbx.sleep(seconds)
        log({ type = "sleep", seconds = seconds })
        clock = clock + seconds
    end
    function pbx.trace(msg) log({ type = "trace", message = msg }) end
    function pbx.read_file(path)
        log({ type = "readFile", path = path })
        return plain(call.agentFile)
    end
    if call.memberStates ~= nil then
        function pbx.member_states(group)
            log({ type = "states", group = group })
            local states = plain(call.memberStates)
            if states == "error" then error("PBXConfig failed", 0) end
            return states
        end
    end
    function pbx.read_digits(max, timeout, terminator)
        n_digits = n_digits + 1
        local e = { type = "read", max = max, timeout = timeout, terminator = terminator or M.null }
        log(e)
        if n_digits > #digits then
            e.result = M.null
            return nil
        end
        local d = plain(digits[n_digits]) or ""
        e.result = d
        return d
    end
    function pbx.record(path, max_seconds, terminator, silence_seconds)
        n_recordings = n_recordings + 1
        local ok = recordings[n_recordings]
        if ok == nil then ok = true end
        log({ type = "record", path = path, maxSeconds = max_seconds, terminator = terminator,
              silenceSeconds = silence_seconds, ok = ok })
        return ok
    end
    function pbx.playback(path)
        log({ type = "playback", path = path })
        if call.playbackFails then error("cannot play " .. path, 0) end
    end
    local down_until = clock + (call.downFor or 0)
    function pbx.http_post(url, headers, body)
        n_answers = n_answers + 1
        local a = answers[n_answers] or { status = 201, body = '{"id":"job-1"}' }
        if clock < down_until then a = { status = nil } end
        local status = plain(a.status)
        log({ type = "post", url = url, headers = headers, body = body, status = status or M.null })
        if status == nil then error("connection refused", 0) end
        return status, plain(a.body) or ""
    end
    return pbx
end

local outcome = { calls = {} }
for i, call in ipairs(scenario.calls or {}) do
    clock = clock + (call.after or 0)
    local events = {}
    local ok, result = pcall(M.run, fake_pbx(call, events), store, scenario.config)
    if not ok then result = "error: " .. tostring(result) end
    outcome.calls[i] = { result = result, events = events }
end
outcome.store = store.dump and store.dump() or {}
io.write(M.json_encode(outcome))
