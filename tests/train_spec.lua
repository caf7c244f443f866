-- lunar.train: fit/evaluate/predict, callbacks, progress output, checkpoints.
local lunar = require("lunar")
local nn = require("lunar.nn")
local train = require("lunar.train")
local H = require("tests.helper")

-- two Gaussian blobs in 2-d, classes 1 and 2, separable
local function blobs(n, seed)
  local g = lunar.Generator(seed or 1)
  local X = lunar.randn(n, 2, {generator = g}) * 0.5
  local y = lunar.randint(1, 3, {n}, {generator = g})
  X = X + (y:float():view(n, 1) * 2 - 3) * 1.5
  return X, y
end

local function mlp()
  return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
end

local function sgd(model, lr) return lunar.optim.SGD(model:parameters(), {lr = lr or 0.1}) end

-- a callback that replaces val_loss by a scripted value and marks the model's weights with
-- the epoch, so restored weights tell which epoch they came from
local function scripted(seq)
  return {on_epoch_end = function(self, epoch, logs)
    logs.val_loss = seq[epoch]
    lunar.no_grad(function() self.trainer.model["1"].weight:fill_(epoch) end)
  end}
end

local function tmp(ext) return os.tmpname() .. ext end

local function read_all(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("a")
  f:close()
  return s
end

describe("lunar.train.fit", function()
  it("records the loss of the hand-written loop in the history", function()
    lunar.manual_seed(1)
    local X, y = blobs(40)
    local model = mlp()
    -- one full batch, no shuffle: the epoch's loss is the loss before the step
    local before = lunar.cross_entropy(model(X), y):item()
    local h = train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = sgd(model),
      epochs = 2, batch_size = 40, shuffle = false, metrics = {"accuracy"},
      validation = {X, y}, verbose = 0})
    assert.same({1, 2}, h.epoch)
    for _, k in ipairs({"loss", "accuracy", "val_loss", "val_accuracy"}) do
      assert.equals(2, #h[k])
    end
    assert.near(before, h.loss[1], 1e-6)
    -- validation after the last step equals evaluate on the final model
    local ev = train.evaluate(model, {X, y}, {loss = "cross_entropy", metrics = {"accuracy"},
      batch_size = 7})
    assert.near(ev.loss, h.val_loss[2], 1e-5)
    assert.near(ev.accuracy, h.val_accuracy[2], 1e-12)
    local acc = model(X):argmax(2):eq(y):float():mean():item()
    assert.near(acc, ev.accuracy, 1e-6)
  end)

  it("takes {X, y}, a Dataset or a DataLoader alike", function()
    local X, y = blobs(20)
    local function run(d)
      lunar.manual_seed(4)
      local model = mlp()
      return train.fit(model, d, {loss = "cross_entropy", optimizer = sgd(model), epochs = 2,
        batch_size = 6, shuffle = false, verbose = 0}).loss
    end
    local a = run({X, y})
    assert.same(a, run(lunar.data.TensorDataset(X, y)))
    assert.same(a, run(lunar.data.DataLoader(lunar.data.TensorDataset(X, y), {batch_size = 6})))
  end)

  it("learns a separable problem", function()
    lunar.manual_seed(2)
    local X, y = blobs(200, 3)
    local model = mlp()
    local h = train.fit(model, {X, y}, {loss = nn.CrossEntropyLoss(),
      optimizer = lunar.optim.Adam(model:parameters(), {lr = 0.05}), epochs = 10,
      batch_size = 16, validation_split = 0.2, metrics = {"accuracy"}, seed = 1, verbose = 0})
    assert.is_true(h.val_accuracy[#h.val_accuracy] >= 0.95)
    local Xt, yt = blobs(100, 9)
    local ev = train.evaluate(model, {Xt, yt}, {loss = "cross_entropy", metrics = {"accuracy"}})
    assert.is_true(ev.accuracy >= 0.95)
    -- predict: batch by batch, the same as one call in eval mode
    local p = train.predict(model, Xt, {batch_size = 13})
    H.close(p, lunar.no_grad(function() return model(Xt) end), 1e-6, 1e-6)
  end)

  it("leaves a frozen layer alone, momentum and weight decay included", function()
    -- fit drops the grads each step (zero_grad(true)): a parameter that gets none is skipped
    lunar.manual_seed(4)
    local X, y = blobs(64, 5)
    local model = mlp()
    local opt = lunar.optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9,
      weight_decay = 0.01})
    train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt, epochs = 1,
      batch_size = 16, seed = 1, verbose = 0})
    model["1"]:freeze()
    local w0, b0 = model["1"].weight:clone(), model["1"].bias:clone()
    local w2 = model["3"].weight:clone()
    train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt, epochs = 2,
      batch_size = 16, seed = 1, verbose = 0})
    H.close(model["1"].weight, w0, 0, 0)
    H.close(model["1"].bias, b0, 0, 0)
    assert.is_true((model["3"].weight - w2):abs():max():item() > 1e-4)
  end)

  it("applies class weights to the loss", function()
    lunar.manual_seed(3)
    local X, y = blobs(30)
    local model = mlp()
    local out = lunar.no_grad(function() return model(X) end)
    local per = lunar.cross_entropy(out, y, {reduction = "none"}):totable()
    local cw = {[1] = 1, [2] = 5}
    local num, den = 0, 0
    for i, c in ipairs(y:totable()) do
      num, den = num + cw[c] * per[i], den + cw[c]
    end
    local h = train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = sgd(model, 0),
      batch_size = 30, shuffle = false, class_weight = cw, verbose = 0})
    assert.near(num / den, h.loss[1], 1e-6)
    local plain = train.evaluate(model, {X, y}, {loss = "cross_entropy"}).loss
    assert.is_true(math.abs(plain - h.loss[1]) > 1e-3)
    -- a regression loss: each sample's loss weighted by its target's class
    local reg = nn.Linear(2, 1)
    local t = (y - 1):float()
    local o = lunar.no_grad(function() return reg(X):view(-1) end)
    local se = ((o - t):square()):totable()
    local w = {[0] = 2, [1] = 0.5}
    num, den = 0, 0
    for i, v in ipairs(t:totable()) do
      num, den = num + w[math.tointeger(v)] * se[i], den + w[math.tointeger(v)]
    end
    h = train.fit(reg, {X, t}, {loss = "mse", optimizer = sgd(reg, 0), batch_size = 30,
      shuffle = false, class_weight = w, verbose = 0})
    assert.near(num / den, h.loss[1], 1e-5)
  end)

  it("calls the callbacks' hooks in order", function()
    local X, y = blobs(10)
    local model = mlp()
    local calls = {}
    local function rec(tag)
      local cb = {}
      for _, hk in ipairs({"on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
        "on_batch_begin", "on_batch_end"}) do
        cb[hk] = function(_, i) calls[#calls + 1] = tag .. ":" .. hk .. (type(i) == "number"
          and (" " .. i) or "") end
      end
      return cb
    end
    local Counter = train.Callback:extend("Counter")
    function Counter:on_epoch_end(epoch) calls[#calls + 1] = "C:epoch_end " .. epoch end
    train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = sgd(model), epochs = 2,
      batch_size = 6, callbacks = {rec("A"), Counter()}, verbose = 0})
    local want = {"A:on_train_begin"}
    for e = 1, 2 do
      want[#want + 1] = "A:on_epoch_begin " .. e
      for b = 1, 2 do
        want[#want + 1] = "A:on_batch_begin " .. b
        want[#want + 1] = "A:on_batch_end " .. b
      end
      want[#want + 1] = "A:on_epoch_end " .. e
      want[#want + 1] = "C:epoch_end " .. e
    end
    want[#want + 1] = "A:on_train_end"
    assert.same(want, calls)
  end)

  it("rejects bad input", function()
    local X, y = blobs(10)
    local model = mlp()
    local opt = sgd(model)
    H.raises(function() train.fit(model, {X, y}, {optimizer = opt, verbose = 0}) end,
      "fit: options.loss is missing")
    H.raises(function() train.fit(model, {X, y}, {loss = "cross_entropy", verbose = 0}) end,
      "fit: options.optimizer is missing")
    H.raises(function()
      train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt, metrics = {"acuracy"},
        verbose = 0})
    end, "fit: unknown metric 'acuracy'")
    H.raises(function()
      train.fit(model, {X, y:narrow(1, 1, 9)}, {loss = "cross_entropy", optimizer = opt,
        verbose = 0})
    end, "X [10, 2] and y [9] differ")
    H.raises(function()
      train.fit(model, {X, y}, {loss = "hinge-ish", optimizer = opt, verbose = 0})
    end, "fit: unknown loss 'hinge-ish'")
    H.raises(function()
      train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt, epochs = 0})
    end, "fit: epochs must be a positive integer")
    H.raises(function()
      train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt, validation_split = 1.5})
    end, "validation_split must be in (0, 1)")
    H.raises(function()
      train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt, callbacks = {{}}})
    end, "callback 1 has none of the hooks")
    H.raises(function()
      train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt, class_weight = {[3] = 2},
        verbose = 0})
    end, "class_weight has class 3")
    H.raises(function() train.fit({}, {X, y}, {}) end, "fit: expected an nn.Module")
    H.raises(function() train.EarlyStopping({mode = "up"}) end, "EarlyStopping: mode must be")
  end)
