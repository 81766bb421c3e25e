"""Contextual Position Encoding: Learning to Count What's Important.
Golovneva, Wang, Weston, Sukhbaatar (Meta FAIR), 2024. arXiv:2405.18719.

Token positions count tokens, so attention cannot address "the 3rd sentence" or "the last `x ++;`"
without first working out where those lie. CoPE lets each head decide what to count: a gate
g_ij = sigmoid(q_i . k_j) says whether key j counts for query i, and the position of j seen from i
is the number of counted tokens between them, p_ij = sum_{k=j..i} g_ik. Positions are fractional, so
the learned position embeddings e[p] are interpolated between e[floor p] and e[ceil p], and the
position logit q_i . e[p_ij] is added to the attention logit (section 3). With every gate at 1,
p_ij = i - j + 1 and CoPE is relative position encoding. The baselines of the paper's tables are
in this file too, selected by `CoPEConfig.pos`, so that they share the model, its size and training.

    python train.py cope             # counting task: CoPE, error in distribution and on longer programs
    python train.py cope --compare   # CoPE vs absolute PE vs RoPE over 3 seeds, with the paper's numbers

Paper vs this file:
- Size: 2 layers, width 64, 4 heads (paper: 4 layers, width 256, 4 heads), so it trains on a CPU.
- Pre-norm blocks and no dropout (the authors' counting runs: post-norm, dropout 0.1); pre-norm
  trains more reliably at high learning rates and in few steps.
- Logit order follows the paper's code snippet: gates are sigmoid of the scaled, masked attention
  logits and the (unscaled) position logits are added to them. The authors' repository instead
  takes sigmoid(q.k / sqrt(d)), adds q.e[p] to the raw q.k and divides the sum by sqrt(d).
- npos_max is a setting (default 64, the experiment's --npos-max); the authors' code uses block size + 1.
  Positions beyond npos_max - 1 are clamped, as in the paper.
- Relative PE is the CoPE table indexed by i - j + 1 (CoPE with every gate at 1), one table per
  layer shared by its heads; the paper's relative baseline has a vector per distance in the same
  way but its exact implementation differs in detail (padding beyond npos_max).
- RoPE uses the usual rotate-half pairing and base 10000 (the paper does not give its variant).
- Precision: any weight dtype (float32, float64, bfloat16) and autocast. The gates, positions, the
  interpolation and the softmax run in at least float32 (`wide`): a bf16 sum of hundreds of gates
  would lose the integer part of a position.
- Init: weights N(0, 0.02) as in GPT-2 (not stated in the paper); the CoPE table at zero as in
  the authors' code; embeddings tied as in their runs.
- Training (the experiment): fresh programs every step, batch 32, AdamW lr 1e-3 with warmup and cosine
  decay, at most 1500 steps, one variable by default (Table 3's first column; `--vars 3` for its second)
  (authors: 10k fixed programs, batch 64, lr 7e-5, 100 epochs). Programs have
  3-32 statements (paper: 3-512) so that a CPU can train on them; the out-of-distribution test
  uses 33-64 statements. Loss on the answer only, as in the paper.
- Flip-flop (32 instructions, ignore 0.8 / dense 0.1 / sparse 0.98) and selective copy (8 tokens
  among 16 blanks, dense 8, sparse 32) are scaled down; the paper's sizes are larger.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

POSITION_ENCODINGS = ("cope", "abs", "rel", "rope", "none")


@dataclass
class CoPEConfig:
    vocab_size: int = 32
    block_size: int = 128      # longest sequence; the size of the absolute position table
    n_layer: int = 2           # paper (counting): 4
    n_head: int = 4            # paper: 4
    d_model: int = 64          # paper: 256
    d_ff: int = 256            # 4 x d_model
    npos_max: int = 64         # CoPE / relative table size; authors' code: block size + 1
    pos: str = "cope"          # cope | abs | rel | rope | none
    dropout: float = 0.0       # authors' counting runs: 0.1
    rope_base: float = 10000.0

    def __post_init__(self):
        if self.pos not in POSITION_ENCODINGS:
            raise ValueError(f"pos must be one of {POSITION_ENCODINGS}, got {self.pos!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")
        if self.pos == "rope" and (self.d_model // self.n_head) % 2:
            raise ValueError("RoPE needs an even head dimension")
        if self.npos_max < 2:
            raise ValueError(f"npos_max must be at least 2, got {self.npos_max}")


def wide(x):
    """x in at least float32 (float64 stays float64): the dtype of the numerically delicate steps."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class SuffixSum(torch.autograd.Function):
    """s_j = sum_{k>=j} x_k along the last axis, as the row total minus the sum before j, clamped in
    place to [0, top] when a top is given. Its gradient is the prefix sum of the incoming one (a suffix
    sum's transpose), written out: autograd's derivative of the same expression takes a flip, a cumsum,
    a flip, a negation and two additions over [T, T] where one cumsum does. The clamp passes the
    gradient through: at the top the interpolation's slope s[top] = 0 stops it anyway (the same
    gradient as clamp's), and below 0 it only cuts rounding noise off a sum of gates >= 0, where the
    paper's p has this gradient (clamp's would be 0); the three [T, T] masks of clamp's backward go."""

    @staticmethod
    def forward(ctx, x, top=None):
        s = x.cumsum(-1).neg_().add_(x.sum(-1, keepdim=True)).add_(x)  # in place: one [T, T] tensor
        return s if top is None else s.clamp_(0, top)

    @staticmethod
    def backward(ctx, grad):
        return grad.cumsum(-1), None


