-- castbus_edge.lua - the castbus side of a Traffic Server edge (tslua remap
-- script, see remap.config).
--
-- 1. X-Cache on every response: HIT (fresh from cache), STALE (revalidated
--    with the origin, or served stale while it is down), MISS.
-- 2. BAN, from purge-fanout (ip_allow.yaml lets only it through):
--      X-Ban-Regex: <PCRE on the remapped URL>   X-Ban-Type: STALE | MISS
--    becomes a rule of the regex_revalidate plugin: objects cached before
--    now that match are revalidated (STALE, a soft purge) or refetched
--    (MISS, a hard purge). The rule is written into the rules file, the
--    plugin is made to reload it, and the answer (200) waits until the
--    plugin lists the rule in its state file: a 200 means it is in force.
--    503 when it is not in force in time (purge-fanout retries), 400 for a
--    malformed request (it does not).
--
-- Arguments: rules file, state file (regex_revalidate -c and -f), rule ttl in
-- seconds. A rule must outlive every object cached before it, so the ttl is
-- at least proxy.config.http.cache.guaranteed_max_lifetime.

local ffi = require('ffi')

ffi.cdef [[
int open(const char *path, int flags, int mode);
int close(int fd);
int flock(int fd, int op);
struct cb_timespec { long tv_sec; long tv_nsec; };
int nanosleep(const struct cb_timespec *req, struct cb_timespec *rem);
int utimensat(int dirfd, const char *path, const struct cb_timespec times[2], int flags);
]]

local O_RDWR, O_CREAT, LOCK_EX, LOCK_UN, AT_FDCWD = 2, 64, 2, 8, -100
local RULES, STATE, TTL
local LOADED_WAIT_MS, REGEX_MAX = 3000, 8192

function __init__(argtb)
    RULES, STATE, TTL = argtb[1], argtb[2], tonumber(argtb[3] or '86400')
    if not RULES or not STATE or not TTL or TTL < 1 then
        ts.error('castbus_edge.lua: arguments are <rules file> <state file> <ttl seconds>')
        return -1
    end
    return 0
end

local CACHE_NAMES = {
    [TS_LUA_CACHE_LOOKUP_HIT_FRESH] = 'HIT',
    [TS_LUA_CACHE_LOOKUP_HIT_STALE] = 'STALE',
    [TS_LUA_CACHE_LOOKUP_MISS] = 'MISS',
    [TS_LUA_CACHE_LOOKUP_SKIPPED] = 'MISS',
}

local function x_cache()
    local ok, status = pcall(ts.http.get_cache_lookup_status)
    ts.client_response.header['X-Cache'] = ok and CACHE_NAMES[status] or 'MISS'
    return 0
end

local function reply(status, reason, body)
    ts.say(string.format('HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n' ..
                         'Content-Length: %d\r\nCache-Control: no-store\r\n\r\n%s',
                         status, reason, #body, body))
end

local function sleep_ms(ms)
    ffi.C.nanosleep(ffi.new('struct cb_timespec', 0, ms * 1000000), nil)
end

local function read_file(path)
    local f = io.open(path, 'r')
    if not f then return nil end
    local s = f:read('*a')
    f:close()
    return s
end

-- The rules file without expired rules and without `regex`, then `regex`
-- with an expiry after any it had (a new expiry is what makes the plugin
-- take the rule as new: its epoch, "objects cached before", becomes now).
local function rewrite_rules(regex, kind, now)
    local keep, expiry = {}, now + TTL
    for line in (read_file(RULES) or ''):gmatch('[^\n]+') do
        local re, exp = line:match('^(%S+)%s+(%d+)')
        exp = tonumber(exp)
        if re == regex then
            expiry = math.max(expiry, exp + 1)
        elseif re and exp > now then
            keep[#keep + 1] = line
        end
    end
    keep[#keep + 1] = string.format('%s %d %s', regex, expiry, kind)
    local tmp = RULES .. '.tmp'
    local f, err = io.open(tmp, 'w')
    if not f then return nil, err end
    f:write(table.concat(keep, '\n'), '\n')
    f:close()
    local ok, rerr = os.rename(tmp, RULES)
    if not ok then return nil, rerr end
    return expiry
end

-- regex_revalidate reloads only a file whose mtime (seconds) is newer than
-- the last it loaded: two bans in one second need the mtime pushed on. The
-- lock file holds the last mtime given.
local function bump_mtime(now)
    local last = tonumber(read_file(RULES .. '.lock') or '') or 0
    local m = math.max(now, last + 1)
    local t = ffi.new('struct cb_timespec[2]', { { m, 0 }, { m, 0 } })
    if ffi.C.utimensat(AT_FDCWD, RULES, t, 0) ~= 0 then return false end
    local f = io.open(RULES .. '.lock', 'w')
    if not f then return false end
    f:write(tostring(m))
    f:close()
    return true
end

local function in_force(regex, expiry)
    local want = string.format('%s %%d+ %d ', (regex:gsub('%p', '%%%0')), expiry)
    for line in (read_file(STATE) or ''):gmatch('[^\n]+') do
        if line:find('^' .. want) then return true end
    end
    return false
end

local function ban(regex, kind)
    if not regex or #regex == 0 or #regex > REGEX_MAX or regex:find('%s') then
        return reply(400, 'Bad Request', 'X-Ban-Regex: 1 to 8192 bytes, no blanks\n')
    end
    if kind ~= 'STALE' and kind ~= 'MISS' then
        return reply(400, 'Bad Request', 'X-Ban-Type: STALE or MISS\n')
    end
    local lockfd = ffi.C.open(RULES .. '.lock', O_RDWR + O_CREAT, 420)
    if lockfd < 0 then
        return reply(503, 'Service Unavailable', 'cannot open the lock file\n')
    end
    ffi.C.flock(lockfd, LOCK_EX)
    local now = os.time()
    local expiry, err = rewrite_rules(regex, kind, now)
    local bumped = expiry and bump_mtime(now)
    ffi.C.flock(lockfd, LOCK_UN)
    ffi.C.close(lockfd)
    if not expiry or not bumped then
        return reply(503, 'Service Unavailable', 'cannot write the rules: ' .. tostring(err) .. '\n')
    end
    os.execute('traffic_ctl config reload >/dev/null 2>&1')
    for _ = 1, LOADED_WAIT_MS / 5 do
        if in_force(regex, expiry) then
            return reply(200, 'OK', string.format('banned %s until %d\n', kind, expiry))
        end
        sleep_ms(5)
    end
    return reply(503, 'Service Unavailable', 'regex_revalidate did not load the rule in time\n')
end

function do_remap()
    if ts.client_request.get_method() == 'BAN' then
        ts.http.intercept(ban, ts.client_request.header['X-Ban-Regex'],
                          ts.client_request.header['X-Ban-Type'] or 'STALE')
        return 0
    end
    ts.hook(TS_LUA_HOOK_SEND_RESPONSE_HDR, x_cache)
    return 0
end
