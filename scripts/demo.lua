-- make demo: LeNet-5 on the embedded MNIST subset (8000 training / 2000 test digits) with
-- lunar.train.fit: Adam, a validation split, the progress bar, test accuracy, the confusion
-- matrix, and a save/load round trip that must predict the same.
-- `LUNAR_DEVICE=opencl make demo` trains on the OpenCL device: the layers' parameters go to
-- the default device, the data set stays on the CPU and fit moves each batch.
local lunar = require("lunar")
local nn, train, metrics = lunar.nn, lunar.train, lunar.metrics

local t_start = lunar.clock()
lunar.manual_seed(1)

-- images in [0, 1], then normalised with the training set's mean and std
local Xtr, ytr, info = lunar.data.mnist({split = "train", float = true})
local Xte, yte = lunar.data.mnist({split = "test", float = true})
local mean, std = Xtr:mean():item(), Xtr:std():item()
Xtr, Xte = (Xtr - mean) / std, (Xte - mean) / std
print(("MNIST subset: %d training and %d test images, pixel mean %.4f, std %.4f")
  :format(Xtr:size(1), Xte:size(1), mean, std))

local function lenet5()
  return nn.Sequential(
    nn.Conv2d(1, 6, 5, {padding = 2}), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(400, 120), nn.ReLU(),
    nn.Linear(120, 84), nn.ReLU(),
    nn.Linear(84, 10))
end
local model = lenet5()
model:summary({1, 1, 28, 28})

-- the last 800 training images validate; the others are shifted by up to 2 pixels each
-- time they are drawn (MNIST digits sit in an empty border, so a roll only moves them)
local n_val = 800
local n_fit = Xtr:size(1) - n_val
local Xfit, yfit = Xtr:narrow(1, 1, n_fit), ytr:narrow(1, 1, n_fit)
local Xval, yval = Xtr:narrow(1, n_fit + 1, n_val), ytr:narrow(1, n_fit + 1, n_val)
-- Batches are made on the CPU, next to the data; fit moves each one to the model's device.
local function shifted_batch(samples)
  local xs, ys = {}, {}
  local shifts = lunar.randint(-2, 3, {#samples, 2}, {device = "cpu"}):totable()
  for i, s in ipairs(samples) do
    xs[i] = s[1]:roll(shifts[i], {2, 3})
    ys[i] = s[2]
  end
  return {lunar.stack(xs), lunar.tensor(ys, {dtype = "int64", device = "cpu"})}
end
local loader = lunar.data.DataLoader(lunar.data.TensorDataset(Xfit, yfit),
  {batch_size = 32, shuffle = true, seed = 1, collate = shifted_batch})

local opt = lunar.optim.Adam(model:parameters(), {lr = 2e-3})
local epochs = tonumber(os.getenv("DEMO_EPOCHS")) or 12
local sched = lunar.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
local history = train.fit(model, loader, {
  loss = "cross_entropy", optimizer = opt, epochs = epochs,
  validation = {Xval, yval}, metrics = {"accuracy"},
  callbacks = {train.LRScheduler(sched)},
})

local scores = train.predict(model, Xte, {batch_size = 500})
local pred = scores:argmax(2)
local acc = metrics.accuracy(pred, yte)
print(("\ntest accuracy: %.2f%% (best validation accuracy %.2f%%)"):format(100 * acc,
  100 * math.max(table.unpack(history.val_accuracy))))
print("\nconfusion matrix (rows: true digit, columns: predicted)")
print(metrics.format_confusion_matrix(metrics.confusion_matrix(pred, yte, {num_classes = 10}),
  info.classes))

-- save, load into a fresh model, and check that it predicts the same
local path = os.tmpname() .. ".safetensors"
lunar.save(path, model:state_dict(), {model = "LeNet-5", epochs = tostring(epochs)})
local fresh = lenet5()
fresh:load_state_dict(lunar.load(path))
os.remove(path)
local again = train.predict(fresh, Xte, {batch_size = 500})
assert(again:eq(scores):all():item(), "demo: the reloaded model predicts differently")
print("saved the model and loaded it into a fresh LeNet-5: identical predictions")
print(("total time %.1f s"):format(lunar.clock() - t_start))
