"""bench/train_torch.py - PyTorch's side of the training figures of `make bench` (issue #3);
bench/train.lua does the same work in lunar. Usage:

    train_torch.py prep FILE     writes the shared start: both models' initial weights, the
                                 data and labels (0-based) and the losses of the first
                                 CHECK_STEPS steps of each model, to FILE (safetensors)
    train_torch.py mlp FILE      MLP 784-256-128-10 training: samples/s, then peak RSS
    train_torch.py lenet FILE    LeNet-5 training: samples/s
    train_torch.py prep_resnet FILE
                                 the same for the ResNet figure: torchvision's ResNet-18
                                 (CIFAR stem: 3x3 conv stride 1, no max-pool; 10 classes)
                                 initial weights, 4 batches of 32 3x32x32 images, labels,
                                 the first RESNET_CHECK_STEPS losses (needs torchvision)
    train_torch.py resnet FILE   that ResNet-18's training: images/s
    train_torch.py infer FILE    MLP forward at batch 1 under no_grad: median us
    train_torch.py profile FILE  MLP training timed by phase, us per step (not in make bench)

Each run prints "name<TAB>value<TAB>unit" lines like bench/ops_torch.py. Threads come from
OMP_NUM_THREADS (bench/run.sh sets it) and are passed to torch.set_num_threads too.
BENCH_TORCH_DEVICE=cuda runs the training modes (mlp, lenet, resnet) on the GPU: model and
batches moved there, torch.cuda.synchronize() before each clock read, figures named
"cuda_..."; BENCH_STEPS sets the timed steps as in train.lua."""
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "fixtures"))
from st import save  # noqa: E402

clock = time.perf_counter
BATCH, NBATCHES, CHECK_STEPS = 64, 16, 5
WARMUP, STEPS, REPEATS = 20, 200, 3  # the figure: median over REPEATS runs of STEPS steps
LR, MOMENTUM = 0.01, 0.9
# the ResNet figure: ~1.5 s a step at 1 thread on the 2-core machine, so a few steps
RESNET = dict(batch=32, nbatches=4, check_steps=3, warmup=1, steps=3)
DEVICE = os.environ.get("BENCH_TORCH_DEVICE") or "cpu"
PREFIX = "" if DEVICE == "cpu" else DEVICE + "_"


def sync():
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def lenet():
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def resnet():
    from torchvision.models import resnet18  # only this figure needs torchvision
    model = resnet18(num_classes=10)
    # the CIFAR stem of lunar's small_input, initialised as torchvision initialises conv1
    model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


SHAPES = {"mlp": (-1, 784), "lenet": (-1, 1, 28, 28), "resnet": (-1, 3, 32, 32)}
MODELS = {"mlp": mlp, "lenet": lenet, "resnet": resnet}


def report(name, value, unit):
    print(f"{name}\t{value:.6g}\t{unit}", flush=True)


