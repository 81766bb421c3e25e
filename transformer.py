"""Attention Is All You Need. Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser, Polosukhin,
2017. arXiv:1706.03762.

The encoder-decoder of Figure 1 with no recurrence at all: every layer lets each position attend to
every other through scaled dot-product attention, split into several heads, followed by a position-wise
feed-forward network; sinusoids tell the model where each token stands. The decoder attends causally
to its own prefix and, through encoder-decoder attention, to the whole source.

    python train.py transformer            # toy translation, adjective-noun swaps, 4-30 words

Paper vs this file:
- Sizes: d_model 64, 2 + 2 layers, 4 heads, d_ff 256 by default (paper: 512, 6 + 6, 8, 2048), because
  the toy task is tiny and the default run then finishes in under a minute on a 2-core CPU.
- Dropout 0 by default (paper: 0.1): the experiment draws fresh sentences every step, so there is nothing to
  overfit. The dropout sites of section 5.4 are all here and take effect with dropout > 0.
- Learning rate: the experiment keeps eq. (3)'s linear warmup (100 steps, paper: 4000; capped at the
  run's steps) up to a peak of 6e-3, then decays linearly to zero at step 1600 instead of as step^-0.5:
  with eq. (3)'s tail the tiny model never settled (4-40 words: 0.95 held-out exact match after 3000
  steps; the default run, with the linear decay, reaches 0.99 at step 1400).
  `rate` below is eq. (3) itself, for readers who copy the file.
- Batches (the experiment): 32 sentences of 4-30 words, drawn independently, where the paper batches
  pairs of similar length, ~25,000 tokens a batch (5.1). Length-sorted batches of 32 learned the longest
  sentences far more slowly here (4-40 words: 0.90 held-out exact match after 2500 steps with pools of
  4 sorted batches, 0.98 after 2000 unsorted; 31-40 words: 0.00 after 1000 steps of 64 from pools of 20).
- One joint vocabulary for source and target (the paper's shared BPE vocabulary), so the two
  embeddings and the pre-softmax projection share one matrix as in section 3.4.
- The attention projections have no bias, as the paper's W^Q, W^K, W^V, W^O; the FFN has biases (eq. 2).
- Each head calls PyTorch's fused `scaled_dot_product_attention`, which computes eq. (1) exactly;
  `attention` below writes eq. (1) out, runs whenever the attention map is wanted (keep_weights), and
  a test holds the two equal.
- Beam search keeps the paper's beam 4 and length penalty alpha 0.6 (section 6.1) as defaults, but
  decodes at most max_len tokens, which the experiment sets to the source length + 10 (paper: + 50).
  The paper leaves the search's bookkeeping open; it follows GNMT (Wu et al. 2016) and bahdanau.py: a
  hypothesis that emits EOS leaves the beam for a finished set and the beam shrinks by one.
- Both decoders return [B, L] token ids after BOS: the first EOS kept, PAD after it; live hypotheses
  never emit PAD or BOS.
- Any float dtype: float32, float64 or bfloat16 weights, or autocast. Softmaxes (attention's written-out
  eq. (1), the loss, the beam's log-probabilities) run in at least float32 (`_wide`); the fused kernel
  keeps its own softmax in float32.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class TransformerConfig:
    vocab_size: int
    d_model: int = 64        # paper: 512
    n_layers: int = 2        # N, paper: 6 in each stack
    n_heads: int = 4         # h, paper: 8
    d_ff: int = 256          # paper: 2048
    dropout: float = 0.0     # P_drop, paper: 0.1
    max_len: int = 512       # longest sequence the positional encoding table covers
    pad_id: int = 0

    def __post_init__(self):
        if min(self.vocab_size, self.d_model, self.n_layers, self.n_heads, self.d_ff, self.max_len) <= 0:
            raise ValueError("vocab_size, d_model, n_layers, n_heads, d_ff and max_len must be positive")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")


def _wide(x):
    """A float32 island: bfloat16/float16 -> float32 (float32 and float64 stay), for the softmaxes,
    whose sums of exponentials lose the small terms in bfloat16's 8-bit mantissa."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


