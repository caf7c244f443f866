-- The source documents' Keras MLP on MNIST (Sequential Dense 128 relu, Dense 64 relu,
-- Dense 10; adam; sparse categorical cross-entropy; 5 epochs, batch 32, validation_split
-- 0.2), written with lunar.nn and lunar.train.fit on the embedded MNIST subset.
-- The last layer gives logits: lunar's cross_entropy fuses Keras' softmax + sparse CE, and
-- the probabilities are the softmax of the predictions.
--   lua5.4 scripts/keras_mlp.lua   (with the repo's LUA_PATH / LUA_CPATH)
local lunar = require("lunar")
local nn, train = lunar.nn, lunar.train

lunar.manual_seed(0)
-- x_train.reshape(-1, 784).astype("float32") / 255
local Xtr, ytr = lunar.data.mnist({split = "train", float = true})
local Xte, yte = lunar.data.mnist({split = "test", float = true})
Xtr, Xte = Xtr:view(Xtr:size(1), 784), Xte:view(Xte:size(1), 784)

local model = nn.Sequential(
  nn.Linear(784, 128), nn.ReLU(),
  nn.Linear(128, 64), nn.ReLU(),
  nn.Linear(64, 10))
model:summary({1, 784})
local n = model:num_parameters()
print(("%s parameters (100,480 + 8,256 + 650)"):format(tostring(n):reverse():gsub("(%d%d%d)",
  "%1,"):reverse():gsub("^,", "")))
assert(n == 109386)

local history = train.fit(model, {Xtr, ytr}, {
  loss = "sparse_categorical_crossentropy",
  optimizer = lunar.optim.Adam(model:parameters(), {lr = 1e-3}),
  epochs = 5, batch_size = 32, validation_split = 0.2, metrics = {"accuracy"}, seed = 0,
})
local test = train.evaluate(model, {Xte, yte}, {loss = "sparse_categorical_crossentropy",
  metrics = {"accuracy"}})
print(("test loss %.4f, test accuracy %.4f (last validation accuracy %.4f)"):format(test.loss,
  test.accuracy, history.val_accuracy[#history.val_accuracy]))
local probs = train.predict(model, Xte:narrow(1, 1, 1)):softmax(2)
print("predictions[1] (digits 0..9):")
print(probs)
