"""Neural Machine Translation by Jointly Learning to Align and Translate.
Dzmitry Bahdanau, Kyunghyun Cho, Yoshua Bengio, 2014. arXiv 1409.0473.

The encoder-decoder of the day squeezed a source sentence into one fixed vector, and its translations
fell apart as sentences grew longer. RNNsearch keeps one annotation per source word (the two states of
a bidirectional GRU); before each target word the decoder scores every annotation against its state
with a small MLP (the "alignment model", additive attention), softmaxes the scores and reads their
weighted average as a fresh context. The soft alignment is learned jointly with the translation.
RNNEncDec, the baseline (Cho et al. 2014), is the same network with one fixed context for every step.

    python train.py bahdanau              # RNNsearch on the toy translation task
    python train.py bahdanau --compare    # RNNsearch vs RNNencdec per source length (Figure 2)

Paper vs this file:
- Sizes: embedding m = 32, GRU states n = 64, alignment MLP n' = 64, maxout units l = 32 (paper:
  620, 1000, 1000, 500) and a toy joint vocabulary of 149 words (paper: 30,000 per language). The
  source and target embeddings stay separate tables, as in the paper, both over the joint vocabulary.
- Encoder: torch's nn.GRU, whose update gate mirrors the paper's (z <-> 1 - z) and whose reset gate
  acts after the recurrent matrix, r * (U h), not U (r * h). The decoder's unit is A.2.2's exactly.
- The deep output reads s_{i-1}, as Appendix A.2.2 writes it (eq. 4 in the body writes s_i).
- RNNEncDec keeps RNNsearch's bidirectional encoder and gives the decoder the fixed context
  c = [->h_Tx ; <-h_1] (both ends of the BiRNN, size 2n like an attention context) where Cho et al.
  use the last state of a one-way encoder: an equal-size baseline, if anything a stronger one.
- Init: torch's defaults; `paper_init=True` gives Appendix B.1's (orthogonal recurrent matrices, W_a,
  U_a ~ N(0, 0.001^2), v_a and biases 0, the rest N(0, 0.01^2)), which sat ~1500 steps on a plateau here.
- Training (the experiment): Adam at 4e-3 for 70% of 1200 steps, then linear to zero (at a constant
  rate held-out exact match swung for hundreds of steps), not Adadelta (rho 0.95, eps 1e-6); batch 64,
  not 80; fresh sentences of 4-30 words (RNNsearch-30's); as B.2, minibatches cut from a pool (of 20
  here) sorted by length; gradient norm clipped at 1.
- Beam search: the paper gives no width; hypotheses that emit EOS leave the beam, which shrinks, and
  the best finished one by total log-probability wins (no length normalisation). Both decoders return
  the words after BOS, the first EOS kept and PAD after it (as transformer.py's); float32 islands
  (alignment softmax, beam scores) under bf16 weights or autocast.
"""
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass
class BahdanauConfig:
    vocab_size: int = 149     # the toy joint vocabulary (paper: 30,000 words per language)
    embed_dim: int = 32       # m (paper: 620)
    hidden: int = 64          # n: each encoder direction and the decoder state (paper: 1000)
    align_dim: int = 64       # n': hidden layer of the alignment model (paper: 1000)
    maxout_dim: int = 32      # l: maxout units of the deep output (paper: 500)
    pad: int = 0              # PAD id; padded source positions are masked out of the alignment
    paper_init: bool = False  # Appendix B.1 initialisation instead of torch's defaults


class Memory(NamedTuple):
    """What the decoder reads of one encoded batch of source sentences."""
    annotations: torch.Tensor  # [B, S, 2n]  h_j = [->h_j ; <-h_j], zero on padding
    mask: torch.Tensor         # [B, S]      True on real words
    keys: torch.Tensor         # [B, S, n']  U_a h_j, computed once per sentence (A.1.2)
    s0: torch.Tensor           # [B, n]      s_0 = tanh(W_s <-h_1)
    fixed: torch.Tensor        # [B, 2n]     [->h_Tx ; <-h_1], RNNencdec's one context vector

    def repeat(self, k):
        """The same single sentence for k beam hypotheses."""
        return Memory(*(t.expand(k, *t.shape[1:]) for t in self))


