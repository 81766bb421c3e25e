"""Speed and memory of each paper's attention, side by side, in one process on the same inputs.

    python bench.py                  # CPU: about two minutes on 2 cores; CUDA when there is one
    python bench.py --clock cpu --threads 1   # CPU time: steadier on a machine others are using
    python bench.py --quick          # smaller sizes and fewer runs: a first look in seconds
    python bench.py --device cuda --sizes 128 512 2048 8192

It prints Markdown tables (progress goes to stderr): 1. forward + backward of each file's attention
block against torch's fused scaled_dot_product_attention (SDPA) at equal batch (2), heads (4), head
width (16) and T, and CoPE and MTA against their own files' plain attention (pos="none", mta=False);
2. Bahdanau's decoder, one query per step, in a table of its own (its T steps cannot run in parallel);
3. one training step of transformer.py against the same model on torch.nn.Transformer; 4. how the cost
of CoPE and MTA grows with T. Every time is given as min / median / max of its timed runs after a
warm-up; each block gets as many runs as its own warm-up time allows (at least MIN_REPEATS), and the
blocks compared at one size run interleaved, in a new shuffled order each round. docs/performance.md
says how to read the tables and what they measured.
"""
import argparse
import collections
import math
import os
import platform
import random
import shlex
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import bahdanau
import cope
import hopfield
import mta
import transformer

B, HEADS, HEAD_DIM = 2, 4, 16
D = HEADS * HEAD_DIM
MIN_REPEATS = 7   # the fewest timed runs of a figure (unless --repeats is lower): a median of 7 moves
                  # little when one run is disturbed; its min and max show the spread
SEED = 0          # of the shuffled running order: the same order on every run of bench.py

def log(message):
    print(message, file=sys.stderr, flush=True)

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()

def time_once(step, args):
    """Seconds of one call of step on args.clock, the device synchronized before and after."""
    sync(args.device)
    start = args.clock()
    step()
    sync(args.device)
    return args.clock() - start


# ----- The blocks, each on its own input x [B, T, 64], made once ---------------------------------
class SDPABlock(nn.Module):
    """The reference: input projection, torch's fused attention, output projection."""

    def __init__(self, causal):
        super().__init__()
        self.qkv, self.proj, self.causal = nn.Linear(D, 3 * D), nn.Linear(D, D), causal

    def forward(self, x):
        T = x.shape[1]
        q, k, v = self.qkv(x).view(B, T, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))

def build_block(name, T, device):
    """-> (forward() -> output, the module, the input x [B, T, 64])"""
    x = torch.randn(B, T, D, device=device, requires_grad=True)
    if name == "transformer":
        m = transformer.MultiHeadAttention(D, HEADS, dropout=0.0)
        return (lambda: m(x, x, x)), m, x
    if name == "hopfield":
        m = hopfield.Hopfield(hopfield.HopfieldConfig(d_model=D, n_heads=HEADS))
        return (lambda: m(x, x)[0]), m, x
    if name == "bahdanau":
        m = bahdanau.AdditiveAttention(D, D, D)     # state, annotations, n': all 64 wide, one head
        annotations = torch.randn(B, T, D, device=device, requires_grad=True)
        mask = torch.ones(B, T, dtype=torch.bool, device=device)
        def decoder_steps():   # the states x given (teacher forcing), the keys U_a h_j made once (A.1.2)
            keys = m.U_a(annotations)
            return torch.stack([m(s_i, annotations, mask, keys)[0] for s_i in x.unbind(1)], 1)
        return decoder_steps, m, x
    if name in ("sdpa", "sdpa-causal"):
        m = SDPABlock(causal=name == "sdpa-causal")
    elif name in ("cope-none", "cope"):
        pos = "none" if name == "cope-none" else "cope"
        m = cope.CausalSelfAttention(cope.CoPEConfig(d_model=D, n_head=HEADS, pos=pos, block_size=T))
        if m.cope is not None:
            nn.init.normal_(m.cope.pos_emb, std=0.02)   # a trained-looking table, not the zero init
    elif name in ("mta-none", "mta"):
        m = mta.MultiTokenAttention(mta.MTAConfig(d_model=D, n_heads=HEADS, max_len=T, mta=name == "mta"))
    return (lambda: m(x)), m, x

