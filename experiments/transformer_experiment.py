"""Vaswani et al. (2017): the experiment behind `python train.py transformer`.

The encoder-decoder of Figure 1 learns the toy translation of experiments/translation.py (a word
dictionary and adjective-noun swaps), trained with label smoothing (section 5.4) and eq. (3)'s warmup,
then decodes the held-out sentences greedily or with --beam. The run ends with the last decoder
layer's encoder-decoder attention (mean of heads) on the longest held-out sentence. --compare adds
Table 3's row (A) with one head instead of several, at equal size (d_k = d_model, same parameter count).
"""
import transformer as tf             # the model: the root file transformer.py
import train                         # the shared loop, result line and command line
from experiments import translation  # the toy language pair both translation papers use
from experiments.translation import PAD

SUMMARY = "Vaswani et al. 2017: encoder-decoder Transformer on toy translation"


# ---- the run (the task: toy translation, in experiments/translation.py) ----

def add_flags(p):
    train.add_shared_flags(p, steps=1600, batch_size=32, lr=6e-3, eval_every=100,
                           lr_help="peak learning rate, reached after --warmup steps, then decayed linearly to 0 "
                                   "at --steps")
    translation.add_translation_args(p, max_len=30)
    p.add_argument("--d-model", type=train.int_in(1, 4096), default=64, help="model width (paper: 512)")
    p.add_argument("--layers", type=train.int_in(1, 64), default=2, help="layers in each stack (paper: 6)")
    p.add_argument("--heads", type=train.int_in(1, 256), default=4, help="attention heads (paper: 8)")
    p.add_argument("--d-ff", type=train.int_in(1, 16384), default=256, help="feed-forward width (paper: 2048)")
    p.add_argument("--dropout", type=train.float_in(0, 1), default=0.0, help="dropout (paper: 0.1)")
    p.add_argument("--label-smoothing", type=train.float_in(0, 1), default=0.1, help="epsilon_ls (paper: 0.1)")
    p.add_argument("--warmup", type=train.int_in(1, 1_000_000), default=100,
                   help="warmup steps of eq. (3) (paper: 4000; capped at --steps)")


MAX_PARAMETERS = 1_000_000_000  # 16 GB with Adam's two moments in float32; the paper's big model: 213M


def learning_rate(step, peak, warmup, steps):
    """Eq. (3)'s linear warmup to `peak`, then a linear decay to zero at `steps` instead of its
    step^-0.5 tail, which stays too high for a tiny model to settle (measured at 4-40 words: 0.95 exact
    match after 3000 steps with the tail, 0.976 after 2000 with the linear decay). The warmup is capped
    at `steps`, so that a run shorter than the warmup still reaches the peak, and the rate stays positive."""
    warmup = min(warmup, steps)
    return peak * min(step / warmup, (steps - step + 1) / (steps - warmup + 1))

def run(args):
    translation.check_translation_args(args)
    if not 0 <= args.label_smoothing < 1:
        raise train.UsageError(f"--label-smoothing must lie in [0, 1), got {args.label_smoothing}")
    # the weights of both stacks (4 d^2 per attention, 2 d d_ff per FFN), counted before any is allocated
    size = args.layers * (12 * args.d_model ** 2 + 4 * args.d_model * args.d_ff)
    if size > MAX_PARAMETERS:
        raise train.UsageError(f"--d-model {args.d_model}, --layers {args.layers} and --d-ff {args.d_ff} give "
                               f"{size:,} parameters, more than {MAX_PARAMETERS:,}")
    task, test_pairs = translation.translation_task(args)
    variants = {"transformer": args.heads}
    if args.compare:
        variants["one head"] = 1
    finished = []
    for variant, heads in variants.items():
        rng = train.seed_everything(args.seed)
        try:
            config = tf.TransformerConfig(task.vocab_size, d_model=args.d_model, n_layers=args.layers,
                                          n_heads=heads, d_ff=args.d_ff, dropout=args.dropout,
                                          max_len=args.max_len + 12, pad_id=PAD)
        except ValueError as error:
            raise train.UsageError(error)
        model = tf.Transformer(config).to(args.device)
        print(f"{variant}: {train.count_parameters(model):,} parameters, sentences of "
              f"{args.min_len}-{args.max_len} tokens, device {args.device}")

        # independent sentences, made on the device; not section 5.1's length-sorted batches (see
        # transformer.py: sorted batches of 32 learned the longest sentences far more slowly here)
        batches = translation.training_batches(task, args.batch_size, rng, args.device)

        def loss_fn(model, batch):
            src, tgt = batch
            return tf.label_smoothed_loss(model(src, tgt[:, :-1]), tgt[:, 1:], args.label_smoothing, PAD)

        optimizer = tf.make_optimizer(model, fused=args.device.startswith("cuda") or None)  # one kernel on a GPU
        lr_at = lambda step: learning_rate(step, args.lr, args.warmup, args.steps)
        history = train.training_loop(
            model, optimizer, lambda: next(batches), loss_fn,
            evaluate=translation.held_out_check(task, test_pairs, args.device, args.target, variant),
            solved=lambda metrics: metrics["exact_match"] >= args.target,
            steps=args.steps, eval_every=args.eval_every, lr_at=lr_at, label=variant,
            **train.settings(args, "toy-translation", variant, task.vocab))
        decode, scores = translation.decode_held_out(args, task, test_pairs, tf, model, variant)
        finished.append((variant, history, scores, model))
        if variant == "transformer":
            translation.show_translation_attention(
                args, task, test_pairs, decode, lambda s, t: last_cross_attention(model, s, t),
                "encoder-decoder attention, last layer, mean of heads (rows: output, columns: source)",
                "attention.png")
    return translation.report_translation(args, task, finished)


# ---- the picture ----

def last_cross_attention(model, src, tgt_in):
    """[T, S]: the last decoder layer's encoder-decoder attention, averaged over heads."""
    cross_attn = model.decoder[-1].cross_attn
    cross_attn.keep_weights = True   # the written-out eq. (1), which keeps its map
    model(src, tgt_in)
    cross_attn.keep_weights = False
    return cross_attn.weights[0].mean(0)
