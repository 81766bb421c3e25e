"""Hopfield Networks is All You Need.
Ramsauer, Schäfl, Lehner, Seidl, Widrich, Adler, Gruber, Holzleitner, Pavlović, Sandve, Greiff, Kreil,
Kopp, Klambauer, Brandstetter, Hochreiter, 2020. arXiv:2008.02217.

A modern Hopfield network with continuous states stores patterns X = (x_1 .. x_N) and pulls a state
xi towards them with the update xi_new = X softmax(beta X^T xi). The update descends the energy
E = -lse(beta, X^T xi) + 1/2 xi^T xi + beta^-1 log N + 1/2 M^2, retrieves a well-separated pattern
after one step and can store exponentially many patterns in the dimension d. Project the state
patterns R and stored patterns Y with W_Q, W_K, W_V and set beta = 1/sqrt(d_k): one update is the
Transformer's attention. The paper turns that into three layers: `Hopfield` (attention with extra
update steps), `HopfieldPooling` (learned queries pool a set, as in multiple-instance learning) and
`HopfieldLayer` (learned stored patterns: an associative lookup table). For contrast, the classical
binary network (Hopfield 1982) and the dense associative memory with F = exp (Demircigil et al. 2017)
that section 2 generalises are here too.

    python train.py hopfield                     # MIL bags with rare witnesses, HopfieldPooling
    python train.py hopfield --compare           # ... and mean / max pooling at equal size
    python train.py hopfield --task retrieval    # capacity table: classical vs dense vs modern

Paper vs this file:
- Sizes: width 32, one head, one update step; the paper's MIL and immune-repertoire models are far
  bigger and tuned per data set. Instances are vectors embedded by a 2-layer MLP, not sequences
  embedded by a 1D CNN (DeepRC).
- The layers follow the authors' hopfield-layers library defaults where the paper leaves them open:
  LayerNorm on stored, state and projection inputs; beta = 1/sqrt(d_k); a free value projection W_V
  and an output projection; learned static patterns initialised N(0, 0.02^2). Extra update steps run
  a fixed `update_steps` times; the library also stops early once the association changes by < 1e-4.
  No dropout on the association matrix (library default 0).
- `retrieve` stops a query once an update moves it by less than `tol` (max-norm); the paper's theory
  bounds the error after one step and does not fix a stopping rule.
- The classical and dense binary networks update asynchronously, one bit at a time in a fixed order
  (sweeps), from the same query as the modern one (masked bits are 0, not random signs).
- The retrieval experiment (the experiment) stores random +-1 patterns, so that the binary networks apply
  too, and uses beta = 1: the layers' 1/sqrt(d) (1/8 at d = 64) is soft enough that iterating the
  update ends in metastable averages once N >= d (measured; see the notes).
- MIL baselines (mean, max pooling) replace the Hopfield projections by a per-instance MLP
  d -> hidden -> d * n_patterns whose hidden width matches HopfieldPooling's parameter count (to half
  a hidden unit, for widths >= 8 and any heads, d_head and number of queries); not from the paper,
  which compares against published methods.
- Precision: any weight dtype (float32, float64, bfloat16) and autocast; the softmax of `update` and
  of the layers, `lse` and `energy` run in float32 at least (float32 islands, see each).
"""
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class HopfieldConfig:
    d_model: int = 32               # width of state and stored patterns (library: input_size)
    n_heads: int = 1                # library default 1
    d_head: Optional[int] = None    # d_k of the associative space; None: d_model // n_heads
    beta: Optional[float] = None    # None: 1/sqrt(d_head) (section 3, as in the Transformer)
    update_steps: int = 1           # library: one update (update_steps_max = 0); more = iterate the update
    n_patterns: int = 1             # learned static patterns (library: quantity = 1)
    normalize: bool = True          # library: LayerNorm on stored, state and projection inputs
    d_instance: int = 16            # MIL: width of one instance
    pooling: str = "hopfield"       # MIL: "hopfield", or the baselines "mean" / "max"

    def __post_init__(self):
        if self.d_head is None and self.d_model % self.n_heads:
            raise ValueError(f"{self.n_heads} heads do not divide width {self.d_model}")
        if self.pooling not in ("hopfield", "mean", "max"):
            raise ValueError(f"unknown pooling {self.pooling!r} (hopfield, mean or max)")
        if self.update_steps < 1:
            raise ValueError(f"need at least one update step, got {self.update_steps}")


# ---------------------------------------------------------------------------------------------
# Section 2: the continuous modern Hopfield network. Batch-first: X [N, d] stored, xi [B, d] states.
# ---------------------------------------------------------------------------------------------