end)

describe("lunar.train callbacks", function()
  local X, y = blobs(8)

  local function run(seq, cb, epochs)
    local model = mlp()
    local h = train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = sgd(model),
      epochs = epochs or #seq, batch_size = 8, callbacks = {scripted(seq), cb}, verbose = 0})
    return model, h
  end

  it("EarlyStopping counts epochs without an improvement of more than min_delta", function()
    local seq = {1.0, 0.8, 0.85, 0.79, 0.9, 0.95, 0.7, 0.6}
    -- min_delta 0.02: 0.79 is not better than 0.8 by more than 0.02, so the wait reaches 2
    local es = train.EarlyStopping({patience = 2, min_delta = 0.02})
    local _, h = run(seq, es)
    assert.equals(4, es.stopped_epoch)
    assert.equals(2, es.best_epoch)
    assert.equals(4, #h.loss)
    -- without min_delta 0.79 improves and resets the wait: stop at 6, best epoch 4
    es = train.EarlyStopping({patience = 2})
    run(seq, es)
    assert.equals(6, es.stopped_epoch)
    assert.equals(4, es.best_epoch)
    -- patience 0 stops at the first epoch without an improvement
    es = train.EarlyStopping({patience = 0})
    run(seq, es)
    assert.equals(3, es.stopped_epoch)
    -- mode max (auto for accuracy names) on the same numbers
    es = train.EarlyStopping({monitor = "val_loss", mode = "max", patience = 1})
    run(seq, es)
    assert.equals(2, es.stopped_epoch)
    assert.equals("max", train.EarlyStopping({monitor = "val_accuracy"}).mode)
  end)

  it("EarlyStopping restores the best epoch's weights", function()
    local seq = {1.0, 0.8, 0.85, 0.79, 0.9, 0.95, 0.7}
    local es = train.EarlyStopping({patience = 2, restore_best_weights = true})
    local model = run(seq, es)
    assert.equals(6, es.stopped_epoch)
    -- the weights were filled with the epoch number: those of epoch 4 are back
    assert.is_true(model["1"].weight:eq(4):all():item())
    -- without restoring, the last epoch's weights stay
    es = train.EarlyStopping({patience = 2})
    model = run(seq, es)
    assert.is_true(model["1"].weight:eq(6):all():item())
  end)

  it("ModelCheckpoint with save_best_only writes on improvements only", function()
    local dir = tmp("")
    local ck = train.ModelCheckpoint(dir .. "-{epoch}.safetensors", {save_best_only = true})
    local seq = {3, 2, 2.5, 1, 1}
    run(seq, ck)
    assert.same({1, 2, 4}, ck.saved)
    for e = 1, 5 do
      local path = dir .. "-" .. e .. ".safetensors"
      local f = io.open(path, "rb")
      assert.equals(e == 1 or e == 2 or e == 4, f ~= nil)
      if f then
        f:close()
        local t, meta = lunar.load(path)
        assert.equals(tostring(e), meta.epoch)
        -- the saved weights are those of that epoch
        assert.is_true(t["1.weight"]:eq(e):all():item())
        os.remove(path)
      end
    end
    -- every epoch without save_best_only
    ck = train.ModelCheckpoint(dir .. ".safetensors")
    run({3, 2}, ck)
    assert.same({1, 2}, ck.saved)
    os.remove(dir .. ".safetensors")
    os.remove(dir)
  end)

  it("TerminateOnNaN stops after the first NaN loss", function()
    local model = mlp()
    local count = 0
    local function loss(out, target)
      count = count + 1
      local l = lunar.cross_entropy(out, target)
      if count == 3 then return l * (0 / 0) end
      return l
    end
    local cb = train.TerminateOnNaN({verbose = false})
    local h = train.fit(model, {X, y}, {loss = loss, optimizer = sgd(model), epochs = 5,
      batch_size = 2, callbacks = {cb}, verbose = 0})
    assert.same({1, 3}, cb.stopped_batch)
    assert.equals(3, count)
    assert.equals(1, #h.loss)
    assert.is_true(h.loss[1] ~= h.loss[1])
  end)

  it("CSVLogger and JSONLinesLogger write one row per epoch", function()
    local csv, jl = tmp(".csv"), tmp(".jsonl")
    local model = mlp()
    local h = train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = sgd(model),
      epochs = 3, batch_size = 4, validation = {X, y}, metrics = {"accuracy"},
      callbacks = {train.CSVLogger(csv), train.JSONLinesLogger(jl)}, verbose = 0})
    local lines = {}
    for l in read_all(csv):gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equals(4, #lines)
    assert.equals("epoch,accuracy,loss,val_accuracy,val_loss", lines[1])
    for e = 1, 3 do
      local v = {}
      for x in lines[e + 1]:gmatch("[^,]+") do v[#v + 1] = tonumber(x) end
      assert.same({e, h.accuracy[e], h.loss[e], h.val_accuracy[e], h.val_loss[e]}, v)
    end
    local jlines = {}
    for l in read_all(jl):gmatch("[^\n]+") do jlines[#jlines + 1] = l end
    assert.equals(3, #jlines)
    assert.equals(('{"epoch": 2, "accuracy": %.17g, "loss": %.17g, "val_accuracy": %.17g, '
      .. '"val_loss": %.17g}'):format(h.accuracy[2], h.loss[2], h.val_accuracy[2], h.val_loss[2]),
      jlines[2])
    os.remove(csv)
    os.remove(jl)
  end)

  it("LRScheduler steps per epoch and ReduceLROnPlateau follows the monitor", function()
    local model = mlp()
    local opt = sgd(model, 0.1)
    local sched = lunar.optim.lr_scheduler.StepLR(opt, 1, {gamma = 0.5})
    local lrs = {}
    local rec = {on_epoch_begin = function() lrs[#lrs + 1] = opt.param_groups[1].lr end}
    train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt, epochs = 3,
      callbacks = {rec, train.LRScheduler(sched)}, verbose = 0})
    H.close(lrs, {0.1, 0.05, 0.025}, 1e-12, 0)
    opt = sgd(model, 0.1)
    local plateau = train.ReduceLROnPlateau({patience = 1, factor = 0.5})
    train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt, epochs = 4,
      callbacks = {scripted({1, 1, 1, 1}), plateau}, verbose = 0})
    -- epoch 1 sets the best, 2 is bad (1 <= patience), 3 exceeds patience: halve; 4 is bad
    assert.near(0.05, opt.param_groups[1].lr, 1e-12)
  end)
end)

describe("lunar.train progress", function()
  it("writes one line per epoch when not on a terminal", function()
    local X, y = blobs(12)
    local model = mlp()
    local path = tmp(".log")
    local f = assert(io.open(path, "w"))
    train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = sgd(model), epochs = 3,
      batch_size = 4, metrics = {"accuracy"}, validation = {X, y}, verbose = 1,
      progress = {file = f, tty = false}})
    f:close()
    local text = read_all(path)
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equals(3, #lines)
    for e = 1, 3 do
      assert.truthy(lines[e]:find("^Epoch " .. e .. "/3  loss %d%.%d+  accuracy [%d.]+  "
        .. "val_loss [%d.]+  val_accuracy [%d.]+  %d+ samples/s"))
    end
    assert.is_nil(text:find("\r", 1, true))
    -- on a terminal: \r updates with a bar and an ETA, one finished line per epoch
    f = assert(io.open(path, "w"))
    train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = sgd(model), epochs = 2,
      batch_size = 4, verbose = 1, progress = {file = f, tty = true, interval = 0}})
    f:close()
    text = read_all(path)
    os.remove(path)
    local _, updates = text:gsub("\r", "")
    assert.equals(2 * 3 + 2, updates)
    assert.truthy(text:find("[========================] 3/3", 1, true))
    assert.truthy(text:find("ETA", 1, true))
    local _, nl = text:gsub("\n", "")
    assert.equals(2, nl)
  end)
