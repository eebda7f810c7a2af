--[[
Rundruf: call routing for the agent number of a broadcast group on SwyxWare (Lua call routing).

A caller dials the agent number, enters the PIN (digits, then #), picks 1 test / 2 alarm with the
stored message / 3 alarm with a message recorded now, confirms, and the script POSTs the job to the
Rundruf job service on this host (see README.md next to this file).

Layout of this file:
  1. CONFIG        - filled in BY HAND when this file is pasted into an agent user's call
                     routing; the Rundruf agent never writes this script (it writes only the
                     agent file named below, with PIN, number and name)
  2. M.run         - the flow as plain Lua over a `pbx` object and a `store`; no SwyxWare calls
  3. throttle, JSON, stores
  4. M.swyx_pbx    - the thin adapter from `pbx` to SwyxWare's functions (names partly ASSUMED,
                     see README.md "What is documented, what is assumed")
  5. entry point   - runs only when SwyxWare's PBXCall/PBXScript objects exist; a test harness
                     loads this file with dofile() and gets the module table instead.

Written for Lua 5.1 to 5.4 (no integer division, goto, bit operators or attributes).
Never put the PIN or the routing token into a trace line.
]]

-- BEGIN RUNDRUF CONFIG (filled in by hand once per agent user; the agent does not write it)
local CONFIG = {
    agent_number = "__AGENT_NUMBER__",
    pin = "__PIN__",
    routing_token = "__ROUTING_TOKEN__",
    jobservice_url = "http://127.0.0.1:8080",
    prompt_dir = "C:\\ProgramData\\Rundruf\\prompts",
    recording_dir = "C:\\ProgramData\\Rundruf\\recordings",
    state_dir = "C:\\ProgramData\\Rundruf\\state",
    -- With the agent user's id here, PIN, number and name come from the file the agent writes
    -- (<agent_dir>\\rundruf_agent_<id>.txt) and the two values above are not used.
    agent_user_id = "",
    agent_dir = "C:\\ProgramData\\Rundruf\\agents",
}
-- END RUNDRUF CONFIG

local M = {}