class BiEncoder(nn.Module):
    """Section 3.2 / A.2.1: a bidirectional GRU over the source embeddings (one E for both directions).
    nn.GRU's z weighs the old state, the paper's z the new candidate: learned gates absorb the flip."""

    def __init__(self, c):
        super().__init__()
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=c.pad)
        self.rnn = nn.GRU(c.embed_dim, c.hidden, batch_first=True, bidirectional=True)
        self.pad = c.pad

    def forward(self, src):
        mask = src != self.pad
        lengths = mask.sum(1)
        # packing makes the backward direction start at each sentence's last real word, not at PAD
        packed = pack_padded_sequence(self.embed(src), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        h, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=src.size(1))
        return h, mask, lengths  # h [B, S, 2n]


class AdditiveAttention(nn.Module):
    """The alignment model, eq. (6) and A.1.2: e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j),
    alpha_ij = softmax_j(e_ij), and the context c_i = sum_j alpha_ij h_j (eq. 5)."""

    def __init__(self, n, annotation_dim, align_dim):
        super().__init__()
        self.W_a = nn.Linear(n, align_dim, bias=False)
        self.U_a = nn.Linear(annotation_dim, align_dim, bias=False)
        self.v_a = nn.Linear(align_dim, 1, bias=False)

    def forward(self, s_prev, annotations, mask, keys=None):
        """s_prev [B, n], annotations [B, T, 2n], mask [B, T] -> context [B, 2n], weights [B, T].
        keys: U_a h_j if already computed for this sentence (it does not depend on i)."""
        keys = self.U_a(annotations) if keys is None else keys
        e = self.v_a(torch.tanh(self.W_a(s_prev).unsqueeze(1) + keys)).squeeze(-1)  # [B, T]
        e = e.to(torch.promote_types(e.dtype, torch.float32))  # a float32 softmax under bf16
        weights = F.softmax(torch.where(mask, e, float("-inf")), dim=-1)  # exactly 0 on padding
        context = torch.bmm(weights.unsqueeze(1).to(annotations.dtype), annotations).squeeze(1)
        return context, weights


class GatedUnit(nn.Module):
    """The decoder's state update, A.2.2: s_i = (1 - z_i) s_{i-1} + z_i s~_i, s~_i = tanh(W E y_{i-1}
    + U [r_i * s_{i-1}] + C c_i), z_i, r_i = sigmoid(W_. E y_{i-1} + U_. s_{i-1} + C_. c_i): c_i enters
    all three. W E y is split off (`from_y`): teacher forcing computes it for all steps at once."""

    def __init__(self, embed_dim, context_dim, n):
        super().__init__()
        self.from_y = nn.Linear(embed_dim, 3 * n)                  # [W_z; W_r; W], with the biases
        self.from_c = nn.Linear(context_dim, 3 * n, bias=False)    # [C_z; C_r; C]
        self.U_zr = nn.Linear(n, 2 * n, bias=False)                # [U_z; U_r]
        self.U = nn.Linear(n, n, bias=False)

    def forward(self, y_part, c, s_prev):
        """y_part = from_y(E y_{i-1}) [B, 3n], c [B, 2n], s_prev [B, n] -> s_i [B, n]"""
        n = s_prev.size(-1)
        inputs = y_part + self.from_c(c)  # [W_z; W_r; W] E y_{i-1} + [C_z; C_r; C] c_i (+ biases)
        z, r = torch.sigmoid(inputs[:, :2 * n] + self.U_zr(s_prev)).chunk(2, dim=-1)  # both gates at once
        s_tilde = torch.tanh(inputs[:, 2 * n:] + self.U(r * s_prev))
        return torch.lerp(s_prev, s_tilde, z)  # (1 - z_i) s_{i-1} + z_i s~_i, in one kernel


