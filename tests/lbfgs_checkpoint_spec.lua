-- LBFGS's history in state_dict (issue #3): a run interrupted by a checkpoint (in memory or
-- a lunar.train safetensors file) and resumed in a fresh model and optimizer follows the
-- uninterrupted run bit for bit; a history that does not fit is refused without a change.
local lunar = require("lunar")
local nn = require("lunar.nn")
local H = require("tests.helper")
local optim = lunar.optim

local X = lunar.tensor({{0.5, -1.0, 2.0}, {1.5, 0.3, -0.7}, {-0.2, 0.8, 0.1}, {2.0, 1.0, 1.0},
  {-1.0, -0.5, 0.4}, {0.3, 0.3, -1.2}}, {dtype = "float64"})
local Y = lunar.tensor({{1.0}, {-0.5}, {0.2}, {2.0}, {-1.0}, {0.0}}, {dtype = "float64"})

local function make(dtype, opts, seed, hidden)
  lunar.manual_seed(seed)
  local model = nn.Sequential(nn.Linear(3, hidden or 5), nn.Tanh(), nn.Linear(hidden or 5, 1))
  model:to(dtype)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  local opt = optim.LBFGS(model:parameters(), o)
  local x, y = X:to(dtype), Y:to(dtype)
  local function closure()
    opt:zero_grad()
    local l = ((model(x) - y) ^ 2):mean()
    l:backward()
    return l
  end
  return model, opt, closure
end