BLOCKS = {  # name: (row label, reference, [B, H, T, T]-sized maps alive at the peak, roughly)
    "sdpa": ("SDPA, unmasked (reference for the next two)", None, 1),
    "transformer": ("transformer.py MultiHeadAttention, self-attention, no mask", "sdpa", 8),
    "hopfield": ("hopfield.py Hopfield, self-attention R = Y = x, one update", "sdpa", 8),
    "sdpa-causal": ("SDPA, causal (reference for the rest)", None, 1),
    "cope-none": ("cope.py pos=none: CoPE's baseline", "sdpa-causal", 8),
    "cope": ("cope.py CoPE", "sdpa-causal", 24),
    "mta-none": ("mta.py mta=False: MTA's baseline", "sdpa-causal", 8),
    "mta": ("mta.py MTA, key-query conv c_q=2, c_k=9", "sdpa-causal", 16),
}
SCALING = ["cope-none", "cope", "mta-none", "mta"]
# Bahdanau's decoder runs its T steps one after another (each query is the state the previous step
# made), so it has a table of its own, timed beside the unmasked SDPA at the same T for scale
DECODER = {"bahdanau": ("bahdanau.py AdditiveAttention, T decoder steps, n = n' = 64", "sdpa", 3 * HEAD_DIM)}
DECODER_MAX_T = 1024   # beyond, one run of the decoder takes seconds (3.6 s at T = 2048 on 2 CPU cores)


# ----- Measuring: docs/performance.md says how -------------------------------------------------
def fwd_bwd(forward, module, x, args):
    """One forward + backward, the gradients of the last one dropped first."""
    module.zero_grad(set_to_none=True)
    x.grad = None
    with torch.autocast(args.device.type, dtype=torch.bfloat16, enabled=args.bf16):
        out = forward()
    out.float().sum().backward()

def memory_of(forward, module, x, args):
    """Bytes one forward + backward needs: on CUDA its peak allocated; on CPU the distinct storages saved
    for backward (a saved-tensor hook), the parameters not counted."""
    if args.device.type == "cuda":
        module.zero_grad(set_to_none=True)   # the last run's gradients, freed before the count starts
        x.grad = None
        sync(args.device)
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fwd_bwd(forward, module, x, args)
        sync(args.device)
        return torch.cuda.max_memory_allocated() - before
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen = {}
    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fwd_bwd(forward, module, x, args)
    return sum(seen.values())

def plan_repeats(first, args):
    """{name: seconds of its warm-up run} -> {name: timed runs}: each block as many as its own warm-up
    says fit in --seconds-per-cell, at least MIN_REPEATS (or --repeats if lower), at most --repeats."""
    floor = min(MIN_REPEATS, args.repeats)
    return {name: max(floor, min(args.repeats, int(args.seconds_per_cell / max(seconds, 1e-6))))
            for name, seconds in first.items()}

