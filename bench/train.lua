--- bench/train.lua - lunar's side of the training figures of `make bench` (issue #3); the
-- same work as bench/train_torch.py, printed as the same "name<TAB>value<TAB>unit" lines.
-- Usage: lua5.4 bench/train.lua MODE FILE, MODE one of
--   mlp    MLP 784-256-128-10 training: the loss check, samples/s, then peak RSS
--   lenet  LeNet-5 training: the loss check, samples/s
--   resnet ResNet-18 (lunar.models, CIFAR stem, 10 classes) training at batch 32 on
--          3x32x32 inputs: the loss check, images/s; FILE is `train_torch.py prep_resnet`'s
--   infer  MLP forward at batch 1 under no_grad: median us
--   profile  MLP training timed by phase (zero_grad, forward, loss, backward, step): us per
--            step of each, and of the collector (not part of `make bench`)
-- FILE is what `train_torch.py prep` wrote: PyTorch's initial weights, the data, the labels
-- (0-based) and PyTorch's losses of the first CHECK_STEPS steps, which the first steps here
-- must reproduce (they also serve as warm-up).
-- The model is built as a user would build it and the weights copied in with
-- load_state_dict; PyTorch names Sequential children "0", "1", ..., lunar "1", "2", ....
-- BENCH_DEVICE=opencl runs mlp, lenet and resnet on that device (model and batches moved there;
-- the same loss check; figures named "ocl_..."), BENCH_STEPS sets the timed steps.
local lunar = require("lunar")
local nn = require("lunar.nn")
local models = require("lunar.models")

local clock = lunar.clock
local mode, path = arg[1], arg[2]
local BATCH, NBATCHES, CHECK_STEPS = 64, 16, 5
local WARMUP, STEPS, REPEATS = 20, 200, 3 -- the figure: median over REPEATS runs of STEPS
if mode == "resnet" then -- about 3 s a step at 1 thread here: a few steps make the figure
    BATCH, NBATCHES, CHECK_STEPS = 32, 4, 3
    WARMUP, STEPS = 1, 3
end
local DEVICE = os.getenv("BENCH_DEVICE")
if DEVICE == "" or DEVICE == "cpu" then DEVICE = nil end
local PREFIX = DEVICE and "ocl_" or ""
STEPS = tonumber(os.getenv("BENCH_STEPS") or "") or STEPS
if DEVICE then WARMUP = math.min(WARMUP, STEPS) end
local LR, MOMENTUM = 0.01, 0.9
local CHECK_RTOL = 1e-4

if not (mode and path) then
    io.stderr:write("usage: lua5.4 bench/train.lua mlp|lenet|resnet|infer|profile FILE\n")
    os.exit(2)
end
local threads = tonumber(os.getenv("OMP_NUM_THREADS") or "")
if threads then lunar.set_num_threads(threads) end

local function report(name, value, unit)
    io.write(string.format("%s\t%.6g\t%s\n", name, value, unit))
    io.flush()
end

