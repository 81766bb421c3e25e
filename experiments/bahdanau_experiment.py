"""Bahdanau, Cho, Bengio (2014): the experiment behind `python train.py bahdanau`.

RNNsearch (section 3) learns the toy translation of experiments/translation.py, whose adjective-noun
swaps make its soft alignment the near-diagonal picture of the paper's Figure 3; the run ends with
that picture on the longest held-out sentence. Adam holds its rate for 70% of --steps, then decays it
to zero; training stops once the held-out exact match reaches --target. --compare adds RNNencdec, the
fixed-context baseline, at equal sizes and for exactly as many steps (at the same rates) as RNNsearch
took, and prints exact match per source length: Figure 2 in miniature, where the fixed vector falls
behind as sentences grow longer.
"""
import torch
import torch.nn.functional as F

import bahdanau as bd                # the model: the root file bahdanau.py
import train                         # the shared loop, result line and command line
from experiments import translation  # the toy language pair both translation papers use
from experiments.translation import PAD

SUMMARY = "Bahdanau et al. 2014: RNNsearch (additive attention) on toy translation"


# ---- the run (the task: toy translation, in experiments/translation.py) ----

def add_flags(p):
    train.add_shared_flags(p, steps=1200, batch_size=64, lr=4e-3, eval_every=100,
                           lr_help="Adam's rate, held for the first 70%% of --steps, then decayed linearly to 0")
    translation.add_translation_args(p, max_len=30)
    p.add_argument("--embed-dim", type=train.int_in(1, 4096), default=32, help="word embedding m (paper: 620)")
    p.add_argument("--hidden", type=train.int_in(1, 4096), default=64, help="GRU state n (paper: 1000)")
    p.add_argument("--align-dim", type=train.int_in(1, 4096), default=64, help="alignment MLP n' (paper: 1000)")
    p.add_argument("--maxout", type=train.int_in(1, 4096), default=32, help="maxout units l (paper: 500)")
    p.add_argument("--clip", type=train.float_in(1e-6, 1e6), default=1.0, help="gradient-norm clip (paper: 1)")
    p.add_argument("--paper-init", action="store_true", help="Appendix B.1 initialisation")


def learning_rate(step, peak, steps, decay=0.3):
    """`peak` for the first 70% of `steps`, then a linear decay to zero at `steps` (the paper's Adadelta
    has no schedule; positive at every step). Measured, 4-30 words, seed 0, one thread: at a constant
    3e-3 the held-out exact match swung between 0.78 and 0.96 for 500 steps and reached 0.99 at step
    1700; with this decay, at step 1100 (3e-3 over 1300 steps) and 1000 (4e-3 over 1200, the default)."""
    return peak * min(1.0, (steps - step + 1) / (decay * steps))


def run(args):
    translation.check_translation_args(args)
    task, test_pairs = translation.translation_task(args)
    variants = {"RNNsearch": bd.RNNSearch}
    if args.compare:
        variants["RNNencdec"] = bd.RNNEncDec
    finished, steps = [], args.steps
    for variant, model_class in variants.items():
        rng = train.seed_everything(args.seed)
        config = bd.BahdanauConfig(task.vocab_size, embed_dim=args.embed_dim, hidden=args.hidden,
                                   align_dim=args.align_dim, maxout_dim=args.maxout, pad=PAD,
                                   paper_init=args.paper_init)
        model = model_class(config).to(args.device)
        print(f"{variant}: {train.count_parameters(model):,} parameters, sentences of "
              f"{args.min_len}-{args.max_len} tokens, device {args.device}")
        # Appendix B.2: minibatches cut from a length-sorted pool of 20, made on the device
        batches = translation.training_batches(task, args.batch_size, rng, args.device, pool=20)

        def loss_fn(model, batch):
            src, tgt = batch
            logits = model(src, tgt[:, :-1])
            return F.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD)

        # Adam instead of the paper's Adadelta (see bahdanau.py); clip at 1 (B.2). The schedule's length
        # is --steps for both variants, so the baseline's equal steps also get equal rates.
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr,
                                     fused=args.device.startswith("cuda") or None)  # one kernel on a GPU
        lr_at = lambda step: learning_rate(step, args.lr, args.steps)
        history = train.training_loop(
            model, optimizer, lambda: next(batches), loss_fn,
            evaluate=translation.held_out_check(task, test_pairs, args.device, args.target, variant),
            solved=lambda metrics: variant == "RNNsearch" and metrics["exact_match"] >= args.target,
            steps=steps, eval_every=args.eval_every, lr_at=lr_at, clip=args.clip, label=variant,
            **train.settings(args, "toy-translation", variant, task.vocab))
        # equal steps: the baseline trains exactly as long as RNNsearch did, with no early stop
        steps = history["steps"]
        decode, scores = translation.decode_held_out(args, task, test_pairs, bd, model, variant)
        finished.append((variant, history, scores, model))
        if variant == "RNNsearch":
            translation.show_translation_attention(
                args, task, test_pairs, decode, lambda s, t: model(s, t, return_weights=True)[1][0],
                "RNNsearch alignment alpha_ij (rows: output, columns: source)", "alignment.png")
    return translation.report_translation(args, task, finished)