# Section 3.2.1, eq. (1): Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V
def attention(q, k, v, mask=None):
    """q [.., Tq, d_k], k [.., Tk, d_k], v [.., Tk, d_v]; mask (bool, True = may attend) broadcasts
    to [.., Tq, Tk]. Returns (output [.., Tq, d_v], weights [.., Tq, Tk])."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # section 3.2.3: illegal connections -> -inf
    weights = _wide(scores).softmax(dim=-1)  # float32 island
    return weights.to(v.dtype) @ v, weights


# Section 3.2.2: MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O, head_i = Attention(Q W_i^Q, ...)
class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, n_heads, dropout=0.0):
        super().__init__()
        self.n_heads, self.d_k = n_heads, d_model // n_heads
        self.w_q = nn.Linear(d_model, d_model, bias=False)  # the h matrices W_i^Q side by side
        self.w_k = nn.Linear(d_model, d_model, bias=False)
        self.w_v = nn.Linear(d_model, d_model, bias=False)
        self.w_o = nn.Linear(d_model, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.keep_weights = False  # True: run `attention` above and keep its map for pictures
        self.weights = None        # the last attention map [B, h, Tq, Tk] when keep_weights

    def forward(self, query, key, value, mask=None):
        B = query.size(0)
        split = lambda x: x.view(B, -1, self.n_heads, self.d_k).transpose(1, 2)  # [B, h, T, d_k]
        q, k, v = split(self.w_q(query)), split(self.w_k(key)), split(self.w_v(value))
        if self.keep_weights:
            out, weights = attention(q, k, v, mask)
            self.weights = weights.detach()
        else:  # the same eq. (1) in PyTorch's fused kernel: faster, and no [Tq, Tk] map kept for backward
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(B, -1, self.n_heads * self.d_k)  # Concat(head_1, ..., head_h)
        return self.dropout(self.w_o(out))  # section 5.4: dropout on each sub-layer's output


# Section 3.3, eq. (2): FFN(x) = max(0, x W_1 + b_1) W_2 + b_2
class PositionwiseFeedForward(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.0):
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.w_2(F.relu(self.w_1(x))))


# Section 3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model))
def positional_encoding(max_len, d_model):
    position = torch.arange(max_len, dtype=torch.float32)[:, None]
    inv_wavelength = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2) / d_model)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(position * inv_wavelength)
    pe[:, 1::2] = torch.cos(position * inv_wavelength[: d_model // 2])
    return pe


# Section 3.1: each sub-layer is wrapped as LayerNorm(x + Sublayer(x)) (post-norm, as the paper)
class EncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = MultiHeadAttention(c.d_model, c.n_heads, c.dropout)
        self.ffn = PositionwiseFeedForward(c.d_model, c.d_ff, c.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)

    def forward(self, x, src_mask):
        x = self.norm1(x + self.self_attn(x, x, x, src_mask))
        return self.norm2(x + self.ffn(x))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = MultiHeadAttention(c.d_model, c.n_heads, c.dropout)
        self.cross_attn = MultiHeadAttention(c.d_model, c.n_heads, c.dropout)  # encoder-decoder attention
        self.ffn = PositionwiseFeedForward(c.d_model, c.d_ff, c.dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(c.d_model) for _ in range(3))

    def forward(self, y, memory, src_mask, tgt_mask):
        y = self.norm1(y + self.self_attn(y, y, y, tgt_mask))
        y = self.norm2(y + self.cross_attn(y, memory, memory, src_mask))  # queries from the decoder
        return self.norm3(y + self.ffn(y))


class Transformer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = c = config
        self.embedding = nn.Embedding(c.vocab_size, c.d_model)
        nn.init.normal_(self.embedding.weight, std=c.d_model ** -0.5)  # x sqrt(d_model) gives unit scale
        self.register_buffer("pe", positional_encoding(c.max_len, c.d_model), persistent=False)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.n_layers))

    def embed(self, tokens):
        # Section 3.4: embeddings multiplied by sqrt(d_model); section 5.4: dropout on embeddings + PE
        if tokens.size(1) > self.config.max_len:
            raise ValueError(f"sequence of {tokens.size(1)} tokens is longer than max_len {self.config.max_len}")
        return self.dropout(self.embedding(tokens) * math.sqrt(self.config.d_model) + self.pe[: tokens.size(1)])

    def encode(self, src):
        """src [B, S] -> memory [B, S, d_model] and the padding mask [B, 1, 1, S]."""
        src_mask = (src != self.config.pad_id)[:, None, None, :]
        x = self.embed(src)
        for layer in self.encoder:
            x = layer(x, src_mask)
        return x, src_mask

    def decode(self, tgt_in, memory, src_mask):
        """tgt_in [B, T] (outputs shifted right, section 3.2.3) -> logits [B, T, vocab_size]."""
        T = tgt_in.size(1)
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).tril()
        tgt_mask = causal & (tgt_in != self.config.pad_id)[:, None, None, :]
        y = self.embed(tgt_in)
        for layer in self.decoder:
            y = layer(y, memory, src_mask, tgt_mask)
        return y @ self.embedding.weight.T  # section 3.4: pre-softmax linear shares the embedding matrix

    def forward(self, src, tgt_in):
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)


# Section 5.4: label smoothing, epsilon_ls = 0.1. The target distribution puts 1 - eps on the right
# token and spreads eps uniformly over the vocabulary; padding positions are not counted.
def label_smoothed_loss(logits, target, epsilon=0.1, pad_id=0):
    log_probs = _wide(logits).log_softmax(dim=-1)  # float32 island: bf16 logits under autocast
    nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    uniform = -log_probs.mean(dim=-1)
    loss = (1 - epsilon) * nll + epsilon * uniform
    keep = target != pad_id
    return (loss * keep).sum() / keep.sum()  # the mean over non-padding positions (no host read: not loss[keep])


# Section 5.3, eq. (3): lrate = d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)
def rate(step, d_model, warmup_steps=4000):
    step = max(step, 1)
    return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


def make_optimizer(model, lr=1.0, fused=None):
    """Section 5.3: Adam with beta_1 = 0.9, beta_2 = 0.98, epsilon = 1e-9 (lr is set by the schedule).
    fused=True: one kernel per step on a GPU (the same update)."""
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9, fused=fused)


# Decoding (section 6.1). Both return LongTensor [B, L]: the tokens after BOS, the first EOS kept and
# PAD after it (bahdanau.py's convention); L is the longest output. Live hypotheses never emit PAD or BOS.
@torch.no_grad()
def greedy_decode(model, src, max_len, bos=1, eos=2):
    pad = model.config.pad_id
    memory, src_mask = model.encode(src)
    out = torch.full((src.size(0), 1), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        logits = model.decode(out, memory, src_mask)[:, -1]
        logits[:, [pad, bos]] = float("-inf")
        next_token = logits.argmax(-1).masked_fill(done, pad)
        out = torch.cat([out, next_token[:, None]], dim=1)
        done |= next_token == eos
        if done.all():
            break
    return out[:, 1:]


@torch.no_grad()
def beam_search(model, src, beam_size=4, max_len=50, alpha=0.6, bos=1, eos=2):
    """Beam search ranking the finished hypotheses by log P(Y) / lp(Y) with Wu et al.'s length penalty
    lp(Y) = ((5 + |Y|) / 6)^alpha, |Y| counting EOS (section 6.1: beam 4, alpha 0.6). Each step keeps,
    per sentence, the best beam_size - (its finished hypotheses) extensions of the live ones by log P:
    one that ends with EOS leaves the beam for the finished set, which no live hypothesis can push out
    (GNMT, bahdanau.py). Hypotheses still live after max_len tokens join the finished set unended."""
    if beam_size < 1 or max_len < 1:
        raise ValueError(f"beam_size and max_len must be positive, got {beam_size} and {max_len}")
    B, K, pad, device = src.size(0), beam_size, model.config.pad_id, src.device
    memory, src_mask = model.encode(src)
    memory, src_mask = memory.repeat_interleave(K, 0), src_mask.repeat_interleave(K, 0)  # [B*K, ...]
    tokens = torch.full((B * K, 1), bos, dtype=torch.long, device=device)
    scores = torch.full((B, K), float("-inf"), device=device)  # log P of the live ones; -inf: no hypothesis
    scores[:, 0] = 0.0  # all beams start identical: keep one so the first step yields K distinct ones
    finished = [[] for _ in range(B)]  # per sentence: (log P(Y) / lp(Y), token ids)
    lp = lambda length: ((5 + length) / 6) ** alpha
    for step in range(1, max_len + 1):  # every live hypothesis holds `step` tokens after this step
        log_probs = _wide(model.decode(tokens, memory, src_mask)[:, -1]).log_softmax(-1)  # float32 island
        log_probs[:, [pad, bos]] = float("-inf")  # a live hypothesis emits neither
        V = log_probs.size(-1)
        best, index = (scores[..., None] + log_probs.view(B, K, V)).view(B, K * V).topk(K, dim=-1)
        beam, token = index // V, index % V
        rows = (beam + torch.arange(B, device=device)[:, None] * K).view(-1)
        tokens = torch.cat([tokens[rows], token.view(-1, 1)], dim=1)
        room = K - torch.tensor([len(f) for f in finished], device=device)  # the beam shrinks
        kept = (torch.arange(K, device=device) < room[:, None]) & best.isfinite()
        for b, k in (kept & (token == eos)).nonzero().tolist():
            finished[b].append((best[b, k].item() / lp(step), tokens[b * K + k, 1:].tolist()))
        scores = best.masked_fill(~kept | (token == eos), float("-inf"))
        if not scores.isfinite().any():
            break
    for b, k in scores.isfinite().nonzero().tolist():  # still live after max_len tokens
        finished[b].append((scores[b, k].item() / lp(max_len), tokens[b * K + k, 1:].tolist()))
    chosen = [max(f, key=lambda f: f[0])[1] for f in finished]
    out = torch.full((B, max(map(len, chosen))), pad, dtype=torch.long, device=device)
    for b, ids in enumerate(chosen):
        out[b, :len(ids)] = torch.tensor(ids, device=device)
    return out