-- Tunables; any of them can be overridden by a field of the same name in CONFIG.
-- M.DEFAULTS, M.KEYS and M.PROMPTS are the dialogue's one definition, edge_agent/ivr/definition.py,
-- which the agent's own SIP IVR uses too: change both together
-- (tests/callrouting/test_ivr_definition.py runs this file and compares).
M.DEFAULTS = {
    pin_tries = 3,              -- PIN attempts per call
    pin_max_digits = 16,
    digit_timeout = 10,         -- seconds without a key press before input ends
    -- Seconds that must pass after a caller's n-th wrong PIN before the next try is accepted
    -- (entry n + 1; the last entry repeats). Per caller number, kept across calls.
    throttle_delays = { 0, 2, 5, 10, 20, 30, 60 },
    throttle_forget = 3600,     -- a caller's count starts over after this long without a wrong PIN
    notice_threshold = 10,      -- wrong PINs for this group, from anyone, within notice_window ...
    notice_window = 600,        -- ... make one POST /notices (at most one per window)
    menu_rounds = 5,            -- menu prompts per call before giving up
    record_max_seconds = 60,
    -- A recording ends after this long without speech (passed to SwyxWare's RecordMessage,
    -- see M.swyx_pbx; 0 = only # and the limit end it).
    record_silence_seconds = 2,
    -- The agent's own SIP IVR ends a recording with no speech since the tone after this long;
    -- not used here (SwyxWare's RecordMessage takes one silence time, the one above).
    record_no_speech_seconds = 5,
    record_takes = 3,
    -- POST /jobs is retried (one idempotency key) until post_window seconds of waits have
    -- passed: longer than the service wrapper's 5 s restart of a crashed job service.
    post_window = 15,
    post_backoff_first = 0.5,   -- the first wait; each next one doubles ...
    post_backoff_max = 4,       -- ... up to this
}

-- The keys the caller presses.
M.KEYS = {
    pin_end = "#",              -- ends the PIN entry
    test = "1",                 -- menu: test (mode 1)
    alarm = "2",                -- menu: alarm with the stored message (mode 2)
    alarm_recorded = "3",       -- menu: alarm with a message recorded now (mode 3)
    cancel = "*",               -- menu: cancel, nothing is triggered
    confirm = "1",              -- confirms mode 1 or 2; any other key goes back to the menu
    record_end = "#",           -- ends the recording
    record_send = "1",          -- after the playback: send (this is mode 3's confirmation)
    record_again = "2",         -- after the playback: record again
    stop = "0",                 -- menu: stop the group's running broadcast (issue 17)
}
local K = M.KEYS

-- Prompt files, 8 kHz 16-bit mono PCM, German by default; made by make_prompts.py (the texts
-- are in edge_agent/ivr/definition.py; English ones with --lang en).
M.PROMPTS = {
    pin = "rundruf_pin.wav",
    pin_wrong = "rundruf_pin_falsch.wav",
    wait = "rundruf_bitte_warten.wav",
    menu = "rundruf_menue.wav",
    invalid = "rundruf_ungueltig.wav",
    confirm_test = "rundruf_bestaetigen_test.wav",
    confirm_alarm = "rundruf_bestaetigen_alarm.wav",
    record = "rundruf_aufnahme.wav",
    record_check = "rundruf_aufnahme_pruefen.wav",
    record_failed = "rundruf_aufnahme_fehler.wav",
    triggered = "rundruf_ausgeloest.wav",
    failed = "rundruf_fehler.wav",
    cancelled = "rundruf_abgebrochen.wav",
    goodbye = "rundruf_auf_wiederhoeren.wav",
    stopped = "rundruf_beendet.wav",            -- after the menu's 0: the stop is on its way
    stop_none = "rundruf_kein_laufender.wav",   -- the menu's 0 with no broadcast running
}
local P = M.PROMPTS

local function setting(ctx, name)
    local v = ctx.cfg[name]
    if v == nil then v = M.DEFAULTS[name] end
    return v
end

local function trace(ctx, msg)
    if ctx.pbx.trace then
        pcall(ctx.pbx.trace, "Rundruf " .. tostring(ctx.cfg.agent_number) .. ": " .. msg)
    end
end

local function placeholder(v)
    return type(v) ~= "string" or v == "" or v:match("^__.*__$") ~= nil
end

local function absolute(path)
    if type(path) ~= "string" then return false end
    -- /unix, C:\windows, \\server\share
    return (path:match("^/") or path:match("^%a:[\\/]") or path:match("^\\\\")) ~= nil
end

-- Why the configuration cannot be used, or nil. An empty or unreplaced PIN must never match
-- whatever a caller types, so the script refuses to run instead.
function M.check_config(cfg)
    if cfg.agent_file_problem then return cfg.agent_file_problem end
    if placeholder(cfg.agent_number) then return "agent_number is not set" end
    if placeholder(cfg.pin) or not cfg.pin:match("^%d+$") or #cfg.pin < 4 then
        return "pin must be at least 4 digits"
    end
    -- Printable ASCII only: anything else could never match, and CR/LF would forge headers.
    if placeholder(cfg.routing_token) or not cfg.routing_token:match("^[!-~]+$") then
        return "routing_token is not set or not printable ASCII"
    end
    if type(cfg.jobservice_url) ~= "string" or not cfg.jobservice_url:match("^https?://") then
        return "jobservice_url must start with http:// or https://"
    end
    if not absolute(cfg.recording_dir) then return "recording_dir must be an absolute path" end
    return nil
end

-------------------------------------------------------------------------------- agent file

local function unhex(h)
    return (h:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end))
end

function M.agent_file_path(cfg)
    local dir = cfg.agent_dir or ""
    local sep = dir:find("\\", 1, true) and "\\" or "/"
    return dir .. sep .. "rundruf_agent_" .. cfg.agent_user_id .. ".txt"
end

-- The config with PIN, number and name from the agent file (lines "pin=", "number=", "name="
-- with the name in hex), when `agent_user_id` is set; `agent_file_problem` says what is wrong.
function M.agent_config(cfg, pbx)
    local id = cfg.agent_user_id
    if id == nil or id == "" then return cfg end
    local out = {}
    for k, v in pairs(cfg) do out[k] = v end
    if type(id) ~= "string" or not id:match("^%d+$") then
        out.agent_file_problem = "agent_user_id must be the agent user's id (digits)"
        return out
    end
    local path = M.agent_file_path(cfg)
    local ok, text = pcall(function() return pbx.read_file and pbx.read_file(path) end)
    if not ok or type(text) ~= "string" then
        out.agent_file_problem = "the agent file " .. path .. " cannot be read"
        return out
    end
    out.pin, out.agent_number = "", ""
    for line in text:gmatch("[^\r\n]+") do
        local k, v = line:match("^(%a+)=(.*)$")
        if k == "pin" then out.pin = v
        elseif k == "number" then out.agent_number = v
        elseif k == "name" and v:match("^%x*$") and #v % 2 == 0 then out.agent_name = unhex(v)
        end
    end
    return out
end

-------------------------------------------------------------------------------- member states

-- {user id = state 0-8} of the agent's group (its name is the agent's without "Rundruf "), for
-- test mode; nil when the PBX cannot say. Never stops the call.
local function member_states(ctx)
    local name = ctx.cfg.agent_name
    if type(name) ~= "string" or name == "" or not ctx.pbx.member_states then return nil end
    local group = (name:gsub("^Rundruf ", ""))
    local ok, states = pcall(ctx.pbx.member_states, group)
    if not ok then
        trace(ctx, "member states unavailable: " .. tostring(states))
        return nil
    end
    if type(states) ~= "table" or next(states) == nil then return nil end
    return states
end

-------------------------------------------------------------------------------- throttle

local function key(ctx, name)
    return "rundruf/" .. ctx.cfg.agent_number .. "/" .. name
end

local function caller_key(ctx)
    return key(ctx, "caller/" .. (ctx.caller ~= "" and ctx.caller or "anonymous"))
end

-- The caller's wrong-PIN count and the time of the last one ("<count> <time>" in the store).
local function caller_state(ctx, now)
    local raw = ctx.store.get(caller_key(ctx))
    local count, last = tostring(raw or ""):match("^(%d+) (%d+)$")
    count, last = tonumber(count), tonumber(last)
    if not count or now - last > setting(ctx, "throttle_forget") then return 0, nil end
    return count, last
end

-- Seconds this caller still has to wait before the next PIN try is accepted.
function M.throttle_wait(delays, count, last, now)
    if count == 0 or last == nil then return 0 end
    local delay = delays[math.min(count + 1, #delays)]
    return math.max(0, last + delay - now)
end

local function wait_for_turn(ctx)
    local pbx = ctx.pbx
    local count, last = caller_state(ctx, pbx.now())
    local delays = setting(ctx, "throttle_delays")
    if M.throttle_wait(delays, count, last, pbx.now()) > 0 then
        pbx.play(P.wait)
        local rest = M.throttle_wait(delays, count, last, pbx.now())
        if rest > 0 then pbx.sleep(rest) end
    end
end

-- Wrong-PIN times for the whole group within the notice window ("t1 t2 ..." in the store).
local function recent_wrong(ctx, now)
    local times = {}
    for t in tostring(ctx.store.get(key(ctx, "wrong_pins")) or ""):gmatch("%d+") do
        t = tonumber(t)
        if now - t < setting(ctx, "notice_window") then times[#times + 1] = t end
    end
    return times
end

local function send_notice(ctx, count)
    local body = M.json_encode({
        kind = "wrongPins",
        agentNumber = ctx.cfg.agent_number,
        callerNumber = ctx.caller,
        count = count,
    })
    local url = ctx.cfg.jobservice_url .. "/notices"
    local ok, status = pcall(ctx.pbx.http_post, url, ctx.headers, body)
    return ok and type(status) == "number" and status >= 200 and status < 300
end

-- Counts a wrong PIN for the caller (throttle) and for the group (notice). Never blocks anyone.
local function record_wrong(ctx)
    local now = math.floor(ctx.pbx.now())
    local count = caller_state(ctx, now)
    ctx.store.set(caller_key(ctx), string.format("%d %d", count + 1, now))

    local times = recent_wrong(ctx, now)
    times[#times + 1] = now
    local keep = {}
    for i = math.max(1, #times - 99), #times do keep[#keep + 1] = string.format("%d", times[i]) end
    ctx.store.set(key(ctx, "wrong_pins"), table.concat(keep, " "))

    if #times < setting(ctx, "notice_threshold") then return end
    local noticed = tonumber(ctx.store.get(key(ctx, "notice_at")) or "")
    if noticed and now - noticed < setting(ctx, "notice_window") then return end
    if send_notice(ctx, #times) then
        ctx.store.set(key(ctx, "notice_at"), string.format("%d", now))
    else
        trace(ctx, "could not send the wrong-PIN notice; will try again on the next wrong PIN")
    end
end

-- The throttle is best effort: if the store fails, the call goes on without it.
local function guarded(ctx, what, fn)
    local ok, err = pcall(fn, ctx)
    if not ok then trace(ctx, what .. " failed: " .. tostring(err)) end
end

-------------------------------------------------------------------------------- flow

local function ask_pin(ctx)
    local pbx = ctx.pbx
    for _ = 1, setting(ctx, "pin_tries") do
        guarded(ctx, "throttle", wait_for_turn)
        pbx.play(P.pin)
        local digits = pbx.read_digits(
            setting(ctx, "pin_max_digits"), setting(ctx, "digit_timeout"), K.pin_end)
        if digits == nil then return false, "hangup" end
        if digits == ctx.cfg.pin then
            guarded(ctx, "throttle reset", function(c) c.store.set(caller_key(c), "") end)
            return true
        end
        if digits == "" then
            pbx.play(P.invalid)
        else
            guarded(ctx, "wrong-PIN count", record_wrong)
            pbx.play(P.pin_wrong)
        end
    end
    return false, "failed"
end

local function read_key(ctx)
    return ctx.pbx.read_digits(1, setting(ctx, "digit_timeout"), nil)
end

local function safe_name(s)
    return (tostring(s):gsub("[^%w%-]", "_"))
end

local function recording_path(ctx, take)
    local dir = ctx.cfg.recording_dir
    local sep = dir:find("\\", 1, true) and "\\" or "/"
    if dir:sub(-1) == sep then dir = dir:sub(1, -2) end
    return string.format("%s%srundruf_%s_%s_%d_%d.wav", dir, sep, safe_name(ctx.cfg.agent_number),
        safe_name(ctx.call_id), math.floor(ctx.pbx.now()), take)
end

-- The caller hears what was recorded before deciding to send it. A playback that fails
-- costs nothing but the playback: the caller can still send or record again.
local function play_back(ctx, path)
    local ok, err = pcall(ctx.pbx.playback, path)
    if not ok then trace(ctx, "playback failed: " .. tostring(err)) end
end

-- Mode 3: record until # (record_end), silence or the time limit, play the recording back;
-- "1 to send, 2 to record again" is the confirmation.
-- Returns the path, or nil and "hangup" / "back" (to the menu).
local function record_message(ctx)
    local pbx = ctx.pbx
    for take = 1, setting(ctx, "record_takes") do
        local path = recording_path(ctx, take)
        pbx.play(P.record)
        local ok = pbx.record(path, setting(ctx, "record_max_seconds"), K.record_end,
            setting(ctx, "record_silence_seconds"))
        if ok == nil then return nil, "hangup" end
        if ok then
            play_back(ctx, path)
            pbx.play(P.record_check)
            local k = read_key(ctx)
            if k == nil then return nil, "hangup" end
            if k == K.record_send then return path end
            if k ~= K.record_again then return nil, "back" end
        else
            pbx.play(P.record_failed)
        end
    end
    return nil, "back"
end

-- Modes 1 and 2: "press 1 to start"; any other key goes back to the menu.
local function confirm(ctx, mode)
    ctx.pbx.play(mode == 1 and P.confirm_test or P.confirm_alarm)
    local k = read_key(ctx)
    if k == nil then return nil end
    return k == K.confirm
end

-- Returns mode and recording path (mode 3), or nil and why. Mode 0 (the key K.stop) is no
-- broadcast: a job that stops the group's running broadcast (issue 17).
local function choose_mode(ctx)
    local pbx = ctx.pbx
    for _ = 1, setting(ctx, "menu_rounds") do
        pbx.play(P.menu)
        local k = read_key(ctx)
        if k == nil then return nil, "hangup" end
        if k == K.cancel then
            pbx.play(P.cancelled)
            return nil, "cancelled"
        elseif k == K.stop then
            return 0, nil
        elseif k == K.alarm_recorded then
            local path, why = record_message(ctx)
            if path then return 3, path end
            if why == "hangup" then return nil, why end
        elseif k == K.test or k == K.alarm then
            local mode = (k == K.test) and 1 or 2
            local yes = confirm(ctx, mode)
            if yes == nil then return nil, "hangup" end
            if yes then return mode, nil end
        else
            pbx.play(P.invalid)
        end
    end
    pbx.play(P.goodbye)
    return nil, "menu_exhausted"
end

-- 4xx answers will not change on a retry (bad token, bad body); 408/425/429 might.
local function permanent(status)
    return type(status) == "number" and status >= 400 and status < 500
        and status ~= 408 and status ~= 425 and status ~= 429
end

function M.job_body(ctx, mode, recording, idempotency_key)
    return M.json_encode({
        agentNumber = ctx.cfg.agent_number,
        groupId = M.null,
        mode = mode,
        callerNumber = ctx.caller,
        callerName = (ctx.caller_name ~= "" and ctx.caller_name) or M.null,
        idempotencyKey = idempotency_key,
        recording = M.null,
        recordingPath = recording or M.null,
        memberStates = ctx.states or M.null,
    })
end

-- "<agent>-<call id>-<unix time>" in the job service's alphabet (1-128 of A-Z a-z 0-9 . _ : -),
-- whatever characters SwyxWare's call id has.
function M.idempotency_key(agent_number, call_id, now)
    local function clean(s) return (tostring(s):gsub("[^%w%.:_%-]", "_")) end
    local agent, stamp = clean(agent_number):sub(1, 32), string.format("%d", math.floor(now))
    local room = 128 - #agent - #stamp - 2
    return agent .. "-" .. clean(call_id):sub(1, room) .. "-" .. stamp
end

-- The waits between POST /jobs attempts: first, doubling, capped, until they add up to at
-- least the window (0.5 1 2 4 4 4 with the defaults: 15.5 s, 7 attempts).
function M.post_waits(first, max, window)
    local waits, total, wait = {}, 0, first
    while total < window do
        waits[#waits + 1] = wait
        total = total + wait
        wait = math.min(wait * 2, max)
    end
    return waits
end

-- POST /jobs, retried with the same idempotency key so the job service stores it once. The
-- caller hears "please wait" once, when the first attempt failed and a retry follows.
local function post_job(ctx, mode, recording)
    local pbx = ctx.pbx
    local idem = M.idempotency_key(ctx.cfg.agent_number, ctx.call_id, pbx.now())
    local body = M.job_body(ctx, mode, recording, idem)
    local waits = M.post_waits(setting(ctx, "post_backoff_first"),
        setting(ctx, "post_backoff_max"), setting(ctx, "post_window"))
    local url = ctx.cfg.jobservice_url .. "/jobs"
    for attempt = 1, #waits + 1 do
        local ok, status = pcall(pbx.http_post, url, ctx.headers, body)
        if ok and (status == 200 or status == 201) then return true end
        local what = ok and tostring(status) or ("error " .. tostring(status))
        trace(ctx, string.format("POST /jobs attempt %d: %s", attempt, what))
        if ok and permanent(status) then return false end
        if attempt > #waits then return false end
        if attempt == 1 then pbx.play(P.wait) end
        pbx.sleep(waits[attempt])
    end
    return false
end

-- The whole call. `pbx` and `store` are described in README.md; returns how the call ended.
function M.run(pbx, store, cfg)
    cfg = M.agent_config(cfg, pbx)
    local ctx = { pbx = pbx, store = store, cfg = cfg }
    ctx.caller = tostring(pbx.caller_number() or "")
    ctx.caller_name = tostring(pbx.caller_name() or "")
    ctx.call_id = tostring((pbx.call_id and pbx.call_id()) or "")
    if ctx.call_id == "" then ctx.call_id = "r" .. math.random(100000000, 999999999) end
    ctx.headers = {
        ["Authorization"] = "Bearer " .. tostring(cfg.routing_token),
        ["Content-Type"] = "application/json",
    }
    pbx.answer()
    local problem = M.check_config(cfg)
    if problem then
        trace(ctx, "not configured: " .. problem)
        pbx.play(P.failed)
        pbx.hangup()
        return "misconfigured"
    end

    local ok, why = ask_pin(ctx)
    if not ok then
        if why == "failed" then pbx.play(P.goodbye) end
        pbx.hangup()
        return "pin_" .. why
    end
    local mode, recording = choose_mode(ctx)
    if not mode then
        pbx.hangup()
        return recording
    end
    -- Test mode calls only free members: tell the agent who is free now.
    if mode == 1 then ctx.states = member_states(ctx) end
    local posted = post_job(ctx, mode, recording)
    if mode == 0 then
        -- The job service keeps the stop like any job; the agent carries it out at once.
        pbx.play(posted and P.stopped or P.failed)
        pbx.hangup()
        return posted and "stopped" or "post_failed"
    end
    pbx.play(posted and P.triggered or P.failed)
    pbx.hangup()
    return posted and "triggered" or "post_failed"
end

-------------------------------------------------------------------------------- JSON

M.null = setmetatable({}, { __tostring = function() return "null" end })

local ESCAPES = {
    ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
    ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

-- Length of the well-formed UTF-8 sequence starting at byte i (RFC 3629), or nil.
local function utf8_length(s, i)
    local c = s:byte(i)
    local n, lo, hi
    if c < 0x80 then return 1
    elseif c >= 0xC2 and c <= 0xDF then n, lo, hi = 2, 0x80, 0xBF
    elseif c == 0xE0 then n, lo, hi = 3, 0xA0, 0xBF
    elseif c == 0xED then n, lo, hi = 3, 0x80, 0x9F
    elseif c >= 0xE1 and c <= 0xEF then n, lo, hi = 3, 0x80, 0xBF
    elseif c == 0xF0 then n, lo, hi = 4, 0x90, 0xBF
    elseif c == 0xF4 then n, lo, hi = 4, 0x80, 0x8F
    elseif c >= 0xF1 and c <= 0xF3 then n, lo, hi = 4, 0x80, 0xBF
    else return nil end
    local second = s:byte(i + 1)
    if not second or second < lo or second > hi then return nil end
    for j = i + 2, i + n - 1 do
        local b = s:byte(j)
        if not b or b < 0x80 or b > 0xBF then return nil end
    end
    return n
end

-- Bytes 0x80-0x9F as Windows-1252 has them (U+FFFD where it has none). Read as Latin-1 they
-- would be C1 control characters, which the job service refuses (swyx_jobservice/text.py):
-- a caller's name with a "€" or a "„" must not cost the alarm.
local CP1252 = {
    0x20AC, 0xFFFD, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0xFFFD, 0x017D, 0xFFFD,
    0xFFFD, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0xFFFD, 0x017E, 0x0178,
}

-- A JSON string (RFC 8259 section 7). Bytes that are not UTF-8 are read as Windows-1252 (the
-- code page a Windows PBX most likely meant), so the result is always valid JSON.
local function encode_string(s)
    local out, i, n = { '"' }, 1, #s
    while i <= n do
        local len = utf8_length(s, i)
        local c = s:byte(i)
        if len == nil then
            out[#out + 1] = string.format("\\u%04x", CP1252[c - 0x7F] or c)
            i = i + 1
        elseif len == 1 then
            local ch = s:sub(i, i)
            if ESCAPES[ch] then
                out[#out + 1] = ESCAPES[ch]
            elseif c < 0x20 or c == 0x7F then
                out[#out + 1] = string.format("\\u%04x", c)
            else
                out[#out + 1] = ch
            end
            i = i + 1
        else
            out[#out + 1] = s:sub(i, i + len - 1)
            i = i + len
        end
    end
    out[#out + 1] = '"'
    return table.concat(out)
end

local encode

local function encode_table(t)
    if t == M.null then return "null" end
    local n = #t
    if n > 0 then
        local parts = {}
        for i = 1, n do parts[i] = encode(t[i]) end
        return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(t) do
        if type(k) ~= "string" then error("JSON object keys must be strings", 0) end
        keys[#keys + 1] = k
    end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = encode_string(k) .. ":" .. encode(t[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
end

encode = function(v)
    local kind = type(v)
    if v == nil then return "null"
    elseif kind == "boolean" then return v and "true" or "false"
    elseif kind == "string" then return encode_string(v)
    elseif kind == "number" then
        if v ~= v or v == math.huge or v == -math.huge then
            error("JSON has no NaN or infinity", 0)
        end
        if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
        return string.format("%.17g", v)
    elseif kind == "table" then return encode_table(v)
    end
    error("cannot encode a " .. kind .. " as JSON", 0)
end

-- Objects get their keys sorted; use M.null for JSON null (a nil field would vanish).
M.json_encode = encode

-------------------------------------------------------------------------------- stores

function M.memory_store()
    local data = {}
    return {
        get = function(k) return data[k] end,
        set = function(k, v) data[k] = v end,
        dump = function() return data end,
    }
end

-- One small text file per key in `dir` (hex-encoded key as the name, so any caller number is a
-- safe file name). Written to a temporary file and renamed, so a reader never sees half a value.
-- Two calls at the same moment may lose one increment: acceptable for a throttle.
function M.file_store(dir)
    if type(io) ~= "table" or type(io.open) ~= "function" or type(dir) ~= "string" or dir == "" then
        return nil
    end
    local sep = dir:find("\\", 1, true) and "\\" or "/"
    local function path(k)
        local hex = k:gsub(".", function(c) return string.format("%02x", c:byte()) end)
        return dir .. sep .. "rundruf_" .. hex .. ".txt"
    end
    local store = {}
    function store.get(k)
        local f = io.open(path(k), "rb")
        if not f then return nil end
        local v = f:read("*a")
        f:close()
        return v
    end
    function store.set(k, v)
        local target = path(k)
        local tmp = target .. ".tmp"
        local f = assert(io.open(tmp, "wb"))
        f:write(v)
        f:close()
        if not os.rename(tmp, target) then
            -- Windows will not rename onto an existing file.
            os.remove(target)
            assert(os.rename(tmp, target))
        end
    end
    return store
end

-------------------------------------------------------------------------------- SwyxWare adapter

-- Maps `pbx` to SwyxWare's Lua server script API. Documented names (see README.md):
-- PBXScript.OutputTraceEx, PBXScript.TraceInfo, require "PBXWebRequest" + webreq.new();
-- from the VBScript API: PBXCall.PlayMessage, PBXCall.Disconnect,
-- PBXCall.IsOriginatorDisconnected, PBXScript.Sleep. Everything marked ASSUMED was not found
-- in any public documentation and must be checked on a real SwyxWare before the first use.
function M.swyx_pbx(cfg)
    local function fn(obj, name)
        local o = _G[obj]
        local f = o and o[name]
        if type(f) ~= "function" then
            error("SwyxWare function " .. obj .. "." .. name .. " is missing", 0)
        end
        return f
    end
    local function has(obj, name)
        return _G[obj] ~= nil and type(_G[obj][name]) == "function"
    end
    local function prompt_path(file)
        local dir = cfg.prompt_dir or ""
        if dir == "" then return file end -- found in the SwyxWare database (user / global files)
        local sep = dir:find("\\", 1, true) and "\\" or "/"
        return dir .. sep .. file
    end
    local function gone()
        return has("PBXCall", "IsOriginatorDisconnected")
            and PBXCall.IsOriginatorDisconnected() == true
    end
    local pbx = {}
    -- ASSUMED: no explicit answer; SwyxWare picks the call up when the script plays the first
    -- message (the CDR's ScriptConnectTime is "the time the call was picked up via script").
    function pbx.answer() end
    function pbx.play(file) fn("PBXCall", "PlayMessage")(prompt_path(file)) end -- Lua form ASSUMED
    -- The caller's recording, by its full path (VBScript's PlayMessage plays a local file the
    -- SwyxServer account can read; the Lua form is ASSUMED as above).
    function pbx.playback(path) fn("PBXCall", "PlayMessage")(path) end
    function pbx.hangup() if has("PBXCall", "Disconnect") then PBXCall.Disconnect() end end
    -- Who is calling only feeds the throttle and the job's caller fields: if one of these
    -- (ASSUMED) names is wrong, trace it and go on rather than make alarms impossible.
    local function soft(name)
        return function()
            local ok, v = pcall(function() return fn("PBXCall", name)() end)
            if ok then return v end
            pbx.trace("Rundruf: " .. tostring(v))
            return nil
        end
    end
    pbx.caller_number = soft("CallingPartyNumber") -- ASSUMED
    pbx.caller_name = soft("CallingPartyName") -- ASSUMED
    pbx.call_id = soft("CallId") -- ASSUMED
    function pbx.now() return os.time() end
    function pbx.sleep(seconds) -- milliseconds ASSUMED
        fn("PBXScript", "Sleep")(math.floor(seconds * 1000))
    end
    function pbx.trace(msg)
        if has("PBXScript", "OutputTraceEx") then
            PBXScript.OutputTraceEx(PBXScript.TraceInfo or 4, msg)
        end
    end
    -- Polls the DTMF buffer (PBXCall.GetDTMFChar ASSUMED, "" when empty);
    -- nil when the caller hung up.
    function pbx.read_digits(max, timeout, terminator)
        local digits, idle = "", 0
        while true do
            if gone() then return nil end
            local c = fn("PBXCall", "GetDTMFChar")()
            if c ~= nil and c ~= "" then
                if terminator and c == terminator then return digits end
                digits, idle = digits .. c, 0
                if #digits >= max then return digits end
            elseif idle >= timeout * 1000 then
                return digits
            else
                fn("PBXScript", "Sleep")(100)
                idle = idle + 100
            end
        end
    end
    -- ASSUMED: PBXCall.RecordMessage(path, seconds[, silence_seconds]) plays SwyxWare's beep,
    -- ends on # (the terminator is not passed), the limit, or that many seconds of silence, and
    -- returns a PBXResult. The GSE block "Record Message" documents all of these (beep, time-out,
    -- cancel key, "after a defined pause"); their Lua spelling is not documented. With
    -- record_silence_seconds = 0 only path and limit are passed.
    function pbx.record(path, max_seconds, _terminator, silence_seconds)
        local record = fn("PBXCall", "RecordMessage")
        local result
        if silence_seconds and silence_seconds > 0 then
            result = record(path, max_seconds, silence_seconds)
        else
            result = record(path, max_seconds)
        end
        local hung_up = PBXCallTermOriginatorDisconnected
        if gone() or (hung_up ~= nil and result == hung_up) then return nil end
        return result == (PBXSuccess or 0)
    end
    function pbx.read_file(path)
        if type(io) ~= "table" or type(io.open) ~= "function" then return nil end
        local f = io.open(path, "rb")
        if not f then return nil end
        local text = f:read("*a")
        f:close()
        return text
    end
    -- PBXConfig.GetUserByAddress(<group name>) lists the group's members with UserID and State
    -- (documented for VBScript and Lua, see docs/swyx.md); its Lua form - a global PBXConfig,
    -- members as a table whose items have fields or methods UserID and State - is ASSUMED.
    function pbx.member_states(group)
        local config = _G["PBXConfig"]
        if config == nil or type(config.GetUserByAddress) ~= "function" then return nil end
        local users = config.GetUserByAddress(group)
        if type(users) ~= "table" then return nil end
        local states = {}
        for _, user in ipairs(users) do
            local function get(name)
                local v = user[name]
                if type(v) == "function" then v = v(user) end
                return v
            end
            local id, state = get("UserID"), tonumber(get("State"))
            if id ~= nil and state and state >= 0 and state <= 8 and state == math.floor(state) then
                states[tostring(id)] = state
            end
        end
        return states
    end
    -- require "PBXWebRequest" and webreq.new() are documented; the session methods are ASSUMED.
    function pbx.http_post(url, headers, body)
        local ok, webreq = pcall(require, "PBXWebRequest")
        if not ok or webreq == nil then error("PBXWebRequest is not available", 0) end
        local session = webreq.new()
        session:SetVerb("POST")
        session:SetUrl(url)
        for name, value in pairs(headers) do session:AddHeader(name .. ": " .. value) end
        session:SetBody(body)
        session:Execute()
        return session:GetResponseCode(), session:GetResponseBody()
    end
    return pbx
end

-- For SwyxWare: run one call with CONFIG; never let an error end it without a word.
function M.main()
    local pbx = M.swyx_pbx(CONFIG)
    local store = M.file_store(CONFIG.state_dir) or M.memory_store()
    local ok, result = pcall(M.run, pbx, store, CONFIG)
    if not ok then
        pcall(pbx.trace, "Rundruf: script error: " .. tostring(result))
        pcall(pbx.play, P.failed)
        pcall(pbx.hangup)
    end
    return result
end

if PBXCall ~= nil and PBXScript ~= nil then
    M.main()
end

return M
