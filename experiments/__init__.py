"""One file per paper's experiment: its task, its flags, its run, its pictures and its table.

`python train.py NAME` calls experiments/NAME_experiment.py's add_flags(parser) and run(args); the
model itself is the root file NAME.py (inside this folder, `import cope` still reaches ../cope.py).
translation.py holds what the two translation papers share: the toy language pair and its scoring;
babi.py, cope_tasks.py and letter_blocks.py hold the tasks that outgrew their experiment's file.
"""
