"""Multi-Token Attention (Golovneva et al. 2025): the experiment behind `python train.py mta`.

The letter-block toy task of section 4.1: a few blocks of random letters, then L query letters; the
model must copy the one block that holds all of them. A standard attention weight compares one query
with one key, so no single weight can ask "which block holds g AND a"; MTA's key-query convolution
(section 3.1) combines the weights of neighbouring queries and keys, and finds the block. The model
trains on fresh generated sequences (or the authors' files, --data) and is scored on a fixed held-out
set; a run shows the answering head before and after the convolution. --compare also trains standard
attention (mta.py with mta=False) at equal size and steps, 3 seeds each, and prints both beside the
paper's numbers. At the default size (2 blocks, 2500 steps) standard attention, on half the seeds tried,
learns to copy the block but not yet to find it, the paper's failure; given 3x the steps it finds it too
(README).
"""
import numpy as np
import torch
import torch.nn.functional as F

import mta                        # the model: the root file mta.py
import train                      # the shared loop, result line and command line
from experiments import pictures  # terminal and PNG pictures
from experiments.letter_blocks import BLOCK_VOCAB, LetterBlocks, read_letter_blocks  # the task

SUMMARY = "Golovneva et al. 2025: Multi-Token Attention on the letter-block toy task"


def mta_data(args):
    """-> (training task, training examples or None, test examples) from the generator or --data
    / --test-data files (authors' JSON lines). The blocks, L and block length of the first file
    override the flags: the task returned carries them (n_blocks, query_letters, block_length)."""
    files = {}
    for flag in ("data", "test_data"):
        if getattr(args, flag):
            try:
                files[flag] = read_letter_blocks(getattr(args, flag))
            except ValueError as error:
                raise train.UsageError(error)
    blocks, query_letters, block_length = args.blocks, args.query_letters, args.block_length
    for examples in files.values():  # the shape of the first file sets the generator's
        src = examples[0][0]
        blocks, query_letters = src.count(".") + 1, len(src) - src.index("#") - 1
        block_length = len(examples[0][1])
        break
    try:
        task = LetterBlocks(blocks, query_letters, block_length)
    except ValueError as error:
        raise train.UsageError(error)
    test = files.get("test_data") or task.examples(args.test_size, torch.Generator().manual_seed(train.TEST_SEED))
    if "data" in files and len(files["data"][0][1]) != len(test[0][1]):
        raise train.UsageError("--data and --test-data targets differ in length")
    return task, files.get("data"), test


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

# The paper's toy-task numbers (section 4.1; 52 blocks, L = 2, 4 layers x 256, 100k steps; seeds
# 42 / 43 / 44; sequence error in %, from the official toy-task README, H100).
MTA_PAPER = {"standard": ([77.7, 75.3, 1.9], 51.6), "mta": ([0.0, 0.0, 0.2], 0.1)}
NAMES = {"mta": "MTA", "standard": "standard"}  # the variants as the table writes them


def add_flags(p):
    train.add_shared_flags(p, steps=2500, batch_size=64, lr=3e-3, eval_every=100)
    size = train.int_in  # every size is bounded: a typo fails at once, not in an out-of-memory crash
    p.add_argument("--blocks", type=size(1, 256), default=2, help="blocks of letters per sequence (paper: 52)")
    p.add_argument("--query-letters", type=size(1, 26), default=2, help="L, letters in the query (paper: 2)")
    p.add_argument("--block-length", type=size(1, 26), default=5, help="letters per block (paper: 5)")
    p.add_argument("--test-size", type=size(1, 100_000), default=1000, help="held-out sequences (paper: 1000)")
    p.add_argument("--data", metavar="FILE.jsonl",
                   help="train on these examples (authors' format, one {\"src\", \"tgt\"} a line)")
    p.add_argument("--test-data", metavar="FILE.jsonl", help="evaluate on these examples (same format)")
    p.add_argument("--seeds", type=size(1, 100), help="seeds per model (default: 3 with --compare, else 1)")
    p.add_argument("--baseline", action="store_true", help="train only standard attention (the --compare baseline)")
    p.add_argument("--d-model", type=size(2, 4096), default=64, help="model width (paper: 256)")
    p.add_argument("--layers", type=size(1, 64), default=2, help="layers (paper: 4)")
    p.add_argument("--heads", type=size(1, 256), default=2, help="attention heads (paper: 2)")
    p.add_argument("--kq-conv", choices=["pre", "post", ""], default="pre",
                   help="key-query convolution before or after the softmax ('' = off) (paper toy: pre)")
    p.add_argument("--c-q", type=size(1, 64), default=2, help="query kernel size (paper toy: 2)")
    p.add_argument("--c-k", type=size(1, 64), default=9, help="key kernel size (paper toy: 9)")
    p.add_argument("--head-mix", choices=["pre", "post", ""], default="",
                   help="head mixing before or after the softmax ('' = off) (paper toy: off)")
    p.add_argument("--c-h", type=size(1, 256), default=2, help="heads per mixing group")
    p.add_argument("--head-norm", choices=["depth", "gate", ""], default="",
                   help="per-head normalisation: RMSNorm with depth scaling, RMSNorm + gate, or off (paper toy: off)")
    p.add_argument("--warmup", type=size(1, 1_000_000), default=100, help="linear warmup steps (paper: 1000)")
    p.add_argument("--target-error", type=train.float_in(0.0, 1.0), default=0.01,
                   help="held-out sequence error that counts as solved (early stop)")