end)

describe("lunar.train checkpoints", function()
  local function setup(seed)
    lunar.manual_seed(seed)
    local model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    local opt = lunar.optim.Adam(model:parameters(), {lr = 0.02})
    local sched = lunar.optim.lr_scheduler.StepLR(opt, 1, {gamma = 0.7})
    return model, opt, sched
  end

  local function more(model, opt, sched, X, y)
    return train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt, epochs = 4,
      initial_epoch = 2, batch_size = 8, callbacks = {train.LRScheduler(sched)}, verbose = 0})
  end

  it("resumes bit for bit (model, optimizer, scheduler, RNG, shuffle)", function()
    local X, y = blobs(40, 5)
    local model, opt, sched = setup(11)
    train.fit(model, {X, y}, {loss = "cross_entropy", optimizer = opt, epochs = 2,
      batch_size = 8, callbacks = {train.LRScheduler(sched)}, verbose = 0})
    local path = tmp(".safetensors")
    train.save_checkpoint(path, {model = model, optimizer = opt, scheduler = sched, epoch = 2})
    local L = more(model, opt, sched, X, y).loss
    local w = model["4"].weight:clone()

    local m2, o2, s2 = setup(99)
    lunar.manual_seed(12345) -- the checkpoint restores the generator
    local epoch = train.load_checkpoint(path, {model = m2, optimizer = o2, scheduler = s2})
    os.remove(path)
    assert.equals(2, epoch)
    local L2 = more(m2, o2, s2, X, y).loss
    assert.equals(2, #L)
    for i = 1, 2 do assert.equals(L[i], L2[i]) end
    assert.is_true(m2["4"].weight:eq(w):all():item())
    assert.equals(opt.param_groups[1].lr, o2.param_groups[1].lr)
  end)

  it("rejects files that are not checkpoints", function()
    local path = tmp(".safetensors")
    lunar.save(path, {a = lunar.zeros(2)})
    H.raises(function() train.load_checkpoint(path, {}) end, "is not a lunar.train checkpoint")
    os.remove(path)
  end)
end)
