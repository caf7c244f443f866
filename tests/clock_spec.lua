-- lunar.clock(): the monotonic wall clock that bench/ops.lua times with.
local lunar = require("lunar")

describe("lunar.clock", function()
    it("never goes back and resolves below a millisecond", function()
        local prev, smallest = lunar.clock(), math.huge
        for _ = 1, 1000 do
            local t = lunar.clock()
            assert.is_true(t >= prev)
            if t > prev then smallest = math.min(smallest, t - prev) end
            prev = t
        end
        assert.is_true(smallest < 1e-3, "smallest step " .. smallest)
    end)

    -- checked against date(1)'s clock; os.clock (CPU time) would fail: the process waits
    it("measures a 0.2 s sleep as date(1) does", function()
        local t0 = lunar.clock()
        local p = io.popen("date +%s%N; sleep 0.2; date +%s%N")
        local a, b = p:read("n", "n")
        p:close()
        local dt = lunar.clock() - t0
        local child = (b - a) * 1e-9
        assert.is_true(child >= 0.19, "date saw " .. child)
        assert.is_true(dt >= child and dt < child + 5, ("lunar %g s, date %g s"):format(dt, child))
    end)
end)