def test_batches(examples, device, batch_size=250):
    """The held-out examples as batches on the device, collated once for every evaluation."""
    return [[t.to(device) for t in LetterBlocks.collate(examples[i:i + batch_size])]
            for i in range(0, len(examples), batch_size)]


def target_logits(model, tokens, positions):
    """The logits [B, N, vocab] at the positions that predict the target letters."""
    logits = model(tokens.long())
    return logits.gather(1, positions[..., None].expand(-1, -1, logits.size(-1)))


def mta_errors(model, batches):
    """Teacher-forced errors on the target block: sequence (any letter wrong, which equals greedy
    decoding's), token, first letter (the lookup) and the other letters (the copy)."""
    wrong = torch.cat([target_logits(model, tokens, positions).argmax(-1) != targets
                       for tokens, positions, targets in batches]).float().cpu()
    copy_error = wrong[:, 1:].mean().item() if wrong.size(1) > 1 else 0.0  # 1-letter blocks: nothing to copy
    return {"sequence_error": wrong.amax(1).mean().item(), "token_error": wrong.mean().item(),
            "first_letter_error": wrong[:, 0].mean().item(), "copy_error": copy_error}


def longest_example(*example_lists):
    return max(len(src) + len(tgt) for examples in example_lists if examples for src, tgt in examples)


def mta_config(args, use_mta, max_len):
    try:
        return mta.MTAConfig(vocab_size=LetterBlocks.vocab_size, max_len=max_len,
                             n_layers=args.layers, d_model=args.d_model, n_heads=args.heads,
                             mta=use_mta, kq_conv=args.kq_conv, c_q=args.c_q, c_k=args.c_k,
                             head_mix=args.head_mix, c_h=args.c_h, head_norm=args.head_norm)
    except ValueError as error:
        raise train.UsageError(error)


def mta_train_one(args, use_mta, seed, task, train_examples, test, label):
    rng = train.seed_everything(seed)  # the training batches: a torch stream on the device, seeded from rng
    generator = torch.Generator(args.device).manual_seed(int(rng.integers(2 ** 63)))
    max_len = longest_example(test, train_examples) + 1
    model = mta.MTATransformer(mta_config(args, use_mta, max_len)).to(args.device)
    print(f"[{label}] {train.count_parameters(model):,} parameters, {task.n_blocks} blocks, L = "
          f"{task.query_letters}, {len(test)} test sequences, device {args.device}", flush=True)

    if train_examples is None:  # fresh sequences, drawn on the device
        next_batch = lambda: task.draw(args.batch_size, generator, args.device)
    else:  # a file's examples, collated once and kept on the device; a batch draws rows of it
        stored = [t.to(args.device) for t in LetterBlocks.collate(train_examples)]

        def next_batch():
            rows = torch.randint(len(train_examples), (args.batch_size,), generator=generator, device=args.device)
            return [t[rows] for t in stored]

    def loss_fn(model, batch):  # the loss is on the target letters only, as in the paper
        tokens, positions, targets = batch
        return F.cross_entropy(target_logits(model, tokens, positions).flatten(0, 1), targets.flatten())

    # paper: 1e-4 constant after 1000 warmup steps; here warmup_cosine, for a short CPU budget
    lr_at = lambda step: train.warmup_cosine(step, args.lr, args.warmup, args.steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0,
                                  fused=args.device.startswith("cuda") or None)  # one kernel on a GPU
    batches = test_batches(test, args.device)
    run = train.training_loop(model, optimizer, next_batch, loss_fn, lambda m: mta_errors(m, batches),
                              solved=lambda metrics: metrics["sequence_error"] <= args.target_error,
                              steps=args.steps, eval_every=args.eval_every, lr_at=lr_at, label=label,
                              **train.settings(args, "letter-blocks", "mta" if use_mta else "standard",
                                               list(BLOCK_VOCAB)))
    return model, run


