-- bench/http_transfer.lua (wrk): POST /v1/transfers of 1.00 from a random
-- customer's account to another random customer's, with that customer's own
-- access token and a unique Idempotency-Key.  PGB_HTTP_TOKENS names the file
-- bench/http_setup.sql printed ("token account" per line).
local customers = {}
for line in io.lines(os.getenv("PGB_HTTP_TOKENS")) do
	local token, account = line:match("^(%S+) (%d+)$")
	if token then customers[#customers + 1] = {token = token, account = account} end
end

local thread_id = 0
local counter = 0
local nonce = tostring(os.time()) .. "-" .. tostring(math.random(1000000))

function setup(thread)
	thread_id = thread_id + 1
	thread:set("tid", thread_id)
end

function request()
	counter = counter + 1
	local i = math.random(#customers)
	local j = math.random(#customers - 1)
	if j >= i then j = j + 1 end
	local from, to = customers[i], customers[j]
	local body = '{"from_account":' .. from.account .. ',"to_account":' .. to.account .. ',"amount":"1.00"}'
	return wrk.format("POST", "/v1/transfers", {
		["Authorization"] = "Bearer " .. from.token,
		["Content-Type"] = "application/json",
		["Idempotency-Key"] = "wrk-" .. nonce .. "-" .. tostring(tid) .. "-" .. counter,
	}, body)
end
