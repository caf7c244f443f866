-- The Lua library with OpenCL as the default device (lunar.set_default_device) or with the
-- model on OpenCL, the data sets on the CPU: loaders, samplers and splits keep their indices
-- on the CPU, layers put their parameters on the default device, metrics, callbacks and
-- checkpoints take OpenCL tensors, and every result equals the CPU's.
local lunar = require("lunar")
local H = require("tests.helper")
local nn, train, data, metrics = lunar.nn, lunar.train, lunar.data, lunar.metrics

if #lunar.devices() == 0 then
  describe("the library on OpenCL #opencl", function()
    pending("no OpenCL device (install pocl-opencl-icd): skipped")
  end)
  return
end

local DEV = "opencl:1"
local CPU = {device = "cpu"}

local function tmp(ext)
  local p = os.tmpname()
  os.remove(p)
  return p .. ext
end

-- three Gaussian blobs in 2-d on the CPU: X [n, 2] float32, y [n] int64 in 1..3
local function blobs(n, seed)
  lunar.manual_seed(seed)
  local y = lunar.randint(1, 4, {n}, CPU)
  local centres = lunar.tensor({{0, 0}, {3, 0}, {0, 3}}, CPU)
  local X = centres:index_select(1, y) + lunar.randn(n, 2, CPU) * 0.8
  return X, y
end

local function mlp() return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3)) end