class EncoderDecoder(nn.Module):
    """Encoder, s_0, the gated decoder and the deep maxout output; subclasses choose the context."""

    def __init__(self, config):
        super().__init__()
        c = self.config = config
        self.encoder = BiEncoder(c)
        self.W_s = nn.Linear(c.hidden, c.hidden)  # s_0 = tanh(W_s <-h_1)  (A.2.2)
        self.embed_target = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=c.pad)
        self.decoder = GatedUnit(c.embed_dim, 2 * c.hidden, c.hidden)
        # deep output (A.2.2): t~_i = U_o s_{i-1} + V_o E y_{i-1} + C_o c_i  (2l units)
        self.U_o = nn.Linear(c.hidden, 2 * c.maxout_dim)
        self.V_o = nn.Linear(c.embed_dim, 2 * c.maxout_dim, bias=False)
        self.C_o = nn.Linear(2 * c.hidden, 2 * c.maxout_dim, bias=False)
        self.W_o = nn.Linear(c.maxout_dim, c.vocab_size)

    def context(self, s_prev, memory):
        """-> (c_i [B, 2n], alignment weights [B, S] or None)"""
        raise NotImplementedError

    def keys(self, annotations):
        """What the context needs precomputed per sentence (nothing, unless it attends)."""
        return annotations[..., :0]

    def encode(self, src):
        h, mask, lengths = self.encoder(src)
        n = self.config.hidden
        backward_first = h[:, 0, n:]                                    # <-h_1: has read it all
        forward_last = h[torch.arange(len(h), device=h.device), lengths - 1, :n]  # ->h_Tx
        return Memory(h, mask, self.keys(h), torch.tanh(self.W_s(backward_first)),
                      torch.cat([forward_last, backward_first], dim=-1))

    def readout(self, s_prev, embedded_y, c):
        """Deep output with maxout (A.2.2): t_i = max over pairs of t~_i; logits W_o t_i."""
        t_tilde = self.U_o(s_prev) + self.V_o(embedded_y) + self.C_o(c)
        t = t_tilde.unflatten(-1, (self.config.maxout_dim, 2)).amax(-1)
        return self.W_o(t)

    def step(self, y_prev, s_prev, memory):
        """One decoding step: y_prev [B] -> (logits [B, V], s_i [B, n], weights [B, S] or None)."""
        embedded = self.embed_target(y_prev)
        c, weights = self.context(s_prev, memory)
        s = self.decoder(self.decoder.from_y(embedded), c, s_prev)
        return self.readout(s_prev, embedded, c), s, weights

    def forward(self, src, tgt_in, return_weights=False):
        """Teacher forcing: src [B, S] (PAD-padded), tgt_in [B, T] -> logits [B, T, V] (+ alignments)."""
        memory = self.encode(src)
        embedded = self.embed_target(tgt_in)            # [B, T, m]
        # the E y_{i-1} terms of every step at once; unbind, not y_parts[:, i], whose backward
        # would write a full-size zero tensor per step
        y_parts = self.decoder.from_y(embedded).unbind(1)
        s, states, contexts, weights = memory.s0, [], [], []
        for i in range(tgt_in.size(1)):
            c, alpha = self.context(s, memory)
            states.append(s)
            contexts.append(c)
            weights.append(alpha)
            if i + 1 < tgt_in.size(1):                   # the last state is never read
                s = self.decoder(y_parts[i], c, s)
        logits = self.readout(torch.stack(states, 1), embedded, torch.stack(contexts, 1))
        if return_weights:
            return logits, (torch.stack(weights, 1) if weights[0] is not None else None)
        return logits


class RNNSearch(EncoderDecoder):
    """Section 3: a new context c_i for every target word, from the alignment model."""

    def __init__(self, config):
        super().__init__(config)
        c = config
        self.attention = AdditiveAttention(c.hidden, 2 * c.hidden, c.align_dim)
        if c.paper_init:
            paper_init_(self)

    def keys(self, annotations):
        return self.attention.U_a(annotations)  # "U_a h_j does not depend on i" (A.1.2)

    def context(self, s_prev, memory):
        return self.attention(s_prev, memory.annotations, memory.mask, memory.keys)