def show_mta_attention(args, model, test):
    """The answering head before / after the key-query convolution on one test sequence: rows are
    the positions that predict the 5 target letters, columns the sequence. The head shown is the
    one (over layers and heads) putting most weight on the target block at the first of them."""
    src, tgt = test[0]
    blocks = src.split("#")[0].split(".")
    start = sum(len(b) + 1 for b in blocks[:blocks.index(tgt)]) if tgt in blocks else 0
    for block in model.blocks:
        block.attn.keep_maps = True
    model.eval()
    with torch.no_grad():
        model(torch.tensor([LetterBlocks.encode(src + tgt[:-1])], device=args.device))
    first = len(src) - 1
    rows = list(range(first, first + len(tgt)))
    best = max(((layer, head) for layer, block in enumerate(model.blocks) if block.attn.maps_after is not None
                for head in range(block.attn.n_heads)),
               key=lambda lh: model.blocks[lh[0]].attn.maps_after[0, lh[1], first, start:start + len(tgt)].sum().item())
    attn = model.blocks[best[0]].attn
    for block in model.blocks:
        block.attn.keep_maps = False
    text = src + tgt[:-1]
    cols = list(range(len(text)))
    if len(cols) > 80:  # keep the terminal picture narrow: the target block's neighbourhood and the query
        cols = [c for c in cols if start - 30 <= c < start + 36 or c >= src.index("#")]
    row_labels = [f"{text[r]}->{tgt[n]}" for n, r in enumerate(rows)]
    col_labels = [text[c] for c in cols]
    for name, maps in (("before", attn.maps_before), ("after", attn.maps_after)):
        matrix = maps[0, best[1]][rows][:, cols].cpu().numpy()
        title = (f"layer {best[0] + 1} head {best[1] + 1} attention {name} the key-query convolution "
                 f"(query {src[src.index('#') + 1:]!r}, target {tgt!r})")
        pictures.show_heatmap(args, f"attention-{name}-conv.png", matrix, row_labels, col_labels, title)


def run(args):
    """The letter-block toy task (section 4.1) with MTA; --compare adds standard attention at equal
    size and steps, each over --seeds, and the table beside the paper's numbers."""
    task, train_examples, test = mta_data(args)
    seeds = args.seeds or (3 if args.compare else 1)
    variants = ["mta"] + (["standard"] if args.compare else [])  # MTA first: its picture comes early
    if args.baseline:
        variants = ["standard"]
    tokens = longest_example(test, train_examples) - 1  # the model reads src + tgt minus its last letter
    for variant in variants:  # bad sizes fail here, before any training
        mta_config(args, variant == "mta", tokens + 1)
    if "mta" in variants and max(args.c_q, args.c_k) > tokens:
        raise train.UsageError(f"the key-query kernel ({args.c_q} x {args.c_k}) is larger than the "
                               f"sequences ({tokens} tokens at most)")
    results, finished, curves = [], [], {}
    for variant in variants:
        runs = []
        for n in range(seeds):
            label = variant if seeds == 1 else f"{variant} seed {args.seed + n}"
            model, one = mta_train_one(args, variant == "mta", args.seed + n, task, train_examples, test, label)
            runs.append(one)
            curves[label] = one["losses"]
            if n == 0 and variant == "mta":
                show_mta_attention(args, model, test)
        per_seed = {k: [round(r["metrics"][k], 4) for r in runs] for k in runs[0]["metrics"]}
        metrics = dict({k: float(np.mean(v)) for k, v in per_seed.items()},
                       per_seed=per_seed, seeds=[args.seed + n for n in range(seeds)],
                       blocks=task.n_blocks, query_letters=task.query_letters,
                       parameters=train.count_parameters(model), final_loss=round(runs[0]["losses"][-1], 4))
        summary = {"steps": max(r["steps"] for r in runs), "seconds": round(sum(r["seconds"] for r in runs), 2),
                   "solved": all(r["solved"] for r in runs)}
        results.append(("letter-blocks", variant, summary, metrics, model))
        finished.append((variant, metrics, summary["seconds"], [r["steps"] for r in runs]))
    pictures.save_loss_curves(args, curves)
    if not (args.compare or seeds > 1):
        return results, []
    return results, [mta_table(task, finished)]


def mta_table(task, finished):
    """finished: [(variant, metrics, seconds, steps of each seed)] -> the table (caption, headers,
    rows): ours, standard attention first, then the paper's."""
    pct = lambda values: " / ".join(f"{100 * v:.1f}" for v in values)
    rows = []
    for variant, m, seconds, steps in sorted(finished, key=lambda f: f[0] == "mta"):
        rows.append([f"**{NAMES[variant]}** (ours)", m["blocks"], m["query_letters"],
                     pct(m["per_seed"]["sequence_error"]), f"{100 * m['sequence_error']:.1f}",
                     pct(m["per_seed"]["first_letter_error"]), pct(m["per_seed"]["copy_error"]),
                     m["parameters"], "/".join(str(s) for s in steps), f"{seconds:.0f}"])
    for variant, (per_seed, mean) in MTA_PAPER.items():
        rows.append([f"{NAMES[variant]} (paper)", 52, 2, pct(np.array(per_seed) / 100),
                     f"{mean:.1f}", "-", "-", "4 layers x 256", "100000", "-"])
    total = sum(seconds for _, _, seconds, _ in finished)
    caption = (f"\nerror % per seed ({', '.join(str(s) for s in finished[0][1]['seeds'])}): sequence = any of "
               f"the {task.block_length} letters wrong; look-up = the first letter (finding the block); copy = "
               f"the other letters (token error). Seconds: all seeds of a model; the whole comparison trained "
               f"for {total:.0f} s")
    return (caption, ["model", "blocks", "L", "sequence error % by seed", "mean %", "look-up error % by seed",
                      "copy error % by seed", "parameters", "steps", "seconds"], rows)