-- every tensor of a batch (a tensor or a list of tensors) as tables, checking its device
local function batches_of(loader, device)
  local out = {}
  for _, b in loader:enumerate() do
    local list = lunar.is_tensor(b) and {b} or b
    local row = {}
    for k, t in ipairs(list) do
      assert.equals(device, t:device())
      row[k] = t:totable()
    end
    out[#out + 1] = row
  end
  return out
end

describe("the library on OpenCL #opencl", function()
  local saved
  before_each(function() saved = lunar.get_default_device() end)
  after_each(function() lunar.set_default_device(saved) end)

  -- fn() run with the default device set to device
  local function under(device, fn)
    lunar.set_default_device(device)
    return fn()
  end

  describe("data", function()
    -- loaders over CPU data built by make(); the batches under both default devices
    local function same_batches(make)
      local want = under("cpu", function() return batches_of(make(), "cpu") end)
      local got = under(DEV, function() return batches_of(make(), "cpu") end)
      assert.are.same(want, got)
      return got
    end

    it("DataLoader: shuffled batches of CPU data stay on the CPU and match", function()
      local X, y = blobs(37, 1)
      local b = same_batches(function()
        return data.DataLoader(data.TensorDataset(X, y), {batch_size = 8, shuffle = true,
          seed = 5})
      end)
      assert.equals(5, #b)
      -- an epoch is a permutation: every label once
      local labels = {}
      for _, batch in ipairs(b) do
        for _, v in ipairs(batch[2]) do labels[#labels + 1] = v end
      end
      table.sort(labels)
      local want = y:totable()
      table.sort(want)
      assert.are.same(want, labels)
    end)

    it("samplers draw the CPU's indices, on the CPU", function()
      local X, y = blobs(30, 2)
      local ds = data.TensorDataset(X, y)
      local w = {}
      for i = 1, 30 do w[i] = i % 3 == 0 and 4 or 1 end
      local makers = {
        function() return data.RandomSampler(30, {seed = 3, replacement = true}) end,
        function() return data.RandomSampler(30, {seed = 3, num_samples = 12}) end,
        function() return data.SubsetRandomSampler({2, 4, 6, 8, 10, 12}, {seed = 4}) end,
        function() return data.SequentialSampler(30) end,
        -- weights given as an OpenCL tensor, drawn with and without replacement
        function()
          return data.WeightedRandomSampler(lunar.tensor(w, {device = DEV}), 40, {seed = 6})
        end,
        function()
          return data.WeightedRandomSampler(lunar.tensor(w, {device = DEV}), 10, false,
            {seed = 6})
        end,
      }
      for _, make in ipairs(makers) do
        same_batches(function()
          return data.DataLoader(ds, {batch_size = 7, sampler = make()})
        end)
      end
      -- the weighted draws follow the weights: samples of weight 4 are 2/3 of the mass
      local heavy, total = 0, 0
      under(DEV, function()
        local s = data.WeightedRandomSampler(w, 3000, {seed = 7})
        for _, i in ipairs(s:sample():totable()) do
          total = total + 1
          if i % 3 == 0 then heavy = heavy + 1 end
        end
      end)
      assert.is_true(math.abs(heavy / total - 2 / 3) < 0.03, tostring(heavy / total))
    end)

    it("a custom collate and the default collate of numbers give CPU batches", function()
      local X, y = blobs(20, 3)
      local function collate(samples)
        local xs, ys, n = {}, {}, {}
        for i, s in ipairs(samples) do xs[i], ys[i], n[i] = s[1] * 2, s[2], i end
        return {lunar.stack(xs), lunar.tensor(ys, {dtype = "int64", device = "cpu"}),
          data.default_collate(n)}
      end
      local b = same_batches(function()
        return data.DataLoader(data.TensorDataset(X, y), {batch_size = 6, shuffle = true,
          seed = 8, collate = collate})
      end)
      assert.are.same({1, 2, 3, 4, 5, 6}, b[1][3])
      -- samples of Lua numbers and booleans, through the default collate
      local list = {}
      for i = 1, 9 do list[i] = {i * 0.5, i % 2 == 0} end
      b = same_batches(function() return data.DataLoader(list, {batch_size = 4}) end)
      assert.are.same({0.5, 1, 1.5, 2}, b[1][1])
      assert.are.same({false, true, false, true}, b[1][2])
    end)

    it("a data set on OpenCL is batched on OpenCL with the CPU sampler's order", function()
      local X, y = blobs(25, 4)
      local function make(Xs, ys)
        return data.DataLoader(data.TensorDataset(Xs, ys), {batch_size = 10, shuffle = true,
          seed = 9})
      end
      local want = batches_of(make(X, y), "cpu")
      local got = under(DEV, function() return batches_of(make(X:to(DEV), y:to(DEV)), DEV) end)
      assert.are.same(want, got)
    end)

    it("splits give the CPU's index tensors, on the CPU", function()
      local _, y = blobs(30, 5)
      local function splits()
        local tr, te = data.holdout(30, {test_size = 0.2, seed = 1, stratify = y})
        local out = {tr, te, data.bootstrap(30, {seed = 2}).train}
        for _, f in ipairs(data.kfold(30, 3, {shuffle = true, seed = 3})) do
          out[#out + 1] = f.test
        end
        for _, f in ipairs(data.stratified_kfold(y, 3, {seed = 4})) do
          out[#out + 1] = f.train
        end
        for k, t in ipairs(out) do
          assert.equals("cpu", t:device())
          out[k] = t:totable()
        end
        return out
      end
      assert.are.same(under("cpu", splits), under(DEV, splits))
    end)
  end)

  describe("layers", function()
    it("take their parameters to the default device, with the CPU's values", function()
      local function layers()
        lunar.manual_seed(21)
        return {nn.Linear(5, 3), nn.Conv2d(2, 4, 3), nn.Embedding(10, 4), nn.PReLU(),
          nn.BatchNorm1d(4)}
      end
      local cpu = under("cpu", layers)
      local dev = under(DEV, layers)
      for i, m in ipairs(dev) do
        local want = cpu[i]:state_dict()
        local n = 0
        for name, t in pairs(m:state_dict()) do
          assert.equals(DEV, t:device())
          H.close(t, want[name], 0, 0)
          n = n + 1
        end
        assert.is_true(n > 0)
        assert.equals(DEV, m:device())
      end
    end)

    it("nn.init fills OpenCL parameters with the CPU's values", function()
      local init = nn.init
      local fills = {
        function(t) return init.uniform_(t, -0.5, 2) end,
        function(t) return init.normal_(t, 1, 3) end,
        function(t) return init.constant_(t, 0.25) end,
        function(t) return init.xavier_uniform_(t) end,
        function(t) return init.xavier_normal_(t, {gain = 2}) end,
        function(t) return init.kaiming_uniform_(t, {nonlinearity = "relu"}) end,
        function(t) return init.kaiming_normal_(t, {mode = "fan_out"}) end,
        function(t) return init.lecun_uniform_(t) end,
        function(t) return init.lecun_normal_(t) end,
        function(t) return init.orthogonal_(t, 1.5) end,
      }
      for k, fill in ipairs(fills) do
        for _, shape in ipairs({{6, 4}, {3, 5, 2}}) do
          lunar.manual_seed(30 + k)
          local want = fill(lunar.empty(shape, CPU))
          -- drawn under either default device: the draws follow the tensor's device
          local got = under(k % 2 == 0 and DEV or "cpu", function()
            lunar.manual_seed(30 + k)
            return fill(nn.Parameter(lunar.empty(shape, {device = DEV})))
          end)
          assert.equals(DEV, got:device())
          H.close(got, want, 1e-6, 1e-6)
        end
      end
    end)

    it("dropout layers on OpenCL draw the CPU's masks", function()
      for _, make in ipairs({function() return nn.Dropout(0.3) end,
        function() return nn.Dropout2d(0.5) end, function() return nn.AlphaDropout(0.2) end}) do
        lunar.manual_seed(40)
        local x = lunar.randn(4, 6, 3, 3, CPU)
        lunar.manual_seed(41)
        local want = make()(x)
        local got = under(DEV, function()
          lunar.manual_seed(41)
          return make()(x:to(DEV))
        end)
        assert.equals(DEV, got:device())
        H.close(got, want, 1e-6, 1e-6)
      end
    end)

    it("summary probes a model on OpenCL on its device", function()
      local model = mlp():to(DEV)
      local res = model:summary({1, 2}, {print = false})
      assert.equals(2 * 16 + 16 + 16 * 3 + 3, res.total)
      assert.equals("[1, 3]", res.rows[#res.rows].output_shape)
    end)
  end)

  describe("autograd", function()
    it("gradcheck checks a function of OpenCL tensors under either default device", function()
      for _, default in ipairs({"cpu", DEV}) do
        under(default, function()
          lunar.manual_seed(90)
          local x = lunar.randn(3, 4, {dtype = "float64", device = DEV, requires_grad = true})
          local w = lunar.randn(4, 2, {dtype = "float64", device = DEV, requires_grad = true})
          assert.is_true(lunar.autograd.gradcheck(function(a, b)
            return (a:matmul(b)):tanh()
          end, {x, w}))
          -- a wrong gradient is caught on the device as well
          local ok = lunar.autograd.gradcheck(function(a)
            return lunar.autograd.no_grad(function() return a * 2 end) + a
          end, {x})
          assert.is_false(ok)
        end)
      end
    end)
  end)

  describe("metrics", function()
    it("take OpenCL tensors and give the CPU's results", function()
      lunar.manual_seed(50)
      local scores = lunar.randn(40, 4, CPU)
      local y = lunar.randint(1, 5, {40}, CPU)
      local p01 = lunar.rand(40, {dtype = "float64", device = "cpu"})
      local y01 = lunar.randint(0, 2, {40}, CPU)
      local yr = lunar.randn(40, CPU)
      local yp = yr + lunar.randn(40, CPU) * 0.3
      local function all(s, t, p, t01, r, rp)
        local cm = metrics.confusion_matrix(s, t, {num_classes = 4})
        local fpr, tpr, thr = metrics.roc_curve(t01, p)
        local prec, rec = metrics.precision_recall_curve(t01, p)
        for _, v in ipairs({cm, fpr, tpr, thr, prec, rec}) do assert.equals("cpu", v:device()) end
        return {metrics.accuracy(s, t), metrics.top_k_accuracy(s, t, 2),
          metrics.f1_score(s, t, {average = "macro"}), metrics.precision(s, t,
          {average = "weighted"}), metrics.recall(p, t01), cm:totable(), fpr:totable(),
          tpr:totable(), thr:totable(), prec:totable(), rec:totable(),
          metrics.roc_auc(t01, p), metrics.average_precision(t01, p), metrics.log_loss(t01, p),
          metrics.mse(r, rp), metrics.rmse(r, rp), metrics.mae(r, rp), metrics.r2_score(r, rp),
          metrics.binarize(p, 0.5):totable()}
      end
      local want = all(scores, y, p01, y01, yr, yp)
      local got = under(DEV, function()
        return all(scores:to(DEV), y:to(DEV), p01:to(DEV), y01:to(DEV), yr:to(DEV), yp:to(DEV))
      end)
      assert.are.same(want, got)
    end)
  end)

  describe("training", function()
    -- fit + evaluate + predict of an MLP made under the given default device, data on the CPU
    local function run(device, fit_opts)
      return under(device, function()
        local X, y = blobs(120, 60)
        lunar.manual_seed(61)
        local model = mlp()
        assert.equals(device, model:device())
        local opt = lunar.optim.Adam(model:parameters(), {lr = 0.02})
        local o = {loss = "cross_entropy", optimizer = opt, epochs = 3, batch_size = 16,
          validation_split = 0.25, class_weight = {[1] = 2, [3] = 0.5}, metrics = {"accuracy"},
          seed = 3, verbose = 0}
        for k, v in pairs(fit_opts or {}) do o[k] = v end
        local h = train.fit(model, {X, y}, o)
        local ev = train.evaluate(model, {X, y}, {loss = o.loss, metrics = {"accuracy"},
          class_weight = o.class_weight})
        local pred = train.predict(model, X, {batch_size = 50})
        assert.equals(device, pred:device())
        return h, ev, pred:to("cpu"), model
      end)
    end

    local function same_history(hc, hd, rtol)
      for k, v in pairs(hc) do
        assert.equals(#v, #hd[k])
        for e = 1, #v do
          assert(math.abs(hd[k][e] - v[e]) <= rtol * math.abs(v[e]) + 1e-7,
            ("%s[%d]: OpenCL %.9g, CPU %.9g"):format(k, e, hd[k][e], v[e]))
        end
      end
    end

    it("fit/evaluate/predict with validation_split and class_weight match the CPU", function()
      local hc, ec, pc = run("cpu")
      local hd, ed, pd = run(DEV)
      same_history(hc, hd, 1e-4)
      assert.is_true(math.abs(ed.loss - ec.loss) <= 1e-4 * ec.loss)
      assert.equals(ec.accuracy, ed.accuracy)
      H.close(pd, pc, 1e-4, 1e-4)
      -- class weights of a non-cross-entropy loss weight each sample on the device
      local function mse(device)
        return under(device, function()
          lunar.manual_seed(62)
          local X = lunar.randn(40, 3, CPU)
          local y = X:sum(2):gt(0):long()
          local model = nn.Sequential(nn.Linear(3, 1), nn.Sigmoid())
          local opt = lunar.optim.SGD(model:parameters(), {lr = 0.1})
          return train.fit(model, {X, y}, {loss = "mse", optimizer = opt, epochs = 2,
            batch_size = 8, class_weight = {[0] = 3}, shuffle = false, verbose = 0})
        end)
      end
      same_history(mse("cpu"), mse(DEV), 1e-5)
    end)

    it("EarlyStopping restores the best weights of a model on OpenCL", function()
      local function es_run(device)
        local es = train.EarlyStopping({patience = 1, min_delta = 1e-3,
          restore_best_weights = true})
        local rop = train.ReduceLROnPlateau({patience = 0, factor = 0.5})
        local h, _, _, model = run(device, {epochs = 30, callbacks = {es, rop}})
        return h, model, es
      end
      local hc, mc = es_run("cpu")
      local hd, md, es = es_run(DEV)
      assert.is_true(es.stopped_epoch > 0 and #hd.loss < 30, "stopped early")
      same_history(hc, hd, 1e-3)
      assert.is_true(es.best_epoch < #hd.loss)
      -- the restored weights are the best epoch's: they give its validation loss again
      local X, y = blobs(120, 60)
      local val = train.evaluate(md, {X:narrow(1, 91, 30), y:narrow(1, 91, 30)},
        {loss = "cross_entropy", class_weight = {[1] = 2, [3] = 0.5}, batch_size = 16})
      assert.is_true(math.abs(val.loss - es.best) <= 1e-6 * es.best,
        ("%.9g vs %.9g"):format(val.loss, es.best))
      for name, t in pairs(md:state_dict()) do
        assert.equals(DEV, t:device())
        H.close(t, mc:state_dict()[name], 1e-3, 1e-4)
      end
    end)

    it("ModelCheckpoint and a resumed OpenCL run follow the uninterrupted one", function()
      local X, y = blobs(48, 70)
      local function setup(seed)
        lunar.manual_seed(seed)
        local model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.3),
          nn.Linear(16, 3)):to(DEV)
        local opt = lunar.optim.Adam(model:parameters(), {lr = 0.02})
        local sched = lunar.optim.lr_scheduler.StepLR(opt, 1, {gamma = 0.7})
        return model, opt, sched
      end
      local function fit(model, opt, sched, first, last, cbs)
        cbs = cbs or {}
        table.insert(cbs, train.LRScheduler(sched))
        return train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt,
          epochs = last, initial_epoch = first, batch_size = 8, seed = 2, callbacks = cbs,
          verbose = 0})
      end
      local base = tmp("")
      local model, opt, sched = setup(71)
      local ck = train.ModelCheckpoint(base .. "-{epoch}.safetensors", {weights_only = false})
      fit(model, opt, sched, 0, 2, {ck})
      assert.are.same({1, 2}, ck.saved)
      local path = base .. "-2.safetensors"
      train.save_checkpoint(base .. "-full.safetensors", {model = model, optimizer = opt,
        scheduler = sched, epoch = 2})
      local w2 = model["4"].weight:to("cpu")
      local L = fit(model, opt, sched, 2, 4).loss

      -- the file holds the device's tensors, read back on the CPU
      local tensors = lunar.load(path)
      H.close(tensors["model.4.weight"], w2, 0, 0)
      assert.equals("cpu", tensors["optimizer.state.1.exp_avg"]:device())

      local m2, o2, s2 = setup(99)
      lunar.manual_seed(12345) -- the checkpoint restores the generator
      local epoch = train.load_checkpoint(base .. "-full.safetensors",
        {model = m2, optimizer = o2, scheduler = s2})
      assert.equals(2, epoch)
      for _, p in ipairs(o2.param_groups[1].params) do
        assert.equals(DEV, p:device())
        for _, t in pairs(o2.state[p]) do
          if lunar.is_tensor(t) then assert.equals(DEV, t:device()) end
        end
      end
      local L2 = fit(m2, o2, s2, 2, 4).loss
      for i = 1, 2 do
        assert(math.abs(L2[i] - L[i]) <= 1e-6 * L[i], ("%g vs %g"):format(L2[i], L[i]))
      end
      H.close(m2["4"].weight, model["4"].weight, 1e-5, 1e-6)
      assert.equals(opt.param_groups[1].lr, o2.param_groups[1].lr)
      -- the weights-only epoch-2 file loads into a CPU model as well
      local m3 = setup(5):to("cpu")
      train.load_checkpoint(path, {model = m3})
      H.close(m3["4"].weight, w2, 0, 0)
      for _, p in ipairs({path, base .. "-1.safetensors", base .. "-full.safetensors"}) do
        os.remove(p)
      end
    end)

    it("optimizer state_dicts of OpenCL parameters save and load", function()
      for _, make in ipairs({
        function(ps) return lunar.optim.SGD(ps, {lr = 0.1, momentum = 0.9}) end,
        function(ps) return lunar.optim.RMSprop(ps, {lr = 0.01, centered = true}) end,
        function(ps) return lunar.optim.AdamW(ps, {lr = 0.01, amsgrad = true}) end,
      }) do
        lunar.manual_seed(80)
        local model = mlp():to(DEV)
        local X = lunar.randn(8, 2, {device = DEV})
        local opt = make(model:parameters())
        for _ = 1, 2 do
          opt:zero_grad()
          model(X):square():mean():backward()
          opt:step()
        end
        local path = tmp(".safetensors")
        lunar.save(path, lunar.optim.flatten_state_dict(opt:state_dict()))
        local twin = mlp():to(DEV)
        twin:load_state_dict(model:state_dict())
        local o2 = make(twin:parameters())
        o2:load_state_dict(lunar.optim.unflatten_state_dict(lunar.load(path)))
        os.remove(path)
        for _, m in ipairs({{model, opt}, {twin, o2}}) do
          m[2]:zero_grad()
          m[1](X):square():mean():backward()
          m[2]:step()
        end
        H.close(twin[3].weight, model[3].weight, 1e-6, 1e-7)
      end
    end)

    it("batches go to the model: a CPU model takes OpenCL data; no parameters, no move",
      function()
        local X, y = blobs(40, 63)
        local function go(model, Xs, ys)
          lunar.manual_seed(64)
          local opt = lunar.optim.SGD(model:parameters(), {lr = 0.1})
          return train.fit(model, {Xs, ys}, {loss = "cross_entropy", optimizer = opt,
            batch_size = 8, seed = 1, verbose = 0}).loss[1]
        end
        lunar.manual_seed(65)
        local m1 = mlp()
        local m2 = mlp()
        m2:load_state_dict(m1:state_dict())
        local want = go(m1, X, y)
        assert.equals(want, go(m2, X:to(DEV), y:to(DEV)))
        assert.equals("cpu", m2:device())
        local out = train.predict(nn.Softmax(2), X:to(DEV), {batch_size = 16})
        assert.equals(DEV, out:device())
        H.close(out, X:softmax(2), 1e-6, 1e-7)
      end)

    it("clip_grad_norm_ and LBFGS on OpenCL parameters follow the CPU", function()
      local function go(device)
        lunar.manual_seed(66)
        local model = mlp():to(device)
        local X, y = blobs(30, 67)
        X, y = X:to(device), y:to(device)
        local opt = lunar.optim.LBFGS(model:parameters(), {lr = 0.5, max_iter = 5})
        local norms = {}
        for _ = 1, 2 do
          opt:step(function()
            opt:zero_grad()
            local l = lunar.cross_entropy(model(X), y)
            l:backward()
            local n = lunar.optim.clip_grad_norm_(model:parameters(), 0.5)
            assert.equals(device, n:device())
            norms[#norms + 1] = n:item()
            return l
          end)
        end
        return norms, model[3].weight:to("cpu")
      end
      local nc, wc = go("cpu")
      local nd, wd = go(DEV)
      H.close(nd, nc, 1e-4, 1e-6)
      H.close(wd, wc, 1e-4, 1e-5)
    end)

    it("a scaled-down make demo gives the same history on both devices", function()
      -- scripts/demo.lua on 320 + 64 MNIST images for one epoch
      local function demo(device)
        return under(device, function()
          lunar.manual_seed(1)
          local X, y = data.mnist({split = "train", float = true})
          X, y = X:narrow(1, 1, 384), y:narrow(1, 1, 384)
          local mean, std = X:mean():item(), X:std():item()
          X = (X - mean) / std
          local model = nn.Sequential(
            nn.Conv2d(1, 6, 5, {padding = 2}), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
          assert.equals(device, model:device())
          local function shifted(samples)
            local xs, ys = {}, {}
            local shifts = lunar.randint(-2, 3, {#samples, 2}, CPU):totable()
            for i, s in ipairs(samples) do xs[i], ys[i] = s[1]:roll(shifts[i], {2, 3}), s[2] end
            return {lunar.stack(xs), lunar.tensor(ys, {dtype = "int64", device = "cpu"})}
          end
          local loader = data.DataLoader(data.TensorDataset(X:narrow(1, 1, 320),
            y:narrow(1, 1, 320)), {batch_size = 32, shuffle = true, seed = 1, collate = shifted})
          local opt = lunar.optim.Adam(model:parameters(), {lr = 2e-3})
          local sched = lunar.optim.lr_scheduler.CosineAnnealingLR(opt, 1)
          local h = train.fit(model, loader, {loss = "cross_entropy", optimizer = opt,
            validation = {X:narrow(1, 321, 64), y:narrow(1, 321, 64)}, metrics = {"accuracy"},
            callbacks = {train.LRScheduler(sched)}, verbose = 0})
          local Xv, yv = X:narrow(1, 321, 64), y:narrow(1, 321, 64)
          local scores = train.predict(model, Xv, {batch_size = 20})
          local cm = metrics.confusion_matrix(scores:argmax(2), yv, {num_classes = 10})
          local path = tmp(".safetensors")
          lunar.save(path, model:state_dict())
          local fresh = nn.Sequential(
            nn.Conv2d(1, 6, 5, {padding = 2}), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
          fresh:load_state_dict(lunar.load(path))
          os.remove(path)
          assert.is_true(train.predict(fresh, Xv, {batch_size = 20}):eq(scores):all():item())
          return h, cm
        end)
      end
      local hc, cmc = demo("cpu")
      local hd, cmd = demo(DEV)
      for _, k in ipairs({"loss", "accuracy", "val_loss", "val_accuracy"}) do
        assert(math.abs(hd[k][1] - hc[k][1]) <= 1e-3 * math.abs(hc[k][1]),
          ("%s: OpenCL %.7g, CPU %.7g"):format(k, hd[k][1], hc[k][1]))
      end
      assert.is_true(hc.val_loss[1] < math.log(10), "better than chance: " .. hc.val_loss[1])
      assert.equals(64, cmd:sum():item())
      assert.is_true((cmd - cmc):abs():sum():item() <= 2)
    end)
  end)
end)
