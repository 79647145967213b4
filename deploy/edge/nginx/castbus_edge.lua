-- castbus_edge.lua - the castbus side of an nginx edge (see nginx.conf).
--
-- nginx cannot mark cached objects stale or drop them by pattern, so bans
-- move objects to a new cache key instead. Every ban is a rule
--   <id> <expires> <MISS|STALE> <PCRE on scheme://host/path?query>
-- and a request's key starts with the id of the newest rule its URL matches
-- ($castbus_gen, 0 for none): what was cached before the ban is under the
-- old key, so the next request is a miss. A STALE (soft) ban keeps the old
-- key as a fallback: while the origin is unreachable, the @stale location
-- serves what is cached under it.
--
-- From purge-fanout (nginx.conf lets only its addresses through):
--   PURGE <path>   the URL's cache files under every key it has had (the
--                  current one and those before each ban it matches) are
--                  deleted: 200, or 404 when none was cached
--   BAN + X-Ban-Regex: <PCRE, no blanks>   X-Ban-Type: STALE (default) | MISS
--                  200 once the rule is in force in every worker
-- 400 for a malformed request (purge-fanout does not retry it), 503 when
-- the rule cannot be kept (it does).
--
-- Rules outlive every object cached before them (the ttl is longer than the
-- cache's inactive time) and are kept in a file, so a restart keeps them.
-- The file's first line, `next <id>`, is the last id given out: ids are
-- never reused, even after every rule has expired (cached files under an
-- expired rule's key may outlive it by the inactive time).

local M = {}

local dict = ngx.shared.castbus_bans
local REGEX_MAX, LOCK_WAIT_S = 8192, 3
local FILE, TTL, CACHE, LEVELS

-- this worker's copy of the rules, newest first, and the version it is of
local rules, version = {}, -1

local function parse(text, now)
    local out = {}
    for line in (text or ''):gmatch('[^\n]+') do
        local id, exp, kind, re = line:match('^(%d+) (%d+) (%u+) (%S+)$')
        id, exp = tonumber(id), tonumber(exp)
        if id and exp > now then
            out[#out + 1] = { id = id, exp = exp, soft = kind == 'STALE', re = re, line = line }
        end
    end
    table.sort(out, function(a, b) return a.id > b.id end)
    return out
end

-- parse()'s rules as text again, oldest first
local function text_of(kept)
    local lines = {}
    for i = #kept, 1, -1 do
        lines[#lines + 1] = kept[i].line
    end
    return table.concat(lines, '\n')
end

-- Called from init_by_lua: the rules kept in the file `o.bans`, `o.ttl`
-- seconds each; the cache's `o.cache` path and `o.levels` as in
-- proxy_cache_path.
function M.init(o)
    FILE, TTL, CACHE, LEVELS = o.bans, o.ttl, o.cache, {}
    for n in o.levels:gmatch('%d') do
        LEVELS[#LEVELS + 1] = tonumber(n)
    end
    local f = io.open(FILE, 'r')
    local text = f and f:read('*a') or ''
    if f then f:close() end
    local kept = parse(text, ngx.time())
    local next_id = math.max(kept[1] and kept[1].id or 0, tonumber(text:match('^next (%d+)\n')) or 0)
    -- a reload (HUP) finds the dict as it was: keep what is newer
    if (dict:get('next') or 0) < next_id then
        dict:set('rules', text_of(kept))
        dict:set('next', next_id)
    end
    dict:incr('version', 1, 0)
end

local function current()
    local v = dict:get('version') or 0
    if v ~= version then
        rules, version = parse(dict:get('rules'), ngx.time()), v
    end
    return rules
end

local function url()
    return ngx.var.scheme .. '://' .. (ngx.var.host or '') .. ngx.var.request_uri
end

-- The rules the URL matches, newest first; at most `max` of them.
local function matching(max)
    local u, now, out = url(), ngx.time(), {}
    for _, r in ipairs(current()) do
        if r.exp > now and ngx.re.find(u, r.re, 'jo') then
            out[#out + 1] = r
            if #out == max then break end
        end
    end
    return out
end

-- rewrite phase: $castbus_gen for this request. In @stale (fallback) the
-- key before the newest matching rule when that rule is soft; otherwise the
-- fallback has nothing.
function M.route(fallback)
    local m = matching(fallback and 2 or 1)
    if not fallback then
        ngx.var.castbus_gen = m[1] and m[1].id or 0
        return
    end
    if not m[1] or not m[1].soft then
        return ngx.exit(ngx.HTTP_BAD_GATEWAY)
    end
    ngx.var.castbus_gen = m[2] and m[2].id or 0
end

local function reply(status, body)
    ngx.status = status
    ngx.header['Content-Type'] = 'text/plain'
    ngx.header['Cache-Control'] = 'no-store'
    ngx.print(body)
    return ngx.exit(status)
end

local function lock()
    local deadline = ngx.now() + LOCK_WAIT_S
    while not dict:add('lock', true, LOCK_WAIT_S) do
        if ngx.now() > deadline then return false end
        ngx.sleep(0.002)
    end
    return true
end

-- The rules with `re` added as rule `id`, written to the file (atomically)
-- and then to the dict; nil, why when the file cannot be written.
local function keep(id, re, kind, now)
    local text = text_of(parse(dict:get('rules'), now))
    text = (#text > 0 and text .. '\n' or '') .. string.format('%d %d %s %s', id, now + TTL, kind, re)
    local tmp = FILE .. '.tmp'
    local f, err = io.open(tmp, 'w')
    if not f then return nil, err end
    local ok, werr = f:write(string.format('next %d\n', id), text, '\n')
    f:close()
    if not ok then return nil, werr end
    local renamed, rerr = os.rename(tmp, FILE)
    if not renamed then return nil, rerr end
    dict:set('rules', text)
    dict:set('next', id)
    dict:incr('version', 1, 0)
    return true
end

local function ban()
    local re = ngx.var.http_x_ban_regex
    local kind = ngx.var.http_x_ban_type or 'STALE'
    if not re or #re == 0 or #re > REGEX_MAX or re:find('%s') then
        return reply(400, 'X-Ban-Regex: 1 to 8192 bytes, no blanks\n')
    end
    if kind ~= 'STALE' and kind ~= 'MISS' then
        return reply(400, 'X-Ban-Type: STALE or MISS\n')
    end
    local _, _, err = ngx.re.find('', re, 'jo')
    if err then
        return reply(400, 'X-Ban-Regex: ' .. err .. '\n')
    end
    if not lock() then
        return reply(503, 'another ban holds the lock\n')
    end
    local id = (dict:get('next') or 0) + 1
    local ok, why = keep(id, re, kind, ngx.time())
    dict:delete('lock')
    if not ok then
        return reply(503, 'cannot keep the rule: ' .. tostring(why) .. '\n')
    end
    return reply(200, string.format('banned %s as rule %d\n', kind, id))
end

-- The file nginx keeps `key` in (proxy_cache_path's path and levels).
local function cache_file(key)
    local md5 = ngx.md5(key)
    local parts, at = { CACHE }, #md5
    for _, n in ipairs(LEVELS) do
        parts[#parts + 1] = md5:sub(at - n + 1, at)
        at = at - n
    end
    parts[#parts + 1] = md5
    return table.concat(parts, '/')
end

-- Delete the URL's copy under every key it has had. nginx finds the file
-- gone on the next request, a miss, and caches the answer again.
local function purge()
    local keys, deleted = { 0 }, 0
    for _, r in ipairs(matching(nil)) do
        keys[#keys + 1] = r.id
    end
    for _, gen in ipairs(keys) do
        local ok, err = os.remove(cache_file(gen .. ' ' .. ngx.var.request_uri))
        if ok then
            deleted = deleted + 1
        elseif err and not err:find('No such file', 1, true) then
            return reply(503, 'cannot delete: ' .. err .. '\n')
        end
    end
    if deleted == 0 then
        return reply(404, 'not cached\n')
    end
    return reply(200, string.format('purged %d\n', deleted))
end

-- access phase (after nginx.conf's allow/deny): PURGE and BAN are answered
-- here, everything else goes on to the cache.
function M.purge()
    local method = ngx.req.get_method()
    if method == 'BAN' then
        return ban()
    elseif method == 'PURGE' then
        return purge()
    end
end

return M
