"""Ours against the authors' public code, run locally, on one small problem: square
task y = x², N = 200, a (2, 8) ReLU net, float64, 50 epochs. Not part of the package.

The public code is not in this repository. Put it in a folder FOLDER first:
  dl_common.py   = MLP/pytorch_version/dlADMM/common.py of xianggebenben/dlADMM
  bcd_public.py  = the function cells (updateV, updateWb, relu_prox) of
                   bcd_dnn_mlp_mnist.ipynb of timlautk/BCD-for-DNNs-PyTorch, after
                   "import numpy as np, torch, torch.nn as nn; device = torch.device('cpu')"
then: OMP_NUM_THREADS=1 python results/gradient_free/compare_public_code.py FOLDER
"""

import sys

import numpy as np
import torch

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else "/tmp/refcmp")
import bcd_public as bp
import dl_common as dl

from admmlab.nets import init_weights
from admmlab.solvers import bcd, dladmm

torch.set_default_dtype(torch.float64)
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (200, 1))
y = x**2
w0 = init_weights("msra", [1, 8, 8, 1], generator=torch.Generator().manual_seed(0))
X, Y = torch.as_tensor(x).T, torch.as_tensor(y).T
EPOCHS = 50


def report(name, ours, theirs):
    """Training MSE after 1, 10 and 50 epochs, and the largest relative gap."""
    theirs = np.asarray(theirs)
    at = [0, 9, -1]
    gap = (np.abs(ours - theirs) / theirs).max()
    print(f"{name}: train MSE after 1/10/50 epochs: ours {ours[at]}, public {theirs[at]}")
    print(f"{name}: largest relative gap over {EPOCHS} epochs {gap:.2e}")


def mse(Ws, bs):
    a = X
    for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        z = W @ a + b
        a = z if i == len(Ws) - 1 else torch.relu(z)
    return float(((a - Y) ** 2).mean())


# ---------------- dlADMM: the public update functions, our square-loss z_{L+1}
rho, theta, tau = 1.0, 1.0, 1.0
W = [None] + [w[:, :-1].clone() for w in w0]
b = [None] + [w[:, -1:].clone() for w in w0]
n = 3
a = [X, None, None]
z = [None] * 4
for i in range(1, n + 1):
    z[i] = W[i] @ a[i - 1] + b[i]
    if i < n:
        a[i] = torch.relu(z[i])
u = torch.zeros_like(z[n])


def zl():
    return (Y + rho * (W[n] @ a[n - 1] + b[n]) - u) / (1 + rho)


theirs = []
for _ in range(EPOCHS):
    z[3] = zl()
    b[3] = dl.update_b(a[2], W[3], z[3], b[3], u, rho)
    W[3] = dl.update_W(a[2], b[3], z[3], W[3], u, rho, theta)
    a[2] = dl.update_a(W[3], b[3], z[3], z[2], a[2], u, 0, rho, tau)
    z[2] = dl.update_z(a[1], W[2], b[2], a[2], 0, 0, rho)
    b[2] = dl.update_b(a[1], W[2], z[2], b[2], 0, rho)
    W[2] = dl.update_W(a[1], b[2], z[2], W[2], 0, rho, theta)
    a[1] = dl.update_a(W[2], b[2], z[2], z[1], a[1], 0, 0, rho, tau)
    z[1] = dl.update_z(X, W[1], b[1], a[1], 0, 0, rho)
    b[1] = dl.update_b(X, W[1], z[1], b[1], 0, rho)
    W[1] = dl.update_W(X, b[1], z[1], W[1], 0, rho, theta)
    W[1] = dl.update_W(X, b[1], z[1], W[1], 0, rho, theta)
    b[1] = dl.update_b(X, W[1], z[1], b[1], 0, rho)
    z[1] = dl.update_z(X, W[1], b[1], a[1], 0, 0, rho)
    a[1] = dl.update_a(W[2], b[2], z[2], z[1], a[1], 0, 0, rho, tau)
    W[2] = dl.update_W(a[1], b[2], z[2], W[2], 0, rho, theta)
    b[2] = dl.update_b(a[1], W[2], z[2], b[2], 0, rho)
    z[2] = dl.update_z(a[1], W[2], b[2], a[2], 0, 0, rho)
    a[2] = dl.update_a(W[3], b[3], z[3], z[2], a[2], u, 0, rho, tau)
    W[3] = dl.update_W(a[2], b[3], z[3], W[3], u, rho, theta)
    b[3] = dl.update_b(a[2], W[3], z[3], b[3], u, rho)
    z[3] = zl()
    u = u + rho * (z[3] - W[3] @ a[2] - b[3])
    theirs.append(mse(W[1:], b[1:]))