class Interpolate(torch.autograd.Function):
    """(positions, slope s [.., T, npos], offset o [.., T, npos]) -> p s[f] + o[f], f = floor p, with
    the backward written out: the gradients of the two tables are sums over the keys j that read row
    n of them, sum_j [f_ij = n] g_ij p_ij and sum_j [f_ij = n] g_ij. One scatter_add adds both, as the
    real and imaginary parts of complex numbers: autograd's two gathers scatter twice, and a scatter
    along a row whose f falls step by step is slow (each add waits for the last at the same place)."""

    @staticmethod
    def forward(ctx, positions, slope, offset):
        floor = positions.long()                              # p >= 0, so truncation is the floor
        floor = floor.expand(*slope.shape[:-1], floor.shape[-1])  # rel passes one [T, T] for all; a view
        slope_f = slope.gather(-1, floor)
        ctx.save_for_backward(positions, floor, slope_f)
        ctx.npos = slope.shape[-1]
        return torch.addcmul(offset.gather(-1, floor), positions, slope_f)

    @staticmethod
    def backward(ctx, grad):
        positions, floor, slope_f = ctx.saved_tensors
        both = torch.complex(grad * positions, grad)
        tables = both.new_zeros(*floor.shape[:-1], ctx.npos).scatter_add_(-1, floor, both)
        grad_positions = (grad * slope_f).sum_to_size(positions.shape) if ctx.needs_input_grad[0] else None
        return grad_positions, tables.real, tables.imag


class CoPE(nn.Module):
    """Contextual position logits for one layer (section 3); the table is shared by its heads,
    as in the authors' code, and zero-initialised, so training starts without position logits."""

    def __init__(self, npos_max, head_dim):
        super().__init__()
        self.npos_max = npos_max
        self.pos_emb = nn.Parameter(torch.zeros(1, head_dim, npos_max))  # e[0..npos_max-1] as columns

    def gates(self, attn_logits):
        # g_ij = sigmoid(q_i . k_j); a masked (future) logit is -inf, so its gate is exactly 0.
        # float32 even in bf16: the positions add up hundreds of gates (see positions)
        return torch.sigmoid(wide(attn_logits))

    def positions(self, gates):
        """p_ij = sum_{k=j..i} g_ik: a sum from the right along the keys (masked gates are 0, so
        summing to the end of the row is summing to i), clamped to p_max. float32, because a bf16
        sum of hundreds of gates loses their integer part."""
        return SuffixSum.apply(wide(gates), self.npos_max - 1)  # min 0 too: rounding noise

    def interpolate(self, query, positions):
        """q_i . e[p_ij] for fractional p (section 3), in the cheapest order: the logits l[n] = q_i . e[n]
        of every integer position in one matmul, [.., T, npos], then one gather per pair; never
        [T, T, d]. The interpolation l[f] + (p - f) (l[f + 1] - l[f]), f = floor p, is regrouped as
        (l[f] - f s[f]) + p s[f] with the slope s[n] = l[n + 1] - l[n], so that one index f serves
        both gathers and p enters linearly (its gradient is s[f], as for the lerp)."""
        T = positions.shape[-1]
        npos = min(self.npos_max, T + 1)      # p_ij <= i - j + 1 <= T: larger rows are never read
        # float32: in bf16, l[n] - n s[n] (n up to npos_max) would cancel away the fraction
        logits_int = wide(torch.matmul(query, self.pos_emb[..., :npos].to(query.dtype)))  # [.., T, npos]
        slope = F.pad(logits_int.diff(dim=-1), (0, 1))   # s[top] = 0: p clamped at the top reads l[top]
        offset = logits_int - torch.arange(npos, device=query.device) * slope  # l[n] - n s[n]
        return Interpolate.apply(positions, slope, offset)

    def forward(self, query, attn_logits):
        """query [.., T, head_dim], masked attention logits [.., T, T] -> position logits [.., T, T]."""
        return self.interpolate(query, self.positions(self.gates(attn_logits)))