def at_least_float32(t):
    """bf16 / fp16 -> float32; float32 and float64 unchanged."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def lse(beta, z):
    """log-sum-exp at inverse temperature beta over the last axis: beta^-1 log sum_l exp(beta z_l)."""
    return torch.logsumexp(beta * at_least_float32(z), dim=-1) / beta


def energy(xi, X, beta):
    """E(xi) = -lse(beta, X^T xi) + 1/2 xi^T xi + beta^-1 log N + 1/2 M^2 (section 2); returns [B].
    In float32 at least, autocast or not: E is a small difference of terms of size d, which bf16
    (8 significant bits) would round away."""
    with torch.autocast(xi.device.type, enabled=False):
        xi, X = at_least_float32(xi), at_least_float32(X)
        N, M = X.shape[0], X.norm(dim=-1).max()
        return -lse(beta, xi @ X.T) + 0.5 * (xi * xi).sum(-1) + math.log(N) / beta + 0.5 * M ** 2


def update(xi, X, beta):
    """xi_new = X softmax(beta X^T xi) (section 2): one concave-convex step, i.e. one attention step.
    The softmax runs in float32 at least (bf16 keeps 8 bits: its exp of beta X^T xi loses the small
    weights), then the weights take X's dtype for the product."""
    p = torch.softmax(at_least_float32(beta * xi @ X.T), dim=-1)
    return p.to(X.dtype) @ X


def retrieve(xi, X, beta, max_steps=100, tol=1e-4):
    """Iterate the update until every state moves by less than tol. Returns (fixed points, steps [B]):
    steps counts the updates that still moved a state, so a one-step retrieval reports 1."""
    steps = torch.zeros(xi.shape[0], dtype=torch.long, device=xi.device)
    for _ in range(max_steps):
        new = update(xi, X, beta)
        moving = (new - xi).abs().amax(-1) >= tol
        if not moving.any():
            break
        steps += moving.long()
        xi = new
    return xi, steps


# ---------------------------------------------------------------------------------------------
# Background (section 1): binary networks over states in {-1, +1}^d
# ---------------------------------------------------------------------------------------------

def classical_weights(X):
    """Hebbian W = sum_i x_i x_i^T with zero diagonal (Hopfield 1982); stores about 0.14 d patterns."""
    W = X.T @ X
    return W - torch.diag(torch.diag(W))


def classical_retrieve(xi, W, sweeps=10):
    """Asynchronous sign updates xi_l = sgn(W_l xi), one bit at a time; E = -1/2 xi^T W xi descends."""
    xi = xi.clone()
    for _ in range(sweeps):
        before = xi.clone()
        for l in range(xi.shape[1]):
            field = xi @ W[:, l]
            xi[:, l] = torch.where(field >= 0, 1.0, -1.0)
        if torch.equal(before, xi):
            break
    return xi


def dense_retrieve(xi, X, sweeps=10):
    """Dense associative memory with F = exp (Demircigil et al. 2017): E = -sum_i exp(x_i^T xi).
    Each bit takes the sign that gives the lower energy; comparing log-sums avoids overflow."""
    xi = xi.clone()
    for _ in range(sweeps):
        before = xi.clone()
        for l in range(xi.shape[1]):
            rest = xi @ X.T - xi[:, l:l + 1] * X[:, l]           # [B, N] overlaps without bit l
            plus = torch.logsumexp(rest + X[:, l], dim=-1)
            minus = torch.logsumexp(rest - X[:, l], dim=-1)
            xi[:, l] = torch.where(plus >= minus, 1.0, -1.0)
        if torch.equal(before, xi):
            break
    return xi


# ---------------------------------------------------------------------------------------------
# Section 3: the layers
# ---------------------------------------------------------------------------------------------