ours = (
    dladmm.fit(x, y, w0, rho=rho, nu=rho, theta=theta, tau=tau, epochs=EPOCHS)
    .history["train_mse"]
    .numpy()
)
rel = np.abs(ours - np.array(theirs)) / np.array(theirs)
report("dlADMM", ours, theirs)

# ---------------- BCD: the public notebook's update functions, gamma = rho = 1, alpha = 5
g, r, al = 1.0, 1.0, 5.0
W = [None] + [w[:, :-1].clone() for w in w0]
b = [None] + [w[:, -1:].clone() for w in w0]
N = X.shape[1]
U = [None] * 4
V = [X, None, None, None]
for i in range(1, 4):
    U[i] = W[i] @ V[i - 1] + b[i]
    V[i] = U[i] if i == 3 else torch.relu(U[i])
bp.torch.set_default_dtype(torch.float64)
theirs = []
for _ in range(EPOCHS):
    V[3] = (Y + g * U[3] + al * V[3]) / (1 + g + al)
    U[3] = (g * V[3] + r * (W[3] @ V[2] + b[3])) / (g + r)
    W[3], b[3] = bp.updateWb(U[3], V[2], W[3], b[3], al, r)
    for i in (2, 1):
        V[i] = bp.updateV(U[i], U[i + 1], W[i + 1], b[i + 1], r, g)
        U[i] = bp.relu_prox(
            V[i],
            (r * (W[i] @ V[i - 1] + b[i]) + al * U[i]) / (r + al),
            (r + al) / g,
            U[i].shape[0],
            N,
        )
        W[i], b[i] = bp.updateWb(U[i], V[i - 1], W[i], b[i], al, r)
    theirs.append(mse(W[1:], b[1:]))
ours = (
    bcd.fit(x, y, w0, gamma=g, rho=r, alpha=al, lam=0.0, epochs=EPOCHS).history["train_mse"].numpy()
)
rel = np.abs(ours - np.array(theirs)) / np.array(theirs)
report("BCD", ours, theirs)


# ---------------- the same, with the public W, b step replaced by the joint minimiser
def joint_Wb(Uc, Vp, Wc, bc, alpha, rho):
    A = torch.cat([Vp, torch.ones(1, Vp.shape[1])])
    Wb = torch.cat([Wc, bc], dim=1)
    new = torch.linalg.solve(
        (alpha * torch.eye(A.shape[0]) + rho * A @ A.T).T, (alpha * Wb + rho * Uc @ A.T).T
    ).T
    return new[:, :-1], new[:, -1:]


bp.updateWb = joint_Wb
W = [None] + [w[:, :-1].clone() for w in w0]
b = [None] + [w[:, -1:].clone() for w in w0]
for i in range(1, 4):
    U[i] = W[i] @ V[i - 1] + b[i] if i > 1 else W[1] @ X + b[1]
V = [X, None, None, None]
for i in range(1, 4):
    U[i] = W[i] @ V[i - 1] + b[i]
    V[i] = U[i] if i == 3 else torch.relu(U[i])
theirs = []
for _ in range(EPOCHS):
    V[3] = (Y + g * U[3] + al * V[3]) / (1 + g + al)
    U[3] = (g * V[3] + r * (W[3] @ V[2] + b[3])) / (g + r)
    W[3], b[3] = bp.updateWb(U[3], V[2], W[3], b[3], al, r)
    for i in (2, 1):
        V[i] = bp.updateV(U[i], U[i + 1], W[i + 1], b[i + 1], r, g)
        U[i] = bp.relu_prox(
            V[i],
            (r * (W[i] @ V[i - 1] + b[i]) + al * U[i]) / (r + al),
            (r + al) / g,
            U[i].shape[0],
            N,
        )
        W[i], b[i] = bp.updateWb(U[i], V[i - 1], W[i], b[i], al, r)
    theirs.append(mse(W[1:], b[1:]))
rel = np.abs(ours - np.array(theirs)) / np.array(theirs)
print(f"BCD, public code with a joint (W, b) step: max rel diff over 50 epochs {rel.max():.2e}")