def load(path):
    """The safetensors files that st.save writes, read back (float32 and int64 only)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        arr = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dtypes[h["dtype"]])
        out[name] = torch.from_numpy(arr.copy()).reshape(h["shape"])
    return out


def prep_resnet(path):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)
    nb, b = RESNET["nbatches"], RESNET["batch"]
    x = torch.rand(nb, b, 3 * 32 * 32, generator=g)
    y = torch.randint(0, 10, (nb, b), generator=g)
    tensors = {"x": x, "y": y}
    model = resnet()
    for k, v in model.state_dict().items():
        tensors[f"resnet.{k}"] = v.clone()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    xs = [x[k].reshape(SHAPES["resnet"]) for k in range(nb)]
    losses = [train_steps(model, opt, xs, y, 1, i, nb).item()
              for i in range(RESNET["check_steps"])]
    tensors["resnet.losses"] = torch.tensor(losses, dtype=torch.float32)
    save(path, tensors)


def train_steps(model, opt, xs, ys, steps, start=0, nbatches=NBATCHES):
    """Runs `steps` SGD steps over the batches in turn; the last loss (a tensor)."""
    loss = None
    for i in range(start, start + steps):
        k = i % nbatches
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xs[k]), ys[k])
        loss.backward()
        opt.step()
    return loss


def prep(path):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)
    x = torch.rand(NBATCHES, BATCH, 784, generator=g)  # pixel-like values in [0, 1)
    y = torch.randint(0, 10, (NBATCHES, BATCH), generator=g)
    tensors = {"x": x, "y": y}
    for kind in ("mlp", "lenet"):
        model = MODELS[kind]()
        for k, v in model.state_dict().items():
            tensors[f"{kind}.{k}"] = v.clone()
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        xs = [x[k].reshape(SHAPES[kind]) for k in range(NBATCHES)]
        losses = []
        for i in range(CHECK_STEPS):
            losses.append(train_steps(model, opt, xs, y, 1, i).item())
        tensors[f"{kind}.losses"] = torch.tensor(losses, dtype=torch.float32)
    save(path, tensors)


def model_from(kind, data):
    model = MODELS[kind]()
    prefix = kind + "."
    sd = {k[len(prefix):]: v for k, v in data.items()
          if k.startswith(prefix) and k != prefix + "losses"}
    model.load_state_dict(sd)
    return model


def bench_train(kind, data):
    batch, nb, warmup, steps = BATCH, NBATCHES, WARMUP, STEPS
    if kind == "resnet":
        batch, nb, warmup, steps = (RESNET[k] for k in ("batch", "nbatches", "warmup", "steps"))
    steps = int(os.environ.get("BENCH_STEPS") or steps)
    model = model_from(kind, data).to(DEVICE)
    xs = [data["x"][k].reshape(SHAPES[kind]).to(DEVICE) for k in range(nb)]
    ys = data["y"].to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    train_steps(model, opt, xs, ys, warmup, 0, nb)
    rates = []
    for _ in range(REPEATS):
        sync()
        t0 = clock()
        loss = train_steps(model, opt, xs, ys, steps, 0, nb)
        loss.item()  # the last step is done
        sync()
        rates.append(steps * batch / (clock() - t0))
    assert loss.item() == loss.item() and loss.item() < 10, "training diverged"
    report(f"{PREFIX}{kind}_train_sps", statistics.median(rates), "samples/s")


def bench_infer(data):
    model = model_from("mlp", data).eval()
    x = data["x"][0][:1].reshape(1, 784)
    block, blocks = 100, 30
    with torch.no_grad():
        ref = model(x)
        for _ in range(1000):
            model(x)
        ts = []
        for _ in range(blocks):
            t0 = clock()
            for _ in range(block):
                out = model(x)
            ts.append((clock() - t0) / block)
    assert torch.equal(out, ref)
    report("mlp_infer_us", statistics.median(ts) * 1e6, "us")


def profile(data):
    """bench/train.lua's profile mode: the time of each phase of an MLP step."""
    model = model_from("mlp", data)
    xs = [data["x"][k].reshape(SHAPES["mlp"]) for k in range(NBATCHES)]
    ys = data["y"]
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    train_steps(model, opt, xs, ys, WARMUP)
    names = ["zero_grad", "forward", "loss", "backward", "step"]
    acc = dict.fromkeys(names, 0.0)
    t_all = clock()
    for i in range(STEPS):
        k = i % NBATCHES
        t0 = clock()
        opt.zero_grad()
        t1 = clock()
        logits = model(xs[k])
        t2 = clock()
        loss = nn.functional.cross_entropy(logits, ys[k])
        t3 = clock()
        loss.backward()
        t4 = clock()
        opt.step()
        t5 = clock()
        for n, a, b in zip(names, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
            acc[n] += b - a
    total = clock() - t_all
    for n in names:
        report(f"profile_{n}_us", acc[n] / STEPS * 1e6, "us/step")
    report("profile_total_us", total / STEPS * 1e6, "us/step")


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "prep":
        prep(path)
        return
    if mode == "prep_resnet":
        prep_resnet(path)
        return
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    data = load(path)
    if mode == "infer":
        bench_infer(data)
    elif mode == "profile":
        profile(data)
    else:
        bench_train(mode, data)
    if mode == "mlp":
        report("threads", torch.get_num_threads(), "threads")
        report("mlp_train_rss_mb", peak_rss_mb(), "MB")


main()