def schedule(repeats, seed=SEED):
    """{name: timed runs} -> the rounds, each a list of names in the order they run. A block's runs are
    spread evenly over all the rounds (not bunched at the start), and every round runs its blocks in a
    new shuffled order, so that neither a slow neighbour nor a drift of the machine favours one block."""
    rounds = [[] for _ in range(max(repeats.values(), default=0))]
    for name, n in repeats.items():
        for k in range(n):
            rounds[k * len(rounds) // n].append(name)
    shuffle = random.Random(seed).shuffle
    for names in rounds:
        shuffle(names)
    return rounds

Timing = collections.namedtuple("Timing", "min median max n")   # seconds of a figure's timed runs

def timing(seconds):
    return Timing(min(seconds), statistics.median(seconds), max(seconds), len(seconds))

def time_in_turns(steps, args):
    """steps {name: (step, seconds of its warm-up)} -> {name: Timing}, the steps run interleaved."""
    times = {name: [] for name in steps}
    for names in schedule(plan_repeats({name: first for name, (_, first) in steps.items()}, args)):
        for name in names:
            times[name].append(time_once(steps[name][0], args))
    return {name: timing(t) for name, t in times.items()}

def measure_size(T, names, args, results, notes):
    """Every block of `names` at this T: memory from an untimed run, the warm-up, the timed runs interleaved."""
    log(f"[bench] T={T}: {', '.join(names)}")
    runs = {}   # name: (run, memory, seconds of its warm-up)
    for name in names:
        need = {**BLOCKS, **DECODER}[name][2] * B * HEADS * T * T * 4   # bytes at the peak, roughly
        if need > args.max_bytes:
            notes.add(f"T={T}: {name} skipped, it needs about {need / 2**30:.0f} GiB "
                      f"(budget {args.max_bytes / 2**30:.0f} GiB, --max-gb)")
            continue
        torch.manual_seed(0)
        forward, module, x = build_block(name, T, args.device)
        module.to(args.device).train()
        run = lambda forward=forward, module=module, x=x: fwd_bwd(forward, module, x, args)
        try:
            if args.device.type == "cuda":   # a first run allocates workspaces that are not the block's
                run()
            memory = memory_of(forward, module, x, args)
            runs[name] = (run, memory, time_once(run, args))   # the warm-up sets the number of timed runs
        except torch.OutOfMemoryError:
            notes.add(f"T={T}: {name} ran out of memory")
            torch.cuda.empty_cache()
    timings = time_in_turns({name: (run, first) for name, (run, _, first) in runs.items()}, args)
    for name, (_, memory, _) in runs.items():
        t = timings[name]
        results[name, T] = (t, memory)
        log(f"[bench] attention {name:12s} T={T:5d}  {t.median * 1e3:9.2f} ms ({t.min * 1e3:.2f} to "
            f"{t.max * 1e3:.2f}, {t.n} runs)  {memory / 2**20:9.1f} MiB")


# ----- 2. transformer.py against torch.nn.Transformer ---------------------------------------------
class TorchTransformer(nn.Module):
    """transformer.py's model around torch.nn.Transformer: the same shared embedding x sqrt(d_model)
    plus sinusoids, post-norm layers with ReLU FFNs and no final LayerNorm, the tied output."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.register_buffer("pe", transformer.positional_encoding(c.max_len, c.d_model), persistent=False)
        encoder_layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, batch_first=True)
        decoder_layer = nn.TransformerDecoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, batch_first=True)
        self.core = nn.Transformer(
            c.d_model, c.n_heads, batch_first=True,
            custom_encoder=nn.TransformerEncoder(encoder_layer, c.n_layers, enable_nested_tensor=False),
            custom_decoder=nn.TransformerDecoder(decoder_layer, c.n_layers))

    def forward(self, src, tgt_in):
        embed = lambda t: self.embedding(t) * math.sqrt(self.c.d_model) + self.pe[: t.size(1)]
        T = tgt_in.size(1)
        future = torch.ones(T, T, dtype=torch.bool, device=src.device).triu(1)   # True = masked
        src_pad, tgt_pad = src == self.c.pad_id, tgt_in == self.c.pad_id
        y = self.core(embed(src), embed(tgt_in), tgt_mask=future, src_key_padding_mask=src_pad,
                      tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad, tgt_is_causal=True)
        return y @ self.embedding.weight.T

def padded_batch(batch, T, vocab, device, generator):
    """Random sentences of 4..T tokens, PAD (0) after their end."""
    tokens = torch.randint(3, vocab, (batch, T), generator=generator)
    lengths = torch.randint(4, T + 1, (batch,), generator=generator)
    tokens[torch.arange(T)[None, :] >= lengths[:, None]] = 0
    return tokens.to(device)

def transformer_step(batch, T, args):
    """-> (Timing ours, Timing torch's, parameters ours, parameters torch's)"""
    config = transformer.TransformerConfig(vocab_size=149, max_len=max(512, T))   # file defaults
    g = torch.Generator().manual_seed(0)
    src, tgt = padded_batch(batch, T, 149, args.device, g), padded_batch(batch, T + 1, 149, args.device, g)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    steps, sizes = {}, []
    for name, model in (("ours", transformer.Transformer(config)), ("torch", TorchTransformer(config))):
        model.to(args.device).train()
        optimizer = transformer.make_optimizer(model, lr=1e-4)
        def step(model=model, optimizer=optimizer):
            with torch.autocast(args.device.type, dtype=torch.bfloat16, enabled=args.bf16):
                logits = model(src, tgt_in)
            loss = transformer.label_smoothed_loss(logits.float(), tgt_out, 0.1, config.pad_id)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        step()                               # the optimizer's state is made on the first step
        steps[name] = (step, time_once(step, args))
        sizes.append(sum(p.numel() for p in model.parameters()))
    timings = time_in_turns(steps, args)
    ours, theirs = timings["ours"], timings["torch"]
    log(f"[bench] transformer step B={batch} T={T}: ours {ours.median * 1e3:.1f} ms, "
        f"torch {theirs.median * 1e3:.1f} ms")
    return ours, theirs, *sizes


# ----- Tables and the command line ---------------------------------------------------------------
def slope(ts, values):
    """Least-squares slope of log(value) against log(T)."""
    xs, ys = [math.log(t) for t in ts], [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)

def ms(seconds):
    return f"{seconds * 1e3:.3g}" if seconds * 1e3 < 100 else f"{seconds * 1e3:.0f}"

def spread(t):
    """A Timing as 'min / median / max' in ms."""
    return f"{ms(t.min)} / {ms(t.median)} / {ms(t.max)}"

def mib(nbytes):
    return f"{nbytes / 2**20:.3g}" if nbytes < 100 * 2**20 else f"{nbytes / 2**20:.0f}"

def print_table(heading, header, align, rows):
    """heading, then a Markdown table; align: a letter a column, l(eft) or r(ight)."""
    print(heading)
    print("| " + " | ".join(header) + " |\n|" + "".join("---:|" if a == "r" else "---|" for a in align))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")

def hardware(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:   # platform.processor() alone is often just the architecture
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return names[0] if names else platform.processor()
    except OSError:
        return platform.processor() or platform.machine()

class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit code 2, as train.py's
        self.exit(2, f"bench.py: error: {message}\n")

def parse_args(argv):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where to run: auto = cuda if available, else cpu (default auto)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats: a first look in seconds")
    p.add_argument("--sizes", type=int, nargs="+", metavar="T",
                   help="sequence lengths of table 1 (default 128 512 2048; --quick: 64 128 512)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's own choice, one per core)")
    p.add_argument("--repeats", type=int, default=25,
                   help=f"most timed runs per figure (default 25); the fewest is {MIN_REPEATS}, or this if lower")
    p.add_argument("--seconds-per-cell", type=float, default=2.0,
                   help="rough time to spend timing one figure: with its block's warm-up time, sets its number "
                        "of runs (default 2)")
    p.add_argument("--max-gb", type=float, default=None,
                   help="skip blocks estimated to need more (default: half the RAM; CUDA: 80%% of free memory)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: elapsed time (default); cpu: this process's CPU time, with --threads 1 only, "
                        "which others' jobs on a shared machine disturb far less")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="float32, or bf16 autocast as in training on CUDA (auto: bf16 on CUDA, float32 on CPU)")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.sizes and not 2 <= min(args.sizes) <= max(args.sizes) <= 2**20:
        p.error("--sizes: every T must be in [2, 1048576]")
    for flag, most in (("--threads", 1024), ("--repeats", 10000), ("--seconds-per-cell", 600), ("--max-gb", 2**20)):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and not 0 < value <= most:   # also refuses nan
            p.error(f"{flag} must be in (0, {most}], got {value}")
    if args.clock == "cpu" and (args.device != "cpu" or args.threads != 1):
        p.error("--clock cpu needs --device cpu and --threads 1 (CPU time adds up the threads' time)")
    args.device = torch.device(args.device)
    args.bf16 = args.dtype == "bfloat16" or (args.dtype == "auto" and args.device.type == "cuda")
    args.clock_name, args.clock = args.clock, time.process_time if args.clock == "cpu" else time.perf_counter
    args.max_bytes = (args.max_gb * 2**30 if args.max_gb is not None
                      else 0.8 * torch.cuda.mem_get_info()[0] if args.device.type == "cuda"
                      else 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    if args.quick:
        args.repeats, args.seconds_per_cell = min(args.repeats, 5), min(args.seconds_per_cell, 0.3)
    return args

def print_tables(results, sizes, scaling, step_rows, args):
    # 1. Each paper's attention block: time, then memory, each with its ratio to its SDPA reference
    memory_kind = ("peak allocated during forward + backward" if args.device.type == "cuda"
                   else "bytes saved for backward")
    clock = "CPU time of the process" if args.clock_name == "cpu" else "wall-clock time"
    print(f"### Attention cost per paper: {hardware(args.device)} ({args.device.type}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {'bf16 autocast' if args.bf16 else 'float32'}, {clock}\n")
    headings = (f"Forward + backward of one attention block on x [{B}, T, {D}]: batch {B}, {HEADS} heads of "
                f"width {HEAD_DIM}. ms, min / median / max of the timed runs, and in brackets the ratio of the "
                f"medians to the SDPA reference at the same T.\n",
                f"\nMemory, MiB ({memory_kind}), ratio to the SDPA reference in brackets:\n")
    for heading, number, text in ((headings[0], lambda v: v[0].median, lambda v: spread(v[0])),
                                  (headings[1], lambda v: v[1], lambda v: mib(v[1]))):
        def cell(value, ref):
            if value is None:
                return "-"
            return text(value) + (f" ({number(value) / number(ref):.1f}x)" if ref is not None else "")
        print_table(heading, ["block"] + [f"T={T}" for T in sizes], "l" + "r" * len(sizes),
                    [[label] + [cell(results.get((name, T)), results.get((ref, T))) for T in sizes]
                     for name, (label, ref, _) in BLOCKS.items()])
    runs = [t.n for (name, T), (t, _) in results.items() if name in BLOCKS and T in sizes]
    if runs:
        print(f"\nTimed runs per figure: {min(runs)}{'' if min(runs) == max(runs) else f' to {max(runs)}'}, "
              f"each block's own number from its warm-up (at least {min(MIN_REPEATS, args.repeats)}, "
              f"at most --repeats {args.repeats}).")

    # 2. Bahdanau's decoder, beside the unmasked SDPA at the same T
    (name, (label, versus, _)), = DECODER.items()
    rows = []
    for T in sizes:
        value, ref = results.get((name, T)), results.get((versus, T))
        rows.append([str(T)] + ["-"] * 5 if value is None else
                    [str(T), spread(value[0]), f"{value[0].median * 1e3 / T:.3g}", ms(ref[0].median) if ref else "-",
                     f"{value[0].median / ref[0].median:.0f}x" if ref else "-", mib(value[1])])
    print_table(f"\n### Bahdanau's decoder: T steps, one query each\n\n"
                f"{label}: forward + backward of the T steps over T annotations (teacher forcing, the states "
                f"given), one after another, as the decoder must run them; ms, min / median / max. For scale, "
                f"the unmasked SDPA of the first table, all T queries at once.\n",
                ["T", "decoder ms", "per step, ms (median)", "SDPA, unmasked, ms (median)", "ratio", "memory, MiB"],
                "rrrrrr", rows)
    if max(sizes) > DECODER_MAX_T:
        print(f"\n\"-\": not timed beyond T = {DECODER_MAX_T}, where one run takes seconds.")

    # 3. Targets: (target, {T: (ratio of medians, ratio of minima)}, the highest ratio that meets it)
    targets = []
    for name, base, limit, what in (("cope", "cope-none", 1.5, "CoPE <= 1.5x cope.py pos=none"),
                                    ("mta", "mta-none", 2.0, "MTA <= 2x mta.py mta=False")):
        ratios = {T: (results[name, T][0].median / results[base, T][0].median,
                      results[name, T][0].min / results[base, T][0].min)
                  for T in sizes if results.get((name, T)) and results.get((base, T))}
        targets.append((f"{what}, time", ratios, limit))
    ratios = {T: (ours.median / theirs.median, ours.min / theirs.min) for _, T, ours, theirs, _, _ in step_rows}
    targets.append(("transformer.py training step <= 1.0x torch.nn.Transformer", ratios, 1.0))
    print_table("\n### Targets\n\nRatio of the medians, and in brackets the ratio of the minima (the runs least "
                "disturbed).\n", ["target", "measured", "met"], "lll",
                [[what, ", ".join(f"{r:.2f}x ({m:.2f}x) at T={T}" for T, (r, m) in ratios.items()),
                  ("yes" if max(r for r, _ in ratios.values()) <= limit else "no") if ratios else "-"]
                 for what, ratios, limit in targets])

    # 4. One training step of transformer.py against torch.nn.Transformer
    print_table("\n### transformer.py against torch.nn.Transformer: one training step\n\n"
                "d_model 64, 2 + 2 layers, 4 heads, d_ff 256, dropout 0, vocabulary 149, padded random sentences "
                "of 4..T tokens; forward, label-smoothed loss, backward, Adam. torch's attention projections have "
                "biases (the paper's have none), hence its extra parameters. ms, min / median / max.\n",
                ["batch", "T", "transformer.py ms", "nn.Transformer ms", "ratio of medians",
                 "parameters (ours / torch's)"], "rrrrrl",
                [[str(batch), str(T), spread(ours), spread(theirs), f"{ours.median / theirs.median:.2f}x",
                  f"{n_ours:,} / {n_theirs:,}"] for batch, T, ours, theirs, n_ours, n_theirs in step_rows])

    # 5. How the cost of CoPE and MTA grows with T
    rows = []
    for name in SCALING:
        for what, value, fmt in (("time, ms", lambda v: v[0].median, ms), ("memory, MiB", lambda v: v[1], mib)):
            points = [(T, value(results[name, T])) for T in scaling if results.get((name, T))]
            exponents = [f"{slope(*zip(*p)):.2f}" if len(p) >= 2 else "-" for p in (points, points[-3:])]
            cells = [fmt(value(results[name, T])) if results.get((name, T)) else "-" for T in scaling]
            rows.append([BLOCKS[name][0], what] + cells + exponents)
    print_table("\n### How cost grows with T\n\nLeast-squares slope of log(cost) against log(T) (2 = quadratic): "
                "over all the sizes shown, and over the largest three, where fixed costs per call no longer hide "
                "the growth. Time: the median.\n",
                ["block", "cost"] + [f"T={T}" for T in scaling] + ["exponent", "largest 3"],
                "ll" + "r" * (len(scaling) + 2), rows)

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = sorted(set(args.sizes or ([64, 128, 512] if args.quick else [128, 512, 2048])))
    scaling = sorted(set(sizes) | {sizes[0] * 2 ** k for k in range(10) if sizes[0] * 2 ** k <= max(sizes)})
    steps = [(32, 40)] if args.quick else [(32, 40), (32, 256)]
    started = time.perf_counter()
    results, notes = {}, set()
    for T in scaling:
        measure_size(T, [name for name in BLOCKS if T in sizes or name in SCALING], args, results, notes)
    for T in sizes:
        if T <= DECODER_MAX_T:
            measure_size(T, list(DECODER), args, results, notes)
    step_rows = [(batch, T, *transformer_step(batch, T, args)) for batch, T in steps]
    print_tables(results, sizes, scaling, step_rows, args)
    for note in sorted(notes):
        print(f"\n- {note}")
    print(f"\n`{shlex.join(['python', 'bench.py', *argv])}` took {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