class RNNEncDec(EncoderDecoder):
    """The baseline (Cho et al. 2014): one fixed context vector for every target word."""

    def __init__(self, config):
        super().__init__(config)
        if config.paper_init:
            paper_init_(self)

    def context(self, s_prev, memory):
        return memory.fixed, None


@torch.no_grad()
def paper_init_(model):
    """Appendix B.1: recurrent matrices orthogonal; W_a and U_a ~ N(0, 0.001^2); v_a and all biases
    zero (so the alignment starts exactly uniform); every other weight ~ N(0, 0.01^2)."""
    n = model.config.hidden
    for name, p in model.named_parameters():
        if name.startswith("attention.W_a") or name.startswith("attention.U_a"):
            nn.init.normal_(p, std=0.001)
        elif "bias" in name or name.startswith("attention.v_a"):
            nn.init.zeros_(p)
        elif "weight_hh" in name or name.startswith("decoder.U"):
            for block in p.split(n):  # one orthogonal n x n matrix per gate
                nn.init.orthogonal_(block)
        else:
            nn.init.normal_(p, std=0.01)


def next_word_log_probs(logits, pad, bos):
    """log p(y_i) [B, V] with PAD and BOS at -inf: a live hypothesis never emits them. A float32
    island (for bf16 weights or autocast): beam scores add up over the steps."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    banned = torch.tensor([pad, bos], device=logits.device)
    return F.log_softmax(logits.index_fill(-1, banned, float("-inf")), dim=-1)


@torch.no_grad()
def greedy_decode(model, src, max_len, bos=1, eos=2):
    """src [B, S] -> LongTensor [B, L <= max_len]: the most probable word at each step, the first
    EOS kept and PAD after it."""
    memory, pad = model.encode(src), model.config.pad
    y = torch.full((src.size(0),), bos, dtype=torch.long, device=src.device)
    s, out = memory.s0, []
    done = torch.zeros_like(y, dtype=torch.bool)
    for _ in range(max_len):
        logits, s, _ = model.step(y, s, memory)
        y = next_word_log_probs(logits, pad, bos).argmax(-1).masked_fill(done, pad)
        out.append(y)
        done |= y == eos
        if done.all():
            break
    return torch.stack(out, 1)


@torch.no_grad()
def beam_search(model, src, beam_size, max_len, bos=1, eos=2):
    """src [B, S] -> LongTensor [B, L] as greedy_decode's, one sentence at a time. Each step keeps the
    beam_size best extensions of the live hypotheses; one that ends with EOS leaves the beam for good."""
    results, pad = [], model.config.pad
    for row in src:
        memory = model.encode(row[row != pad].unsqueeze(0))
        s, tokens, scores = memory.s0, [[]], torch.zeros(1, device=src.device)
        finished = []  # (log-probability, tokens)
        for _ in range(max_len):
            logits, s, _ = model.step(torch.tensor([t[-1] if t else bos for t in tokens],
                                                   device=src.device), s, memory.repeat(len(tokens)))
            log_p = next_word_log_probs(logits, pad, bos)
            total = (scores.unsqueeze(1) + log_p).flatten()
            top_scores, top = total.topk(min(beam_size - len(finished), total.numel()))
            keep = []
            for score, index in zip(top_scores.tolist(), top.tolist()):
                if score == float("-inf"):  # PAD or BOS: fewer allowed words than the beam
                    break
                parent, word = divmod(index, log_p.size(-1))
                if word == eos:
                    finished.append((score, tokens[parent] + [word]))
                else:
                    keep.append((score, parent, word))
            scores = torch.tensor([k[0] for k in keep], dtype=total.dtype, device=src.device)
            s = s[[k[1] for k in keep]]
            tokens = [tokens[k[1]] + [k[2]] for k in keep]
            if not keep:
                break
        finished += list(zip(scores.tolist(), tokens))  # still alive at max_len
        results.append(max(finished, key=lambda f: f[0])[1])
    width = max(len(t) for t in results)
    return torch.tensor([t + [pad] * (width - len(t)) for t in results], device=src.device)
