--- lunar.models: ready-made architectures built from lunar.nn layers.
--   local models = require("lunar.models")      -- or lunar.models
--   local net = models.resnet18({num_classes = 10, small_input = true})
-- The ResNets follow torchvision 0.14 exactly: the same layers, defaults, initialisation
-- and state_dict names ("conv1.weight", "layer1.0.conv1.weight",
-- "layer2.0.downsample.1.running_mean", "fc.bias", ...), so a torchvision checkpoint saved
-- as safetensors loads with `net:load_state_dict(lunar.load(path))`.
-- @module lunar.models
local lunar = require("lunar")
local nn = require("lunar.nn")

local models = {}

-- A Sequential whose children are named "0", "1", ... as torchvision's nn.Sequential names
-- them, so that the state_dict keys are "layer1.0.conv1.weight". Indexing with a number
-- reaches the child of that name: `net.layer1[0]` is the first block, as in PyTorch.
local function sequential0(mods)
  local seq = nn.Sequential()
  for i, m in ipairs(mods) do seq:add_module(i - 1, m) end
  return seq
end

local function conv3x3(cin, cout, stride, dtype)
  return nn.Conv2d(cin, cout, 3, {stride = stride, padding = 1, bias = false, dtype = dtype})
end

local function conv1x1(cin, cout, stride, dtype)
  return nn.Conv2d(cin, cout, 1, {stride = stride, bias = false, dtype = dtype})
end

--- ResNet's basic block (He et al. 2015): two 3x3 convolutions with batch norm, added to the
-- input (through `downsample`, a 1x1 convolution and batch norm, when the shape changes),
-- then ReLU. `BasicBlock(inplanes, planes, stride, downsample, {dtype})`.
local BasicBlock = nn.Module:extend("BasicBlock")
models.BasicBlock = BasicBlock
BasicBlock.expansion = 1

function BasicBlock:init(inplanes, planes, stride, downsample, opts)
  local dtype = opts and opts.dtype
  stride = stride or 1
  self.conv1 = conv3x3(inplanes, planes, stride, dtype)
  self.bn1 = nn.BatchNorm2d(planes, {dtype = dtype})
  self.relu = nn.ReLU()
  self.conv2 = conv3x3(planes, planes, 1, dtype)
  self.bn2 = nn.BatchNorm2d(planes, {dtype = dtype})
  if downsample then self.downsample = downsample end
  self.stride = stride
end

function BasicBlock:forward(x)
  local out = self.relu(self.bn1(self.conv1(x)))
  out = self.bn2(self.conv2(out))
  local identity = self.downsample and self.downsample(x) or x
  return self.relu(out + identity)
end

--- ResNet (He et al. 2015) with torchvision's structure: the stem `conv1`, `bn1`, `relu`,
-- `maxpool`, the stages `layer1`..`layer4` (each a list of blocks named "0", "1", ...),
-- `avgpool` and `fc`. `ResNet(block, layers, opts)`, layers the number of blocks per stage
-- ({2, 2, 2, 2} for ResNet-18). Options as `models.resnet18`.
local ResNet = nn.Module:extend("ResNet")
models.ResNet = ResNet

local function positive_int(what, v)
  if math.type(v) ~= "integer" or v < 1 then
    error(("ResNet: %s must be a positive integer (got %s)"):format(what, tostring(v)), 4)
  end
end

