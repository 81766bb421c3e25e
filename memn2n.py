"""End-To-End Memory Networks (Sukhbaatar, Szlam, Weston, Fergus 2015, arXiv 1503.08895).

Memory Networks (Weston et al. 2014) answered questions about a story by attending *hard* to one
sentence at a time, and needed labels saying which sentence to attend to. MemN2N makes the lookup soft,
as Bahdanau et al. had done for translation, so the whole model trains from question-answer pairs
alone. Each sentence i of the story is written into memory twice: as a key m_i (embedding A) and as a
value c_i (embedding C). The question, embedded by B, is a vector u; one hop scores every memory by a
dot product, p = softmax(u^T m), reads o = sum_i p_i c_i, and updates u <- u + o. Stacking K hops lets
the model chain facts: to answer "Where is the milk?" the first hop finds "Sandra got the milk", and
the second, now asking about Sandra, finds where she went. Word order inside a sentence is kept by a
fixed position encoding, and sentence order by learned temporal rows T_A, T_C.

    python train.py memn2n              # 3 hops, PE + LS + RN, on bAbI-style task 2
    python train.py memn2n --compare    # K = 1, 2, 3, trained jointly on tasks 1-3, beside Table 1

Paper vs this file:
- Padded memory slots are masked out of the softmax (zero attention). The official code leaves empty
  slots as null-word memories with score 0, which still take some softmax mass. A question with no
  sentence before it reads nothing: o = 0 in every hop (p is all zero), so the answer is W u^1 (W H^K u^1
  under layer-wise tying).
- Random noise (RN) follows the official code rather than the text's wording: a story of n sentences
  gets U{0..ceil(0.1 n)} blank time slots at random places, so older memories take later rows of T_A
  and T_C; a blank slot holds nothing, so it is not a memory the softmax can pick.
- The temporal rows are tied across hops the way A and C are (T_A^{k+1} = T_C^k under adjacent
  tying), as in the official code, where time is a set of extra words in the vocabulary.
- Position encoding uses each sentence's own length J, as the text defines it: J is the position of
  its last non-null word, so a null word inside a sentence (an unknown word) keeps its slot j. The
  official code uses the padded length and a rescaled variant.
- Layer-wise tying keeps B and W as separate matrices (the paper names no tie for them there), and
  the answer is W u^{K+1} with u^{K+1} = H u^K + o^K.
- Linear start (LS) is a switch on the model (`linear_start`), kept in its state_dict (a buffer), so a
  checkpoint reloads in the mode it was scored in. The experiment keeps it on for the official code's
  fixed number of epochs (the text: until the validation loss stops falling), then restarts the schedule.
- Training (the experiment) keeps SGD, batch 32, clipping at 40, N(0, 0.1) and the official code's two
  recipes: one task (config_babi.m: d 20, LS 20 epochs at 0.005, then 100 epochs from 0.005 halved
  every 25) and joint training (config_babi_joint.m: d 50, LS 30 epochs, then 60 halved every 15).
  But: the loss is averaged over the batch with lr and clip threshold scaled by the batch size (the
  same update as the summed loss); the clip is on the global norm (the official code clips each
  matrix); each epoch is a permutation of the training questions (the official code draws batches with
  replacement); joint training pools tasks 1-3, not all 20, so its 60 epochs are about 7x fewer
  updates; --restarts N keeps the lowest training error of N runs (the paper: 10; default 1).
- The stories come from experiments/babi.py, a generator that follows the public bAbI generator's rules
  and, where they differ, the released files' (its docstring lists where); `--data DIR` reads the
  official files. The default run trains one task on a 10k-sized set for at most 10 + 40 epochs and
  stops at 3% validation error once LS is over; at the 1k size a single-task model overfits task 2.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class MemN2NConfig:
    vocab_size: int             # V, the null word included
    d: int = 20                 # embedding size (paper: 20 on bAbI)
    hops: int = 3               # K (paper: 3)
    memory_size: int = 50       # the most recent sentences kept (paper: 50); the rows of T_A, T_C
    tying: str = "adjacent"     # "adjacent" (paper default) or "layerwise" (section 2.2)
    encoding: str = "pe"        # "pe" position encoding or "bow" bag of words (section 4.1)
    temporal: bool = True       # temporal encoding T_A, T_C (section 4.1)
    random_noise: float = 0.1   # RN: share of blank time slots inserted at training time (paper: 10%)
    init_std: float = 0.1       # weights from N(0, 0.1) (section 4.2)
    null: int = 0               # the null (padding) word, whose embedding stays zero


def position_encoding(length, J, d, dtype=torch.float32):
    """l_kj = (1 - j/J) - (k/d)(1 - 2j/J) (section 4.1) for sentences of `length` words [...] held in J
    word slots: [..., J, d] with entry [..., j-1, k-1] = l_kj, the weight of dimension k = 1..d of the
    j-th word's embedding; zero past each sentence's end (padding, which embeds as zero anyway)."""
    j = torch.arange(1, J + 1, device=length.device, dtype=dtype).unsqueeze(-1)  # [J, 1]
    k = torch.arange(1, d + 1, device=length.device, dtype=dtype) / d            # [d]
    n = length.clamp(min=1).to(dtype)[..., None, None]                           # [..., 1, 1]
    l = (1 - j / n) - k * (1 - 2 * j / n)
    return l.masked_fill(j > n, 0.0)


class MemN2N(nn.Module):
    """forward(story [B, M, J], query [B, J]) -> answer logits [B, V].

    story holds one sentence per row, oldest first, padded at the end with all-null rows (so row M-1
    of a full story is the most recent sentence). After each forward, `attention` [B, K, M] holds every
    hop's weights p over the memories (zero on padding).
    """

    def __init__(self, config):
        super().__init__()
        if config.tying not in ("adjacent", "layerwise"):
            raise ValueError(f"tying must be adjacent or layerwise, got {config.tying!r}")
        if config.encoding not in ("pe", "bow"):
            raise ValueError(f"encoding must be pe or bow, got {config.encoding!r}")
        self.config = config
        V, d, K, M = config.vocab_size, config.d, config.hops, config.memory_size
        new = lambda *shape: nn.Parameter(torch.randn(*shape) * config.init_std)
        if config.tying == "adjacent":
            # K+1 matrices E^0..E^K: B = A^1 = E^0, A^{k+1} = C^k = E^k, W^T = C^K = E^K (section 2.2)
            self.embeddings = nn.ParameterList([new(V, d) for _ in range(K + 1)])
            self.times = nn.ParameterList([new(M, d) for _ in range(K + 1)]) if config.temporal else None
            self.H = None
        else:
            # one A and one C for every hop, u^{k+1} = H u^k + o^k (section 2.2); B and W of their own
            self.embeddings = nn.ParameterList([new(V, d), new(V, d)])
            self.times = nn.ParameterList([new(M, d), new(M, d)]) if config.temporal else None
            self.query_embedding, self.answer_weight = new(V, d), new(V, d)
            self.H = nn.Linear(d, d, bias=False)
            nn.init.normal_(self.H.weight, std=config.init_std)
        keep = torch.ones(V, 1)
        keep[config.null] = 0
        self.register_buffer("keep", keep, persistent=False)  # zeroes the null word's row on every use
        # LS (section 4.2), a buffer so that it is in state_dict: a reloaded model scores as it was scored
        self.register_buffer("linear_start_flag", torch.tensor(False))
        self.attention = None
        self.vocab = None  # the words behind the ids, for whoever saves the model (the experiment sets it)

    @property
    def linear_start(self):
        """LS: True removes the softmax of every memory layer, p_i = u^T m_i (section 4.2)."""
        return bool(self.linear_start_flag)

    @linear_start.setter
    def linear_start(self, on):
        self.linear_start_flag.fill_(bool(on))

    # --- the matrices by their paper names; k counts hops from 1 as in the paper -------------
    def A(self, k):
        return self.embeddings[k - 1] if self.config.tying == "adjacent" else self.embeddings[0]

    def C(self, k):
        return self.embeddings[k] if self.config.tying == "adjacent" else self.embeddings[1]

    def T_A(self, k):
        return self.times[k - 1] if self.config.tying == "adjacent" else self.times[0]

    def T_C(self, k):
        return self.times[k] if self.config.tying == "adjacent" else self.times[1]

    @property
    def B(self):
        return self.A(1) if self.config.tying == "adjacent" else self.query_embedding

    @property
    def W(self):  # [V, d]: row v scores word v; under adjacent tying the same tensor as C^K
        return self.C(self.config.hops) if self.config.tying == "adjacent" else self.answer_weight

    # --- sentence representation (section 4.1) ---------------------------------------------------
    def pe_weights(self, words):
        """l for every word slot of words [..., J]: [..., J, d]. A sentence's length J is the position of
        its last non-null word, so a null word inside it (an unknown word) keeps its place."""
        slots = torch.arange(1, words.shape[-1] + 1, device=words.device)
        length = ((words != self.config.null) * slots).amax(-1)
        # computed in float32 (float64 for float64 weights), then rounded once to the weights' dtype
        dtype = torch.promote_types(self.B.dtype, torch.float32)
        return position_encoding(length, words.shape[-1], self.config.d, dtype)

    def embed(self, weight, words, l):
        """sum_j l_j * (embedding of word j), or the plain sum for bag of words (l is None):
        [..., J] -> [..., d]."""
        vectors = F.embedding(words, weight * self.keep)  # [..., J, d]; the null word embeds as zero
        return (vectors if l is None else vectors * l.to(vectors.dtype)).sum(-2)

    def time_index(self, present):
        """Row of T_A / T_C for each memory: 0 for the most recent sentence (section 4.1).

        present [B, M] marks real sentences (a prefix of each row). At training time, random noise
        (RN) inserts blank slots among the memories: each story of n sentences gets U{0..ceil(rn n)}
        blanks, so its sentences take n random distinct rows of 0..n+blanks-1, still in time order.
        """
        Bsz, M = present.shape
        n = present.sum(1, keepdim=True)  # [B, 1]
        slot = torch.arange(M, device=present.device).unsqueeze(0)
        recency = (n - 1 - slot).clamp(min=0)  # 0 = the most recent sentence
        rn = self.config.random_noise
        if self.training and rn > 0:
            blanks = (torch.rand(Bsz, 1, device=present.device) * (torch.ceil(rn * n) + 1)).floor().long()
            span = n + blanks
            width = max(M, int(span.max()))
            keys = torch.rand(Bsz, width, device=present.device)
            keys = keys.masked_fill(torch.arange(width, device=present.device) >= span, 2.0)
            rows = keys.argsort(1)[:, :M]  # the first n are n distinct rows below span
            rows = rows.masked_fill(slot >= n, width).sort(1).values
            recency = rows.gather(1, recency)
        return recency.clamp(max=self.config.memory_size - 1)

    def distinct(self, rows):
        """Stories repeat a few hundred sentences: embed each distinct row once (same sums, less work).
        rows [N, J] -> (distinct rows [U, J], index [N] into them)."""
        V, J = self.config.vocab_size, rows.shape[1]
        if J * math.log2(V) >= 62:  # too long to pack into one int64 key per row
            return torch.unique(rows, dim=0, return_inverse=True)
        keys = (rows * V ** torch.arange(J, device=rows.device)).sum(1)
        _, which = torch.unique(keys, return_inverse=True)
        distinct = rows.new_zeros(int(which.max()) + 1, J)
        distinct[which] = rows
        return distinct, which

    # --- the model (sections 2.1, 2.2) -----------------------------------------------------------
    def forward(self, story, query):
        Bsz, M, J = story.shape
        if M > self.config.memory_size:
            raise ValueError(f"{M} memories, but memory_size is {self.config.memory_size}")
        present = (story != self.config.null).any(-1)  # [B, M]
        rows = self.time_index(present) if self.times is not None else None
        sentences, which = self.distinct(story.reshape(-1, J))
        which = which.view(Bsz, M)
        pe = self.config.encoding == "pe"
        l_sentences, l_query = (self.pe_weights(sentences), self.pe_weights(query)) if pe else (None, None)
        u = self.embed(self.B, query, l_query)  # [B, d]
        attention, linear_start = [], self.linear_start
        for k in range(1, self.config.hops + 1):
            m = F.embedding(which, self.embed(self.A(k), sentences, l_sentences))  # m_i [B, M, d]
            c = F.embedding(which, self.embed(self.C(k), sentences, l_sentences))  # c_i [B, M, d]
            if rows is not None:  # temporal encoding: m_i + T_A(i), c_i + T_C(i)
                m, c = m + F.embedding(rows, self.T_A(k)), c + F.embedding(rows, self.T_C(k))
            scores = torch.einsum("bmd,bd->bm", m, u)  # u^T m_i
            # float32 island: bf16 scores (bf16 weights, or autocast's einsum) are promoted before the
            # softmax, whose exponentials would otherwise lose the differences between close scores
            scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
            if linear_start:  # LS: the memory layer stays linear
                p = scores.masked_fill(~present, 0.0)
            else:  # eq. (1): p_i = softmax(u^T m_i), padding excluded; an empty memory gets p = 0, o = 0
                p = torch.softmax(scores.masked_fill(~present, torch.finfo(scores.dtype).min), dim=-1)
                p = p.masked_fill(~present, 0.0)
            o = torch.einsum("bm,bmd->bd", p.to(c.dtype), c)  # eq. (2): o = sum_i p_i c_i
            u = (u if self.H is None else self.H(u)) + o  # u^{k+1} = u^k + o^k (or H u^k + o^k)
            attention.append(p)
        self.attention = torch.stack(attention, 1).detach()  # [B, K, M]
        return u @ (self.W * self.keep).T  # eq. (3): a^ = softmax(W u^{K+1}), the softmax in the loss