local function run(opt, closure, steps, losses)
  for _ = 1, steps do losses[#losses + 1] = opt:step(closure):item() end
end

local function params_of(model)
  local out = {}
  for i, p in ipairs(model:parameters()) do out[i] = p:reshape(-1):totable() end
  return out
end

local N, M = 3, 3
-- history_size 2 wraps the history in the first steps; lr 0.3 without a line search keeps
-- the fixed-step run from stopping early
local VARIANTS = {
  fixed = {lr = 0.3, max_iter = 4, history_size = 2},
  strong_wolfe = {max_iter = 4, history_size = 2, line_search_fn = "strong_wolfe"},
}

describe("LBFGS state_dict", function()
  for _, dtype in ipairs({"float64", "float32"}) do
    for vname, opts in pairs(VARIANTS) do
      local label = dtype .. ", " .. vname
      local model0, opt0, closure0 = make(dtype, opts, 11)
      local want = {}
      run(opt0, closure0, N + M, want)
      local want_params = params_of(model0)

      it("resumes a run exactly from a state_dict in memory (" .. label .. ")", function()
        local model, opt, closure = make(dtype, opts, 11)
        local got = {}
        run(opt, closure, N, got)
        local msd, osd = model:state_dict(), opt:state_dict()
        local model2, opt2, closure2 = make(dtype, opts, 99)
        model2:load_state_dict(msd)
        opt2:load_state_dict(osd)
        run(opt2, closure2, M, got)
        assert.same(want, got)
        assert.same(want_params, params_of(model2))
        assert.equal(opt0.state[model0:parameters()[1]].func_evals,
          opt2.state[model2:parameters()[1]].func_evals)
      end)

      it("resumes a run exactly from a checkpoint file (" .. label .. ")", function()
        local path = os.tmpname()
        local model, opt, closure = make(dtype, opts, 11)
        local got = {}
        run(opt, closure, N, got)
        lunar.train.save_checkpoint(path, {model = model, optimizer = opt, epoch = N})
        local model2, opt2, closure2 = make(dtype, opts, 99)
        local epoch = lunar.train.load_checkpoint(path, {model = model2, optimizer = opt2})
        os.remove(path)
        assert.equal(N, epoch)
        local st = opt2.state[model2:parameters()[1]]
        assert.equal("integer", math.type(st.n_iter))
        assert.equal(2, #st.old_dirs)
        run(opt2, closure2, M, got)
        assert.same(want, got)
        assert.same(want_params, params_of(model2))
      end)
    end
  end

  it("lays the history out as PyTorch names it, with the counters", function()
    local model, opt, closure = make("float64", VARIANTS.fixed, 11)
    run(opt, closure, 1, {})
    local st = opt:state_dict().state[1]
    assert.equal(4, st.n_iter)
    assert.equal(4, st.func_evals)
    local n = 0
    for _, p in ipairs(model:parameters()) do n = n + p:numel() end
    assert.same({2, n}, st.old_dirs:size())
    assert.same({2, n}, st.old_stps:size())
    assert.same({2}, st.ro:size())
    assert.same({2}, st.al:size())
    assert.same({n}, st.d:size())
    assert.same({n}, st.prev_flat_grad:size())
    for _, k in ipairs({"t", "H_diag", "prev_loss"}) do assert.equal("number", type(st[k])) end
  end)

  it("round-trips a state with no history yet (a first step at a stationary point)", function()
    local x = lunar.zeros(3, {dtype = "float64"}):requires_grad_()
    local opt = optim.LBFGS({x})
    local function closure() opt:zero_grad(); local l = (x * x):sum(); l:backward(); return l end
    opt:step(closure)
    local sd = opt:state_dict()
    assert.same({func_evals = 1, n_iter = 0}, sd.state[1])
    local y = lunar.ones(3, {dtype = "float64"}):requires_grad_()
    local opt2 = optim.LBFGS({y})
    opt2:load_state_dict(optim.unflatten_state_dict(optim.flatten_state_dict(sd)))
    assert.same({func_evals = 1, n_iter = 0}, opt2.state[y])
  end)

  describe("refuses a history that does not fit", function()
    -- a model with the same number of parameter tensors but other sizes
    local function loaded_other()
      local model, opt, closure = make("float64", VARIANTS.fixed, 11, 4)
      run(opt, closure, 2, {})
      return opt:state_dict(), model
    end
    local function snapshot(opt)
      local sd = opt:state_dict()
      local flat = optim.flatten_state_dict(sd)
      local out = {}
      for k, t in pairs(flat) do out[k] = t:totable() end
      return out
    end

    it("from a model with another parameter count, naming the sizes", function()
      local other = loaded_other()
      other.param_groups[1].lr = 0.123
      local model, opt, closure = make("float64", VARIANTS.fixed, 11)
      run(opt, closure, 1, {})
      local before = snapshot(opt)
      local n = 0
      for _, p in ipairs(model:parameters()) do n = n + p:numel() end
      H.raises(function() opt:load_state_dict(other) end, "LBFGS:load_state_dict",
        "has " .. (4 * 3 + 4 + 4 + 1) .. " elements", "parameters have " .. n)
      assert.same(before, snapshot(opt))
      assert.equal(0.3, opt.param_groups[1].lr)
    end)

    it("through a checkpoint file too", function()
      local path = os.tmpname()
      local _, small = loaded_other()
      local other_opt = optim.LBFGS(small:parameters(), VARIANTS.fixed)
      other_opt:load_state_dict(loaded_other())
      lunar.save(path, optim.flatten_state_dict(other_opt:state_dict()))
      local _, opt, closure = make("float64", VARIANTS.fixed, 11)
      run(opt, closure, 1, {})
      local before = snapshot(opt)
      H.raises(function() opt:load_state_dict(optim.unflatten_state_dict(lunar.load(path))) end,
        "LBFGS", "elements")
      os.remove(path)
      assert.same(before, snapshot(opt))
    end)

    it("with inconsistent history entries", function()
      local _, opt, closure = make("float64", VARIANTS.fixed, 11)
      run(opt, closure, 1, {})
      local before = snapshot(opt)
      local sd = opt:state_dict()
      local bad = {}
      for k, v in pairs(sd.state[1]) do bad[k] = v end
      bad.old_stps = bad.old_stps:narrow(1, 1, 1)
      H.raises(function() opt:load_state_dict({state = {bad}, param_groups = sd.param_groups}) end,
        "LBFGS", "old_dirs [2, 26]", "old_stps [1, 26]")
      bad.old_stps, bad.ro = sd.state[1].old_stps, lunar.tensor({1}, {dtype = "float64"})
      H.raises(function() opt:load_state_dict({state = {bad}, param_groups = sd.param_groups}) end,
        "LBFGS", "ro has 1 entries, old_dirs 2")
      bad.ro, bad.n_iter = sd.state[1].ro, 2.5
      H.raises(function() opt:load_state_dict({state = {bad}, param_groups = sd.param_groups}) end,
        "LBFGS", "n_iter must be a count")
      local small = {}
      for k, v in pairs(sd.param_groups[1]) do small[k] = v end
      small.history_size = 1
      bad.n_iter = sd.state[1].n_iter
      H.raises(function() opt:load_state_dict({state = {bad}, param_groups = {small}}) end,
        "LBFGS", "2 entries, more than history_size 1")
      assert.same(before, snapshot(opt))
    end)
  end)
end)