class Hopfield(nn.Module):
    """Z = softmax(beta R W_Q W_K^T Y^T) Y W_V, then W_O: multi-head attention, with optional extra
    updates of the state in the associative space (the update with X = Y W_K)."""

    def __init__(self, config, d_state=None, d_stored=None, d_out=None):
        super().__init__()
        d_state, d_stored = d_state or config.d_model, d_stored or config.d_model
        self.n_heads = config.n_heads
        self.d_head = config.d_head or config.d_model // config.n_heads
        self.beta = config.beta or 1.0 / math.sqrt(self.d_head)
        self.update_steps = config.update_steps
        inner = self.n_heads * self.d_head
        norm = nn.LayerNorm if config.normalize else (lambda d: nn.Identity())
        self.norm_state, self.norm_stored, self.norm_value = norm(d_state), norm(d_stored), norm(d_stored)
        self.W_Q, self.W_K = nn.Linear(d_state, inner), nn.Linear(d_stored, inner)
        self.W_V, self.W_O = nn.Linear(d_stored, inner), nn.Linear(inner, d_out or config.d_model)

    def split(self, t):  # [B, L, H*d_head] -> [B, H, L, d_head]
        return t.view(t.shape[0], t.shape[1], self.n_heads, -1).transpose(1, 2)

    def forward(self, R, Y, padding=None):
        """R [B, S, d_state] state patterns, Y [B, N, d_stored] stored patterns, padding [B, N] (True:
        ignore). Returns Z [B, S, d_out] and the association (attention) [B, H, S, N]."""
        q = self.split(self.W_Q(self.norm_state(R)))
        k = self.split(self.W_K(self.norm_stored(Y)))
        v = self.split(self.W_V(self.norm_value(Y)))
        for _ in range(self.update_steps):
            logits = self.beta * q @ k.transpose(-1, -2)                   # [B, H, S, N]
            if padding is not None:
                logits = logits.masked_fill(padding[:, None, None, :], float("-inf"))
            # float32 island (float64 kept): the softmax of bf16 logits, with bf16 weights or under
            # autocast, would round the association to 8 bits; the products then run in k's dtype
            attention = torch.softmax(at_least_float32(logits), dim=-1)
            q = attention.to(k.dtype) @ k                                  # the update, in the K space
        Z = (attention.to(v.dtype) @ v).transpose(1, 2).reshape(R.shape[0], R.shape[1], -1)
        return self.W_O(Z), attention


class HopfieldPooling(nn.Module):
    """Learned static state patterns (queries) retrieve from the set: [B, N, d] -> [B, n_patterns*d]."""

    def __init__(self, config, d_in=None, d_out=None):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(config.n_patterns, d_in or config.d_model) * 0.02)
        self.hopfield = Hopfield(config, d_state=d_in, d_stored=d_in, d_out=d_out)

    def forward(self, Y, padding=None):
        R = self.queries.expand(Y.shape[0], -1, -1)
        Z, attention = self.hopfield(R, Y, padding)
        return Z.flatten(1), attention


class HopfieldLayer(nn.Module):
    """Learned static stored patterns, queried by the input: a lookup table [B, S, d] -> [B, S, d_out]."""

    def __init__(self, config, n_stored, d_in=None, d_out=None):
        super().__init__()
        self.stored = nn.Parameter(torch.randn(n_stored, d_in or config.d_model) * 0.02)
        self.hopfield = Hopfield(config, d_state=d_in, d_stored=d_in, d_out=d_out)

    def forward(self, R):
        return self.hopfield(R, self.stored.expand(R.shape[0], -1, -1))


# ---------------------------------------------------------------------------------------------
# The model of the MIL experiment (section 4: DeepRC-like pooling of a bag of instances)
# ---------------------------------------------------------------------------------------------

class MILClassifier(nn.Module):
    """Embed every instance, pool the bag into one vector, classify: bags [B, N, d_instance] -> logit [B]."""

    def __init__(self, config):
        super().__init__()
        d = config.d_model
        self.config = config
        self.embed = nn.Sequential(nn.Linear(config.d_instance, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU())
        if config.pooling == "hopfield":
            self.pool = HopfieldPooling(config)
        else:
            # same parameter count: the projections of HopfieldPooling become a per-instance MLP
            # d -> hidden -> d * n_patterns (as wide as the pooled queries), with
            # 2d (LayerNorm) + hidden (d + 1) + (hidden + 1) d n_patterns parameters
            target = sum(p.numel() for p in HopfieldPooling(config).parameters())
            out = d * config.n_patterns
            hidden = max(1, round((target - 2 * d - out) / (d + 1 + out)))
            self.per_instance = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden), nn.ReLU(),
                                              nn.Linear(hidden, out))
        self.head = nn.Sequential(nn.Linear(d * config.n_patterns, d), nn.ReLU(), nn.Linear(d, 1))

    def forward(self, bags):
        """Returns (logits [B], association [B, N] over instances, or None for mean/max pooling)."""
        h = self.embed(bags)
        if self.config.pooling == "hopfield":
            pooled, attention = self.pool(h)
            return self.head(pooled).squeeze(-1), attention.mean(dim=(1, 2))
        h = self.per_instance(h)
        pooled = h.mean(1) if self.config.pooling == "mean" else h.amax(1)
        return self.head(pooled).squeeze(-1), None
