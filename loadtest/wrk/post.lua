-- wrk -s loadtest/wrk/post.lua URL -- BODY_FILE CONTENT_TYPE
-- POSTs the bytes of BODY_FILE (prepared in advance: JSON, or a whole multipart/form-data
-- body) with the given Content-Type, on every request of every connection.
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "report.lua")

function init(args)
   local path, content_type = args[1], args[2]
   if not path or not content_type then
      error("usage: wrk -s post.lua URL -- BODY_FILE CONTENT_TYPE")
   end
   local file = assert(io.open(path, "rb"))
   wrk.body = file:read("*a")
   file:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = content_type
end