function ResNet:init(block, layers, opts)
  opts = opts or {}
  local num_classes = opts.num_classes or 1000
  local in_channels = opts.in_channels or 3
  local width = opts.width or 64
  positive_int("num_classes", num_classes)
  positive_int("in_channels", in_channels)
  positive_int("width", width)
  if type(layers) ~= "table" or #layers ~= 4 then
    error("ResNet: layers must be a table of 4 block counts", 3)
  end
  for _, n in ipairs(layers) do positive_int("a block count", n) end
  local dtype = opts.dtype
  self.in_channels = in_channels
  self.small_input = opts.small_input == true
  self.inplanes = width
  if self.small_input then
    -- CIFAR-style stem for 32x32 inputs: a 3x3 convolution of stride 1 and no max-pool
    self.conv1 = nn.Conv2d(in_channels, width, 3, {padding = 1, bias = false, dtype = dtype})
  else
    self.conv1 = nn.Conv2d(in_channels, width, 7,
      {stride = 2, padding = 3, bias = false, dtype = dtype})
  end
  self.bn1 = nn.BatchNorm2d(width, {dtype = dtype})
  self.relu = nn.ReLU()
  if not self.small_input then self.maxpool = nn.MaxPool2d(3, {stride = 2, padding = 1}) end
  for i = 1, 4 do
    self["layer" .. i] = self:_make_layer(block, width << (i - 1), layers[i],
      i == 1 and 1 or 2, dtype)
  end
  self.avgpool = nn.AdaptiveAvgPool2d({1, 1})
  self.fc = nn.Linear(self.inplanes, num_classes, {dtype = dtype})

  -- torchvision's initialisation: He normal (fan_out, relu) for every convolution, batch
  -- norm scale 1 and shift 0; the Linear keeps its default
  for _, m in ipairs(self:modules()) do
    local cls = getmetatable(m)
    if cls == nn.Conv2d then
      nn.init.kaiming_normal_(m.weight, {mode = "fan_out", nonlinearity = "relu"})
    elseif cls == nn.BatchNorm2d then
      nn.init.ones_(m.weight)
      nn.init.zeros_(m.bias)
    end
  end
  -- each residual branch starts at zero, so every block starts as the identity
  if opts.zero_init_residual then
    for _, m in ipairs(self:modules()) do
      if BasicBlock:is_instance(m) then nn.init.zeros_(m.bn2.weight) end
    end
  end
end

function ResNet:_make_layer(block, planes, blocks, stride, dtype)
  local downsample
  if stride ~= 1 or self.inplanes ~= planes * block.expansion then
    downsample = sequential0({conv1x1(self.inplanes, planes * block.expansion, stride, dtype),
      nn.BatchNorm2d(planes * block.expansion, {dtype = dtype})})
  end
  local list = {block(self.inplanes, planes, stride, downsample, {dtype = dtype})}
  self.inplanes = planes * block.expansion
  for _ = 2, blocks do
    list[#list + 1] = block(self.inplanes, planes, 1, nil, {dtype = dtype})
  end
  return sequential0(list)
end

function ResNet:forward(x)
  if not lunar.is_tensor(x) or x:dim() ~= 4 or x:size(2) ~= self.in_channels then
    local got = lunar.is_tensor(x) and "[" .. table.concat(x:size(), ", ") .. "]" or type(x)
    error(("ResNet: expected an input [N, %d, H, W], got %s"):format(self.in_channels, got), 2)
  end
  x = self.relu(self.bn1(self.conv1(x)))
  if self.maxpool then x = self.maxpool(x) end
  x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
  x = self.avgpool(x)
  return self.fc(x:flatten(2))
end

local function check_opts(fname, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(("%s: options must be a table (got %s)"):format(fname, type(opts)), 3)
  end
  return opts or {}
end

--- ResNet-18 (11,689,512 parameters with 1000 classes). Options: num_classes (1000),
-- in_channels (3), small_input (false; true: a 3x3 stride-1 stem without max-pool, for
-- 32x32 inputs such as CIFAR), zero_init_residual (false), width (64: the channels of the
-- first stage, doubled at each of the next three), dtype.
-- @usage local net = models.resnet18({num_classes = 10, small_input = true})
function models.resnet18(opts)
  return ResNet(BasicBlock, {2, 2, 2, 2}, check_opts("resnet18", opts))
end

--- ResNet-34 (21,797,672 parameters with 1000 classes); options as resnet18.
function models.resnet34(opts)
  return ResNet(BasicBlock, {3, 4, 6, 3}, check_opts("resnet34", opts))
end

return models
