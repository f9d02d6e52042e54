-- bench/http_accounts.lua (wrk): GET /v1/accounts as a random customer, with
-- that customer's own access token (see bench/http_transfer.lua).
local tokens = {}
for line in io.lines(os.getenv("PGB_HTTP_TOKENS")) do
	local token = line:match("^(%S+) %d+$")
	if token then tokens[#tokens + 1] = token end
end

function request()
	return wrk.format("GET", "/v1/accounts", {
		["Authorization"] = "Bearer " .. tokens[math.random(#tokens)],
	})
end
