"""Multi-Token Attention. Golovneva, Wang, Weston, Sukhbaatar, 2025 (arXiv 2504.00927).

A standard attention weight depends on one query and one key: softmax(q_i . k_j / sqrt(d)). To
find "the block that holds both g and a", a query would have to pack both letters into one vector
and every key the whole block around it. MTA lets a weight depend on several tokens at once by
convolving each head's attention map over neighbouring queries and keys (the key-query
convolution, section 3.1), by mixing the maps of groups of heads (head mixing, section 3.2), and
normalises each head's output before the output projection (section 3.3). The kernels start as
identities, so an untrained MTA layer attends exactly as standard attention does.

    python train.py mta              # the letter-block toy task of section 4.1
    python train.py mta --compare    # standard attention vs MTA, 3 seeds each

Expect (measured; 2 blocks, seeds 0-5): MTA reaches 1% sequence error in 1500-2400 steps on five seeds
(2.5% on one). In 2500 steps standard attention copies the block but misses the look-up 11-40% of the
time on three, learns neither on two, finds the block on one; given 8000 steps it finds it too.

Paper vs this file:
- Sizes (toy task): 2 layers, width 64, 2 heads, SwiGLU hidden 176 (8/3 width rounded up to 16;
  official: to 256); paper 4 layers, 256 wide, 2 heads. RoPE theta 100000 (official toy config),
  pre-norm RMSNorm blocks, tied embeddings. The experiment's default also shortens the sequences
  (2 blocks, not 52: MTA is solved there in half a minute on a CPU; README has 4 and 8 blocks).
- Training (the experiment): AdamW, betas (0.9, 0.98), no weight decay, batch 64 as the paper, but lr
  3e-3, 100 warmup steps, a cosine to 0.3e-3 over 2500 steps (paper: 1e-4 constant after 1000 warmup
  steps, 100k steps), fresh generated sequences every step (paper: 1M fixed ones).
- Dropout 0 (paper's toy config: 0.1), a detail of the baseline Transformer, not of MTA. The init is
  the official code's, but the gate's bias starts at 0 (official: PyTorch's default).
- Causality of the key-query convolution: eq. (3) writes the indicator 1[i >= j - j'], but the
  paper's practical form Softmax(Mask_-inf(Conv(Mask_0(A)))) (and the official code) zeroes every
  logit whose key lies after its own query before convolving. We implement the practical form, so
  the convolution never mixes in a logit that standard causal attention would not compute.
- Head mixing is a grouped 1x1 convolution over the head axis (the official code uses a matmul or
  a Linear over all heads; same arithmetic). Pre- and post-softmax variants are both available.
- mta_layers: the layers (counted from 0) with the key-query convolution, [] = all (the toy task).
  Head mixing and head normalisation, when on, act in every layer, as in the official code.
- Head normalisation: "depth" = RMSNorm per head scaled by (1 - lambda_init), lambda_init = 0.8 -
  0.6 exp(-0.3 (l - 1)) with l counted from 1 (the official code's layer_id from 0) (first version);
  "gate" = RMSNorm per head then a sigmoid gate sigma(Linear(d_head -> 1)) (the released LM
  configs use both RMSNorm and the gate). Off by default: the official toy-task config uses none.
- Even c_k is allowed (the key window is then j - c_k/2 + 1 .. j + c_k/2, as eq. (3)'s bounds say);
  the official code requires odd c_k.
- Any float dtype: float32, float64, bfloat16 weights or autocast. RoPE's rotation, RMSNorm's mean
  of squares and the softmax run in float32 islands (float64 stays float64), as the official code.
- No KV cache or generation: the toy task is scored teacher-forced (for "every letter right", the same
  as greedy decoding).
"""
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class MTAConfig:
    vocab_size: int = 28           # a-z, '.', '#'
    max_len: int = 512             # longest sequence the RoPE tables cover
    n_layers: int = 2              # paper toy: 4
    d_model: int = 64              # paper toy: 256
    n_heads: int = 2               # paper toy: 2
    d_ff: int = 0                  # SwiGLU hidden width; 0 = 8/3 d_model rounded up to 16 (as LLaMA)
    rope_theta: float = 100_000.0  # official toy config
    dropout: float = 0.0           # paper toy: 0.1
    # --- MTA. mta=False gives the standard-attention baseline with the same everything else.
    mta: bool = True
    mta_layers: list = field(default_factory=list)  # layers (from 0) with the key-query conv; [] = all (toy)
    kq_conv: str = "pre"           # "pre" (paper's main, toy), "post" or "" (off)
    c_q: int = 2                   # query kernel size (toy 2; LM 6)
    c_k: int = 9                   # key kernel size (toy 9; LM 11)
    head_mix: str = ""             # "pre", "post" or "" (off; the toy task uses none)
    c_h: int = 2                   # heads per mixing group
    head_norm: str = ""            # "depth", "gate" or "" (off; the toy task uses none)

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("RoPE needs an even head width (d_model / n_heads)")
        if {self.kq_conv, self.head_mix} - {"pre", "post", ""} or self.head_norm not in ("depth", "gate", ""):
            raise ValueError("kq_conv and head_mix must be 'pre', 'post' or ''; head_norm 'depth', 'gate' or ''")
        if self.c_q < 1 or self.c_k < 1:
            raise ValueError("c_q and c_k must be at least 1")
        if not all(isinstance(l, int) and 0 <= l < self.n_layers for l in self.mta_layers):
            raise ValueError(f"mta_layers {self.mta_layers}: layer indices must be in 0 .. {self.n_layers - 1}")
        if self.mta and self.head_mix and self.n_heads % self.c_h:
            raise ValueError(f"n_heads {self.n_heads} is not divisible by c_h {self.c_h}")
        if not self.d_ff:
            self.d_ff = 16 * math.ceil(8 * self.d_model / 3 / 16)