local function median(xs)
    table.sort(xs)
    local n = #xs
    if n % 2 == 1 then return xs[(n + 1) // 2] end
    return (xs[n // 2] + xs[n // 2 + 1]) / 2
end

local builders = {
    mlp = function()
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
            nn.Linear(128, 10))
    end,
    lenet = function()
        return nn.Sequential(nn.Conv2d(1, 6, 5, {padding = 2}), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    end,
    resnet = function() return models.resnet18({num_classes = 10, small_input = true}) end,
}
local shapes = {mlp = {BATCH, 784}, lenet = {BATCH, 1, 28, 28}, resnet = {BATCH, 3, 32, 32}}

local data = lunar.load(path)

-- The model of that kind with PyTorch's initial weights ("mlp.0.weight" -> "1.weight";
-- the ResNet's names are torchvision's: "resnet.layer1.0.conv1.weight" -> "layer1.0...").
local function model_from(kind)
    local model = builders[kind]()
    local sd = {}
    for name, t in pairs(data) do
        if kind == "resnet" then
            local rest = name:match("^resnet%.(.+)$")
            if rest and rest ~= "losses" then sd[rest] = t end
        else
            local i, rest = name:match("^" .. kind .. "%.(%d+)%.(.+)$")
            if i then sd[(tonumber(i) + 1) .. "." .. rest] = t end
        end
    end
    if DEVICE then model:to(DEVICE) end
    model:load_state_dict(sd)
    return model
end

local function batches(kind)
    local xs, ys = {}, {}
    for k = 1, NBATCHES do
        xs[k] = data.x[k]:view(shapes[kind])
        ys[k] = data.y[k] + 1 -- lunar's classes are 1-based
        if DEVICE then xs[k], ys[k] = xs[k]:to(DEVICE), ys[k]:to(DEVICE) end
    end
    return xs, ys
end

-- Runs `steps` SGD steps over the batches in turn from step `start` (0-based); the last loss.
local function train_steps(model, opt, xs, ys, steps, start)
    local loss
    start = start or 0
    for i = start, start + steps - 1 do
        local k = i % NBATCHES + 1
        opt:zero_grad()
        loss = lunar.cross_entropy(model(xs[k]), ys[k])
        loss:backward()
        opt:step()
    end
    return loss
end

local function bench_train(kind)
    local model = model_from(kind)
    local xs, ys = batches(kind)
    local opt = lunar.optim.SGD(model:parameters(), {lr = LR, momentum = MOMENTUM})
    -- the check: PyTorch's first losses from the same weights and data
    local ref, worst = data[kind .. ".losses"], 0
    for i = 0, CHECK_STEPS - 1 do
        local got, want = train_steps(model, opt, xs, ys, 1, i):item(), ref[i + 1]
        worst = math.max(worst, math.abs(got - want) / math.abs(want))
    end
    report(PREFIX .. kind .. "_check_rel", worst, "rel")
    if worst ~= worst or worst > CHECK_RTOL then
        error(("%s: the first %d losses differ from PyTorch's by %g relative (> %g)")
            :format(kind, CHECK_STEPS, worst, CHECK_RTOL))
    end
    train_steps(model, opt, xs, ys, WARMUP, CHECK_STEPS)
    local rates, loss = {}, nil
    for r = 1, REPEATS do
        local t0 = clock()
        loss = train_steps(model, opt, xs, ys, STEPS)
        loss = loss:item() -- the last step is done
        rates[r] = STEPS * BATCH / (clock() - t0)
    end
    assert(loss == loss and loss < 10, "training diverged")
    report(PREFIX .. kind .. "_train_sps", median(rates), "samples/s")
end

local function bench_infer()
    local model = model_from("mlp"):eval()
    local x = data.x[1]:narrow(1, 1, 1)
    local block, blocks = 100, 30
    local ts, out, ref = {}, nil, nil
    lunar.no_grad(function()
        ref = model(x)
        for _ = 1, 1000 do model(x) end
        for b = 1, blocks do
            local t0 = clock()
            for _ = 1, block do out = model(x) end
            ts[b] = (clock() - t0) / block
        end
    end)
    assert((out - ref):abs():max():item() == 0, "inference gave different results")
    report("mlp_infer_us", median(ts) * 1e6, "us")
end

-- Where one MLP step's time goes. Each phase is timed around its call; the collector runs
-- inside whichever phase allocates when its debt is due, so its share is measured apart:
-- a second run with the collector stopped (and a full collection after every step, timed
-- as "gc").
local function profile()
    local model = model_from("mlp")
    local xs, ys = batches("mlp")
    local opt = lunar.optim.SGD(model:parameters(), {lr = LR, momentum = MOMENTUM})
    local names = {"zero_grad", "forward", "loss", "backward", "step", "gc"}
    for _, stop_gc in ipairs({false, true}) do
        train_steps(model, opt, xs, ys, WARMUP)
        local acc = {}
        for _, n in ipairs(names) do acc[n] = 0 end
        if stop_gc then collectgarbage("stop") end
        local t_all = clock()
        for i = 0, STEPS - 1 do
            local k = i % NBATCHES + 1
            local t0 = clock()
            opt:zero_grad()
            local t1 = clock()
            local logits = model(xs[k])
            local t2 = clock()
            local loss = lunar.cross_entropy(logits, ys[k])
            local t3 = clock()
            loss:backward()
            local t4 = clock()
            opt:step()
            local t5 = clock()
            acc.zero_grad = acc.zero_grad + t1 - t0
            acc.forward = acc.forward + t2 - t1
            acc.loss = acc.loss + t3 - t2
            acc.backward = acc.backward + t4 - t3
            acc.step = acc.step + t5 - t4
            if stop_gc then
                logits, loss = nil, nil -- luacheck: ignore
                collectgarbage("collect")
                acc.gc = acc.gc + clock() - t5
            end
        end
        local total = clock() - t_all
        collectgarbage("restart")
        local tag = stop_gc and "_gcsep" or ""
        for _, n in ipairs(names) do
            if n ~= "gc" or stop_gc then
                report("profile" .. tag .. "_" .. n .. "_us", acc[n] / STEPS * 1e6, "us/step")
            end
        end
        report("profile" .. tag .. "_total_us", total / STEPS * 1e6, "us/step")
    end
end

local function peak_rss_mb()
    local f = assert(io.open("/proc/self/status"))
    local s = f:read("a")
    f:close()
    return assert(tonumber(s:match("VmHWM:%s*(%d+)")), "no VmHWM in /proc/self/status") / 1024
end

if mode == "infer" then
    bench_infer()
elseif mode == "profile" then
    profile()
elseif builders[mode] then
    bench_train(mode)
else
    error("train.lua: unknown mode '" .. mode .. "' (mlp, lenet, resnet, infer or profile)")
end
if mode == "mlp" and not DEVICE then
    report("threads", lunar.get_num_threads(), "threads")
    report("mlp_train_rss_mb", peak_rss_mb(), "MB")
end
