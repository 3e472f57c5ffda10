-- wrk -s loadtest/wrk/get.lua http://127.0.0.1:8501/v2/health/live
-- A plain GET (wrk's default request) with the report bench.py reads.
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "report.lua")