# ---------------------------------------------------------------------------------------------
# The two MTA operations on attention maps [B, H, T, T]
# ---------------------------------------------------------------------------------------------

def key_query_conv(logits, kernel, c_q, c_k):
    """Section 3.1, eq. (3) in its practical form Mask_0(Conv2d_theta(Mask_0(logits))).

    logits [B, H, T, T] (query i, key j); kernel [H, c_q, c_k] with kernel[h, i', j' + c_k // 2]
    = theta_{i', j'}: i' = 0 .. c_q - 1 steps back over queries (0 = the current one), j' =
    -floor(c_k/2) .. ceil(c_k/2) - 1 over keys. out[i, j] = sum theta_{i',j'} logits[i - i', j - j'],
    entries outside the map or after their query counting as 0. Returns [B, H, T, T], zero above
    the diagonal (the caller puts -inf there before a softmax).
    """
    if logits.device.type == "cpu":  # the same sums, with a backward 2x faster there
        return KeyQueryConv.apply(logits, kernel, c_q, c_k)
    return key_query_conv_channels_last(logits, kernel, c_q, c_k)


def key_query_conv_channels_last(logits, kernel, c_q, c_k):
    """key_query_conv with heads innermost (cuDNN's depthwise kernel is 2x faster so at T = 2048)."""
    x = logits.tril().contiguous(memory_format=torch.channels_last)  # Mask_0: no future leaks into the past
    out = F.conv2d(x, kernel.flip(1, 2).unsqueeze(1), padding=(c_q - 1, c_k // 2), groups=logits.size(1))
    return crop(out, logits.size(-1), c_k).tril()


def crop(out, T, c_k):
    """conv2d (a cross-correlation: theta comes flipped, one kernel per head) pads both sides alike
    by the window's larger reach, c_q - 1 queries back and floor(c_k/2) keys right (ceil(c_k/2) - 1
    left), without copying the map; this crops what the other sides add."""
    start = c_k // 2 - (math.ceil(c_k / 2) - 1)  # 1 for an even c_k, else 0
    return out[..., :T, start:start + T]


class KeyQueryConv(torch.autograd.Function):
    """key_query_conv on a CPU, the backward written out: the B x H maps as the channels of one image
    (oneDNN's depthwise conv is 9x slower on B images, as fast on channels_last maps but for their
    copies); both gradients are convolutions, theta's (g as the kernel) 1.5-3x faster than oneDNN's."""

    @staticmethod
    def forward(ctx, logits, kernel, c_q, c_k):
        B, H, T, _ = logits.shape
        x = logits.reshape(1, B * H, T, T).clone().tril_()  # Mask_0 (3x faster than tril())
        weight = kernel.flip(1, 2).unsqueeze(1).repeat(B, 1, 1, 1).to(logits.dtype)  # [B*H, 1, c_q, c_k]
        out = F.conv2d(x, weight, padding=(c_q - 1, c_k // 2), groups=B * H)
        ctx.save_for_backward(x, weight)
        ctx.sizes, ctx.out_shape, ctx.kernel_dtype = (B, H, T, c_q, c_k), out.shape, kernel.dtype
        return crop(out.view(B, H, *out.shape[-2:]), T, c_k).contiguous().tril_()  # Mask_0

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        B, H, T, c_q, c_k = ctx.sizes
        g = x.new_zeros(ctx.out_shape)  # the cropped rows and columns had no gradient
        torch.mul(grad.view(1, B * H, T, T), x.new_ones(T, T).tril(), out=crop(g, T, c_k))  # Mask_0
        # g convolved with the kernel turned by 180 degrees; x padded as in forward, g as the kernel
        grad_x = F.conv2d(g, weight.flip(2, 3), padding=(0, math.ceil(c_k / 2) - 1), groups=B * H).tril_()
        grad_w = F.conv2d(x, g.view(B * H, 1, *g.shape[-2:]), padding=(c_q - 1, c_k // 2), groups=B * H)
        grad_kernel = grad_w.view(B, H, c_q, c_k).sum(0).flip(1, 2).to(ctx.kernel_dtype)
        return grad_x.view(B, H, T, T), grad_kernel, None, None


def head_mix(maps, weights, c_h):
    """Section 3.2: heads in groups of c_h; within group g, new map a = sum_b weights[g, a, b] map b.

    maps [B, H, T, T]; weights [H / c_h, c_h, c_h]. A grouped 1x1 convolution over the head axis,
    so heads of different groups never mix.
    """
    H = maps.size(1)
    return F.conv2d(maps, weights.reshape(H, c_h, 1, 1), groups=H // c_h)


# ---------------------------------------------------------------------------------------------
# The model: RoPE, the attention layer, a pre-norm decoder-only Transformer
# ---------------------------------------------------------------------------------------------

def at_least_float32(dtype):
    """The dtype of a float32 island: float32 for bfloat16 / float16 / float32, float64 stays."""
    return torch.promote_types(dtype, torch.float32)


def rope_tables(T, d_head, theta, device, dtype=torch.float32):
    """cos, sin [T, d_head / 2] of rotary position embeddings (Su et al. 2021), in dtype (float32 or
    float64: past position 256 a bf16 angle is off by up to a radian)."""
    inv_freq = theta ** (-torch.arange(0, d_head, 2, device=device, dtype=dtype) / d_head)
    angles = torch.arange(T, device=device, dtype=dtype)[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    """Rotate pairs (x_2m, x_2m+1) of x [B, H, T, d_head] by position-dependent angles. The rotation
    runs in the tables' dtype (a float32 island for bf16 x) and returns x's dtype."""
    x1, x2 = x[..., 0::2].to(cos.dtype), x[..., 1::2].to(cos.dtype)
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):  # the mean of squares in a float32 island (as the official code), then x's dtype
        y = x.to(at_least_float32(x.dtype))
        return (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class MultiTokenAttention(nn.Module):
    """Causal multi-head attention with MTA's key-query conv, head mixing and head normalisation.

    forward(x [B, T, C]) -> [B, T, C]. With keep_maps = True the last call leaves `maps_before`
    (softmax of the plain logits) and `maps_after` (the weights actually used), both [B, H, T, T].
    """

    def __init__(self, config, layer_index=0, use_kq_conv=True):
        super().__init__()
        self.config, self.layer_index = config, layer_index
        self.n_heads, self.d_head = config.n_heads, config.d_model // config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.kq_conv = config.kq_conv if config.mta and use_kq_conv else ""
        self.head_mix = config.head_mix if config.mta else ""
        self.head_norm = config.head_norm if config.mta else ""
        H = self.n_heads
        if self.kq_conv:  # identity init: theta_{0,0} = 1 (current query, centre key)
            kernel = torch.zeros(H, config.c_q, config.c_k)
            kernel[:, 0, config.c_k // 2] = 1.0
            self.kq_kernel = nn.Parameter(kernel)
        if self.head_mix:  # identity mixing within each group
            self.head_weights = nn.Parameter(torch.eye(config.c_h).repeat(H // config.c_h, 1, 1))
        if self.head_norm:
            self.norm = RMSNorm(self.d_head)
        if self.head_norm == "gate":
            self.gate = nn.Linear(self.d_head, 1)
        self.dropout = nn.Dropout(config.dropout)
        self.keep_maps, self.maps_before, self.maps_after = False, None, None

    def forward(self, x, rope=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        if rope is None:
            rope = rope_tables(T, self.d_head, self.config.rope_theta, x.device, at_least_float32(x.dtype))
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        logits = (q * self.d_head ** -0.5) @ k.transpose(-2, -1)  # A-hat = q.k / sqrt(d) [B, H, T, T]
        # Mask_-inf as an added -inf: masked_fill's values, and no pass over [B, H, T, T] in backward
        future = torch.full((T, T), float("-inf"), dtype=logits.dtype, device=x.device).triu(1)
        c = self.config
        if self.kq_conv == "pre":
            logits = key_query_conv(logits, self.kq_kernel, c.c_q, c.c_k)
        if self.head_mix == "pre":
            logits = head_mix(logits, self.head_weights, c.c_h)  # per entry: those after i get -inf next
        # in place: nothing above kept these logits; softmax in a float32 island (bf16, autocast)
        weights = logits.add_(future).to(at_least_float32(q.dtype)).softmax(-1).type_as(q)
        if self.kq_conv == "post":  # no renormalisation after the post-softmax convolutions
            weights = key_query_conv(weights, self.kq_kernel, c.c_q, c.c_k)
        if self.head_mix == "post":
            weights = head_mix(weights, self.head_weights, c.c_h)
        if self.keep_maps:
            plain = (q * self.d_head ** -0.5) @ k.transpose(-2, -1)
            self.maps_before = (plain + future).softmax(-1).detach()
            self.maps_after = weights.detach()
        out = self.dropout(weights) @ v  # [B, H, T, d_head]
        if self.head_norm:  # section 3.3: normalise each head's output on its own
            out = self.norm(out)
            if self.head_norm == "depth":  # (1 - lambda_init), lambda_init = 0.8 - 0.6 exp(-0.3 (l - 1))
                l = self.layer_index + 1   # the paper's l counts layers from 1 (official: layer_id from 0)
                out = out * (1 - (0.8 - 0.6 * math.exp(-0.3 * (l - 1))))
            else:
                out = out * torch.sigmoid(self.gate(out))
        return self.proj(out.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.w1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.w3 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.w2 = nn.Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, config, layer_index, use_kq_conv):
        super().__init__()
        self.attn_norm, self.ffn_norm = RMSNorm(config.d_model), RMSNorm(config.d_model)
        self.attn = MultiTokenAttention(config, layer_index, use_kq_conv)
        self.ffn = SwiGLU(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope):
        x = x + self.dropout(self.attn(self.attn_norm(x), rope))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class MTATransformer(nn.Module):
    """Decoder-only pre-norm Transformer with RoPE and tied embeddings (the toy-task model);
    config.mta = False turns every MTA part off (the standard-attention baseline)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        layers = config.mta_layers or range(config.n_layers)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config, l, l in layers) for l in range(config.n_layers))
        self.norm = RMSNorm(config.d_model)
        # as the official code (lingua): every weight and the embedding from a normal cut at 3 std,
        # std = 1 / sqrt(d_model), but 1 / sqrt(d_ff) for w2, which reads the FFN's hidden layer
        self.apply(lambda module: self._init(module, config.d_model ** -0.5))
        for block in self.blocks:
            self._init(block.ffn.w2, config.d_ff ** -0.5)

    @staticmethod
    def _init(module, std):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(module.weight, std=std, a=-3 * std, b=3 * std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx):
        """idx [B, T] token ids -> logits [B, T, vocab] for the next token at every position."""
        T = idx.size(1)
        if T > self.config.max_len:
            raise ValueError(f"sequence of {T} tokens is longer than max_len {self.config.max_len}")
        rope = rope_tables(T, self.config.d_model // self.config.n_heads, self.config.rope_theta,
                           idx.device, at_least_float32(self.embed.weight.dtype))
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x, rope)
        return self.norm(x) @ self.embed.weight.T  # tied output embedding