def relative_positions(T, npos_max, device=None):
    """i - j + 1 for j <= i and 0 for future keys: CoPE's positions when every gate is 1."""
    i = torch.arange(T, device=device)
    return (i[:, None] - i[None, :] + 1).clamp(0, npos_max - 1).float()


def rope_rotate(x, base=10000.0):
    """Rotary position embedding on x [.., T, d] (Su et al. 2021), rotate-half pairing:
    dimension k is paired with k + d/2 and rotated by angle t * base^(-2k/d) at position t."""
    T, d, dtype = x.shape[-2], x.shape[-1], torch.promote_types(x.dtype, torch.float32)
    inv_freq = base ** (-torch.arange(0, d // 2, device=x.device, dtype=dtype) * 2 / d)
    angles = torch.arange(T, device=x.device, dtype=dtype)[:, None] * inv_freq  # [T, d/2], float32+
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)
    first, second = x[..., : d // 2], x[..., d // 2:]
    return (x * cos + torch.cat([-second, first], dim=-1) * sin).to(x.dtype)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with CoPE or one of the baselines inside the logits."""

    def __init__(self, config):
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.d_model // config.n_head
        self.pos, self.rope_base = config.pos, config.rope_base
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        # CoPE and relative PE share the table; only the positions it is read at differ
        self.cope = CoPE(config.npos_max, self.head_dim) if config.pos in ("cope", "rel") else None
        self.record = False   # when True, keep the last gates and attention weights for pictures
        self.last_gates = self.last_attention = None

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.pos == "rope":
            q, k = rope_rotate(q, self.rope_base), rope_rotate(k, self.rope_base)
        logits = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)   # q.k / sqrt(d), scaling T d, not T^2
        # the causal mask: -inf added to the future logits, 0 to the rest. Exactly masked_fill's
        # values, but its backward passes the gradient as it is (0 at masked logits: their softmax
        # weights and gates are 0) where masked_fill's would take another pass over [B, H, T, T]
        future = torch.full((T, T), float("-inf"), dtype=logits.dtype, device=x.device).triu(1)
        logits = logits.add_(future)                                     # [B, H, T, T], in place
        if self.pos == "cope":
            gates = self.cope.gates(logits)
            # added in place to the (float32) position logits; sigmoid kept its output, not its input
            logits = self.cope.interpolate(q, self.cope.positions(gates)).add_(logits)
            if self.record:
                self.last_gates = gates.detach()
        elif self.pos == "rel":
            relative = relative_positions(T, self.cope.npos_max, x.device)
            logits = self.cope.interpolate(q, relative).add_(logits)
        attention = F.softmax(wide(logits), dim=-1)     # float32 in bf16 too
        if self.record:
            self.last_attention = attention.detach()
        out = self.dropout(attention).to(v.dtype) @ v                      # [B, H, T, head_dim]
        return self.proj(out.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, config.d_ff), nn.GELU(),
                                 nn.Linear(config.d_ff, config.d_model), nn.Dropout(config.dropout))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CoPETransformer(nn.Module):
    """A small decoder-only Transformer; `config.pos` picks the position encoding."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        # absolute PE is added to the input embeddings; every other kind lives inside attention
        self.pos_emb = nn.Embedding(config.block_size, config.d_model) if config.pos == "abs" else None
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight   # tied, as in the authors' runs (--emb-tie)
        self.apply(self._init)

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx):
        """idx [B, T] -> next-token logits [B, T, vocab]."""
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.config.block_size}")
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def record(self, on=True):
        for block in self.blocks:
            block.attn.record = on

    def gates(self):
        """After a forward pass with record(True): the gates of every layer, [n_layer, B, H, T, T]."""
        return torch.stack([block.attn.last_gates for block in self.blocks])
